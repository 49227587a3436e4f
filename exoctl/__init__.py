"""exoctl: EMG-driven assist controller for hip/knee rehabilitation exoskeletons."""

import os as _os
from pathlib import Path as _Path

__version__ = "0.1.0"

# liblsl reads its configuration when it is first loaded; point it at ours (errors only)
# unless the operator chose another file.
_os.environ.setdefault("LSLAPICFG", str(_Path(__file__).with_name("lsl_api.cfg")))
