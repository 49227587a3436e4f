"""Where the configuration files are, how a path written in one is resolved, and the control
socket's path read on its own: import-light (no pydantic, no numpy).

Why a reader of one key: ``exoctl estop`` and ``exoctl status`` must start at once (an e-stop
must not wait for pydantic and the schema to import, 1-3 s on a loaded clinic PC), yet use the
socket of the configuration the user chose (``--config``, ``$EXOCTL_CONFIG``,
``/etc/exoctl/exoctl.yaml``, the packaged default: exoctl.config.lookup). So they read that file
with the project's one YAML reader (exoctl.config.yamlfile, the same strict rules as every
other file) and take ``service.socket_path`` alone, resolved by the same rule as the full
load (``resolve_path``); the rest of the file is validated by every other command. A file the
reader refuses, or a ``socket_path`` that is not a string, gives ``None`` and the reason
(``socket_path_of``): ``exoctl status`` then loads the file fully, whose error says what is
wrong; ``exoctl estop`` presses the e-stop at the default socket first.
"""

from __future__ import annotations

from pathlib import Path

TYPE_CHECKING = False  # no typing at run time: `exoctl estop` imports this module
if TYPE_CHECKING:
    from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parents[1]
"""The exoctl package's folder: the shipped models are in its ``models/``."""
PACKAGE_PREFIX = "exoctl:"
"""A configuration path that starts with this names a file shipped inside the exoctl package
(``exoctl:models/network.onnx``), wherever the package is installed."""


def _config_dir() -> Path:
    """The default configuration and the HIL fault scenarios: the top-level ``configs/`` folder
    of a checkout or an editable install, carried in a wheel as the package ``exoctl.configs``
    (pyproject.toml maps it onto that folder). One copy; a wheel install finds it from any
    directory."""
    packaged = PACKAGE_DIR / "configs"
    return packaged if packaged.is_dir() else PACKAGE_DIR.parent / "configs"


CONFIG_DIR = _config_dir()
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"
DEFAULT_SOCKET_PATH = Path("/run/exoctl/control.sock")
"""``service.socket_path`` when a configuration does not set it."""


def portable_path(path: str | Path | None) -> str | None:
    """``path`` as a record that is shipped should name it: a file of the packaged ``configs/``
    as ``configs/NAME`` (true in a checkout and, inside the package, in a wheel), any other
    path as given. A model's provenance then names no folder of the machine it was built on."""
    if path is None:
        return None
    p = Path(path).resolve()
    if p.is_relative_to(CONFIG_DIR):
        return "configs/" + p.relative_to(CONFIG_DIR).as_posix()
    return str(path)


def resolve_path(value: str, base: Path) -> str:
    """A file path written in a configuration: ``exoctl:REL`` taken inside the installed
    package (the shipped models: the default configuration is not beside them in every kind of
    install), ``~`` expanded, a relative path taken relative to ``base`` (the directory of the
    file that names it), an absolute one kept as written."""
    if value.startswith(PACKAGE_PREFIX):
        return str((PACKAGE_DIR / value[len(PACKAGE_PREFIX) :]).resolve())
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def read_socket_path(config_file: str | Path) -> Path | None:
    """``service.socket_path`` of ``config_file`` (its default when not set), or None when the
    file cannot be read or the value is not a string (see the module docstring)."""
    return socket_path_of(config_file)[0]


def socket_path_of(config_file: str | Path) -> tuple[Path | None, str | None]:
    """``(socket path, None)`` as ``read_socket_path``, or ``(None, why)`` with one line
    naming the file (and line and key) when the socket path cannot be read from it."""
    from exoctl.config.yamlfile import ConfigError, read_yaml

    path = Path(config_file)
    try:
        data: Any = read_yaml(path, "configuration").data
    except ConfigError as e:
        return None, str(e)
    service = data.get("service", {}) if isinstance(data, dict) else None
    if not isinstance(service, dict):
        return None, f"{path}: service: must be a mapping (a section of settings)"
    value = service.get("socket_path", str(DEFAULT_SOCKET_PATH))
    if not isinstance(value, str) or not value:
        return None, f"{path}: service.socket_path: must be a path (text, not empty)"
    return Path(resolve_path(value, path.resolve().parent)), None
