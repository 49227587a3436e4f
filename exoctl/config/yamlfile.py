"""Reading a YAML file whose top level must be a mapping, with errors a person can act on.

Configuration, calibration and dataset description files all start this way; each caller
passes its own error type and says what the file is, so the message names the file and what
was expected of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def read_yaml_mapping(
    path: Path, what: str, error: type[Exception], top_level: str = "a mapping"
) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as e:
        raise error(f"{path}: cannot read {what}: {e.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise error(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise error(f"{path}: the top level must be {top_level}")
    return raw
