"""Strict JSON for whatever exoctl writes for machines: ``--json`` output, the daemon's replies,
its log fields and recorded event details.

Strict means RFC 8259: Python's ``json`` writes NaN and Infinity by default, which jq, browsers
and most other parsers refuse. A figure that was not measured is ``null``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any


def jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON values: non-finite floats -> None, numpy -> Python, paths -> str,
    sets and tuples -> lists, anything else -> its ``str``."""
    if obj is None or isinstance(obj, bool | str | int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [jsonable(v) for v in obj]
    if isinstance(obj, PurePath):
        return str(obj)
    tolist = getattr(obj, "tolist", None)  # numpy scalars and arrays
    if callable(tolist):
        return jsonable(tolist())
    return str(obj)


def dumps(obj: Any) -> str:
    """One strict JSON document (``allow_nan=False`` guards the conversion above)."""
    return json.dumps(jsonable(obj), allow_nan=False)
