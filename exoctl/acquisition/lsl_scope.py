"""Where LSL looks for streams and whom it answers: this machine, unless told otherwise.

LSL has no authentication: any computer that can reach this one may publish a stream with the
amplifier's source id, and any computer that finds exoctl's outlets may read the patient's EMG
estimates and commands. So exoctl's liblsl settings (``exoctl/lsl_api.cfg``, which
``exoctl/__init__.py`` hands to liblsl through ``LSLAPICFG`` unless that is already set) keep
discovery on this machine: ``ResolveScope = machine`` (queries go to 127.0.0.1 only, with a
multicast TTL of 0), ``ListenAddress = 127.0.0.1`` (the outlets' discovery responders answer
loopback only) and no IPv6.

Where the amplifier runs on another computer, ``emg.lsl.host`` names it and liblsl asks it
directly (``KnownPeers``: ``emg.lsl.peers``, else that host): :func:`apply_lsl_scope` adds
that to the settings, once per process, before liblsl first reads them. The inlet takes a
stream only from :func:`stream_host` (``exoctl.acquisition.sources``).

What this cannot do (docs/deploy.md, "LSL"): liblsl binds each outlet's data port and its
unicast service port on every interface whatever these settings say, so a computer that
guesses this one's address and the port range can still connect to an outlet; only a firewall
(the systemd unit's ``IPAddressDeny``) closes that.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pylsl

from exoctl.config.schema import LslConfig
from exoctl.errors import ExoctlError

PACKAGED_SETTINGS = Path(__file__).resolve().parents[1] / "lsl_api.cfg"


class LslScopeError(ExoctlError, RuntimeError):
    """liblsl's settings cannot be what the configuration asks for in this process."""


_applied: str | None = None
"""The settings this process handed to liblsl (None: none beyond the settings file)."""


def stream_host(lsl: LslConfig) -> str:
    """The host name the EMG stream must report: the configured host, else this machine's.

    liblsl fills a stream's ``hostname`` with the publishing computer's gethostname(), as
    :func:`socket.gethostname` reads it here.
    """
    return lsl.host or socket.gethostname()


def known_peers(lsl: LslConfig) -> list[str]:
    """Computers liblsl asks directly for streams: none unless the amplifier is elsewhere."""
    if lsl.host is None or lsl.host == socket.gethostname():
        return []
    return list(lsl.peers) or [lsl.host]


def settings_file() -> Path:
    """The liblsl settings file in use: ``LSLAPICFG`` (exoctl sets it to its own by default)."""
    return Path(os.environ.get("LSLAPICFG") or PACKAGED_SETTINGS)


def settings_problems() -> list[str]:
    """Where the liblsl settings in use (:func:`settings_file`) open LSL beyond this machine.

    Read with liblsl's own rules (whole-line ``;`` comments, ``[section]``, ``key = value``).
    Empty for exoctl's own file; the daemon logs anything else at start (an administrator's
    ``LSLAPICFG`` may widen the scope on purpose, but never silently).
    """
    path = settings_file()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        return [
            f"{path}: cannot be read ({e.strerror}): liblsl falls back to another lsl_api.cfg "
            "or its defaults (site-wide)"
        ]
    values: dict[str, str] = {}
    section = ""
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith(";"):
            continue
        if line.startswith("["):
            section = line[1 : line.find("]")] + "."
            continue
        key = section + line.split("=", 1)[0].strip()
        if key in values:
            return [f"{path}:{n}: {key} written twice: liblsl ignores the file (site-wide)"]
        values[key] = line.split("=", 1)[1].strip() if "=" in line else ""
    problems = []
    scope = values.get("multicast.ResolveScope", "site")
    if scope != "machine":
        problems.append(f"{path}: ResolveScope = {scope}: streams are resolved beyond this machine")
    listen = values.get("multicast.ListenAddress", "")
    if listen not in ("127.0.0.1", "::1"):
        problems.append(
            f"{path}: ListenAddress = {listen or '(all interfaces)'}: outlets answer discovery "
            "from the network"
        )
    return problems


def liblsl_settings(lsl: LslConfig) -> str | None:
    """The settings file's text with ``[lab] KnownPeers`` set to :func:`known_peers`.

    None when there is nothing to add (the file applies as it is). liblsl refuses a key
    written twice by falling back to its defaults (which resolve across the site), so an
    existing ``KnownPeers`` line is replaced, never repeated.
    """
    peers = known_peers(lsl)
    if not peers:
        return None
    kept: list[str] = []
    section = ""
    for line in settings_file().read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped[1 : stripped.find("]")].strip().lower()
        elif section == "lab" and stripped.split("=", 1)[0].strip() == "KnownPeers":
            continue
        kept.append(line)
    kept += ["", "[lab]", "KnownPeers = {" + ", ".join(peers) + "}", ""]
    return "\n".join(kept)


def apply_lsl_scope(lsl: LslConfig) -> None:
    """Hand liblsl the peers of a remote amplifier host, before this process first uses LSL.

    liblsl reads its settings once per process, at its first resolve, inlet or outlet, so a
    second call asking for other peers is an error rather than a silent no-op.
    """
    global _applied
    content = liblsl_settings(lsl)
    if content is None or content == _applied:
        return
    if _applied is not None:
        raise LslScopeError(
            "liblsl's network settings are fixed once per process; this process already "
            f"uses peers for another emg.lsl.host than {lsl.host!r}"
        )
    pylsl.set_config_content(content)
    _applied = content
