"""Which configuration file a command uses: one rule for every ``exoctl`` command.

``--config PATH``, else ``$EXOCTL_CONFIG``, else ``/etc/exoctl/exoctl.yaml`` when it exists,
else the configuration shipped inside the package. The clinic PC's file then applies to the
daemon, the clinician's ``exoctl status``, the HIL bench and training alike, and a wheel
install without any file still runs (the packaged default names the packaged models).

Import-light (no pydantic): ``exoctl estop`` applies this rule before anything heavy is loaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from exoctl.config.paths import DEFAULT_CONFIG

if TYPE_CHECKING:
    from exoctl.config.schema import Config

ENV_VAR = "EXOCTL_CONFIG"
SYSTEM_CONFIG = Path("/etc/exoctl/exoctl.yaml")


class ConfigChoice(NamedTuple):
    """The file chosen and why (for messages such as "settings from ...").

    A NamedTuple, not a dataclass: ``dataclasses`` imports ``inspect`` (a few ms), and
    ``exoctl estop`` applies this rule before it presses."""

    path: Path
    origin: str
    """``--config``, ``$EXOCTL_CONFIG``, the system path, or ``packaged default``."""

    @property
    def packaged(self) -> bool:
        return self.origin == "packaged default"


def find_config(explicit: str | Path | None = None) -> ConfigChoice:
    """Apply the lookup rule (see the module docstring); the file is not read here."""
    if explicit:
        return ConfigChoice(Path(explicit), "--config")
    env = os.environ.get(ENV_VAR)
    if env:
        return ConfigChoice(Path(env), f"${ENV_VAR}")
    if SYSTEM_CONFIG.is_file():
        return ConfigChoice(SYSTEM_CONFIG, str(SYSTEM_CONFIG))
    return ConfigChoice(DEFAULT_CONFIG, "packaged default")


def config_path(args: Any) -> Path:
    """The configuration file for a parsed command line (its ``--config``, if any)."""
    return find_config(getattr(args, "config", None)).path


def load_for(args: Any) -> Config:
    """Read and validate the configuration a parsed command line asks for."""
    from exoctl.config.schema import load_config  # pydantic: not for `exoctl estop`

    return load_config(config_path(args))
