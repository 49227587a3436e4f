"""exoctl: EMG-driven assist controller for hip/knee rehabilitation exoskeletons."""

import os as _os

__version__ = "0.1.0"

# liblsl reads its configuration when it is first loaded; point it at ours (errors only)
# unless the operator chose another file. os.path, not pathlib: every `exoctl` command, the
# e-stop among them, imports this first.
_os.environ.setdefault("LSLAPICFG", _os.path.join(_os.path.dirname(__file__), "lsl_api.cfg"))
