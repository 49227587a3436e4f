"""exoctl: EMG-driven assist controller for hip/knee rehabilitation exoskeletons."""

__version__ = "0.1.0"
