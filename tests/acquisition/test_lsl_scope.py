"""exoctl's liblsl settings: discovery stays on this machine; a remote amplifier is a peer.

The outlets' test speaks LSL's discovery protocol itself (a ``LSL:shortinfo`` query over UDP,
as liblsl's resolver sends it) to the addresses a resolver on another computer would use:
the site and link multicast groups and the broadcast address. A stream that answers there
is visible to the whole clinic network. A control outlet with liblsl's default settings, in
a second process, must answer, so the test cannot pass on a machine without multicast.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pylsl
import pytest

from exoctl.acquisition.lsl_scope import (
    PACKAGED_SETTINGS,
    known_peers,
    liblsl_settings,
    stream_host,
)
from exoctl.config.schema import LslConfig

NETWORK_DISCOVERY = ("239.255.172.215", "224.0.0.183", "224.0.0.1", "255.255.255.255")
"""liblsl's site and link discovery addresses (its defaults), where another computer asks."""


def _liblsl_ini(text: str) -> dict[str, str]:
    """Parse settings as liblsl's INI reader does: whole-line ';' comments, ``[section]``,
    ``key = value``; a key written twice is an error (liblsl then ignores the whole file)."""
    values: dict[str, str] = {}
    section = ""
    for line in text.splitlines():
        if not line.strip() or line.startswith(";"):
            continue
        if line.startswith("["):
            section = line[1 : line.index("]")] + "."
            continue
        key, value = (p.strip() for p in line.split("=", 1))
        assert section + key not in values, f"{section + key} written twice"
        values[section + key] = value
    return values


def test_packaged_settings_keep_discovery_on_this_machine() -> None:
    values = _liblsl_ini(PACKAGED_SETTINGS.read_text(encoding="utf-8"))
    assert values["multicast.ResolveScope"] == "machine"
    assert values["multicast.ListenAddress"] == "127.0.0.1"
    assert values["ports.IPv6"] == "disable"
    assert "lab.KnownPeers" not in values and "multicast.AddressesOverride" not in values


def test_exoctl_hands_its_settings_to_liblsl_unless_told_otherwise(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LSLAPICFG"}
    code = "import os, exoctl; print(os.environ['LSLAPICFG'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert Path(out.stdout.strip()) == PACKAGED_SETTINGS
    mine = tmp_path / "mine.cfg"
    out = subprocess.run(
        [sys.executable, "-c", code], env={**env, "LSLAPICFG": str(mine)}, capture_output=True,
        text=True,
    )  # fmt: skip
    assert out.stdout.strip() == str(mine)


def test_a_remote_amplifier_host_becomes_the_one_known_peer(monkeypatch, tmp_path) -> None:
    here = socket.gethostname()
    assert liblsl_settings(LslConfig()) is None and stream_host(LslConfig()) == here
    assert liblsl_settings(LslConfig(host=here)) is None  # this machine: nothing to add
    assert known_peers(LslConfig(host="amp-pc")) == ["amp-pc"]
    text = liblsl_settings(LslConfig(host="amp-pc", peers=["10.1.2.3", "amp-pc.local"]))
    assert text is not None
    values = _liblsl_ini(text)
    assert values["lab.KnownPeers"] == "{10.1.2.3, amp-pc.local}"
    assert values["multicast.ResolveScope"] == "machine"  # the rest of the file is kept
    # An administrator's settings file that already names peers: replaced, never repeated.
    own = tmp_path / "site.cfg"
    own.write_text("[lab]\nKnownPeers = {old-host}\nSessionID = ward-3\n[log]\nlevel = -2\n")
    monkeypatch.setenv("LSLAPICFG", str(own))
    values = _liblsl_ini(liblsl_settings(LslConfig(host="amp-pc")) or "")
    assert values["lab.KnownPeers"] == "{amp-pc}" and values["lab.SessionID"] == "ward-3"


_ACCEPTS = textwrap.dedent(
    """
    import sys, pylsl
    pylsl.set_config_content(sys.stdin.read())
    sid = sys.argv[1]
    outlet = pylsl.StreamOutlet(pylsl.StreamInfo("x", "EMG", 1, 100, pylsl.cf_float32, sid))
    print(len(pylsl.resolve_bypred(f"source_id='{sid}'", 1, 5.0)))
    """
)


def _liblsl_reads(content: str) -> tuple[str, str]:
    out = subprocess.run(
        [sys.executable, "-c", _ACCEPTS, f"scope-{uuid.uuid4().hex}"],
        input=content, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return out.stdout.strip(), out.stderr


def test_liblsl_takes_the_settings_with_a_peer_and_refuses_a_repeated_key() -> None:
    text = liblsl_settings(LslConfig(host="amp-pc", peers=["127.0.0.1"]))
    assert text is not None
    found, err = _liblsl_reads(text)
    assert found == "1" and "Error" not in err, err
    # The check can fail: a key written twice is liblsl's "rolling back to defaults".
    _, err = _liblsl_reads(text + "\n[lab]\nKnownPeers = {127.0.0.1}\n")
    assert "rolling back to defaults" in err


# ------------------------------------------------------------------ outlets
_OUTLETS = textwrap.dedent(
    """
    import sys
    from exoctl.config.schema import load_config
    from exoctl.hil.emg_source import EmgOutlet
    from exoctl.data.patient import patient_from_config
    from exoctl.service.lsl_outlets import LslPublisher
    cfg = load_config().with_overrides(device={"name": sys.argv[1]})
    daemon = LslPublisher(cfg)
    patient = patient_from_config(cfg)
    simulator = EmgOutlet(patient, "exoctl-sim-emg", source_id=sys.argv[1] + "-emg")
    print("ready", flush=True)
    sys.stdin.read()
    """
)

_DEFAULTS = textwrap.dedent(
    """
    import sys, pylsl
    info = pylsl.StreamInfo("control", "EMG", 1, 100, pylsl.cf_float32, sys.argv[1] + "-emg")
    outlet = pylsl.StreamOutlet(info)
    print("ready", flush=True)
    sys.stdin.read()
    """
)


@pytest.fixture
def publisher(tmp_path: Path) -> Iterator:
    procs: list[subprocess.Popen[str]] = []

    def start(code: str, name: str, settings: Path | None) -> None:
        env = {k: v for k, v in os.environ.items() if k != "LSLAPICFG"}
        if settings is not None:
            env["LSLAPICFG"] = str(settings)
        p = subprocess.Popen(
            [sys.executable, "-c", code, name], env=env, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        procs.append(p)
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"

    yield start
    for p in procs:
        assert p.stdin is not None
        p.stdin.close()
        p.wait(20)


def _answers(query: str, addresses: tuple[str, ...]) -> list[str]:
    """Addresses at which a discovery query (an LSL predicate) got an answer (1 s each)."""
    answered = []
    for address in addresses:
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as reply,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as ask,
        ):
            reply.bind(("0.0.0.0", 0))
            reply.settimeout(1.0)
            ask.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
            ask.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            port = reply.getsockname()[1]
            try:
                ask.sendto(f"LSL:shortinfo\r\n{query}\r\n{port} 7\r\n".encode(), (address, 16571))
                if b"<info>" in reply.recv(65536):
                    answered.append(address)
            except OSError:  # socket.timeout included: no answer
                pass
    return answered


def test_exoctl_outlets_do_not_answer_discovery_from_the_network(publisher, tmp_path) -> None:
    defaults = tmp_path / "liblsl-defaults.cfg"
    defaults.write_text("[log]\nlevel = -2\n")
    control = f"control-{uuid.uuid4().hex[:8]}"
    publisher(_DEFAULTS, control, defaults)
    if not _answers(f"source_id='{control}-emg'", NETWORK_DISCOVERY):
        pytest.skip("no LSL discovery over multicast or broadcast on this machine")
    name = f"scope-{uuid.uuid4().hex[:8]}"
    publisher(_OUTLETS, name, None)  # exoctl's own settings
    ours = f"starts-with(source_id,'{name}-')"  # the simulator's EMG and the daemon's four
    assert _answers(ours, NETWORK_DISCOVERY) == []
    # ... and this machine still finds them all (LabRecorder beside the daemon).
    found = {i.source_id() for i in pylsl.resolve_bypred(ours, 5, 5.0)}
    streams = ["emg", "estimate", "command", "joint_state", "events"]
    assert found == {f"{name}-{key}" for key in streams}


def test_settings_that_open_lsl_beyond_this_machine_are_named(monkeypatch, tmp_path) -> None:
    """The daemon logs these at start (``lsl_scope_wide``): an administrator's LSLAPICFG may
    widen the scope, but never silently."""
    from exoctl.acquisition.lsl_scope import settings_problems

    assert settings_problems() == []  # exoctl's own file
    wide = tmp_path / "wide.cfg"
    wide.write_text("; the site's\n[multicast]\nResolveScope = site\n")
    monkeypatch.setenv("LSLAPICFG", str(wide))
    problems = settings_problems()
    assert len(problems) == 2
    assert "ResolveScope = site" in problems[0] and "(all interfaces)" in problems[1]
    twice = tmp_path / "twice.cfg"
    twice.write_text(PACKAGED_SETTINGS.read_text() + "[multicast]\nResolveScope = machine\n")
    monkeypatch.setenv("LSLAPICFG", str(twice))
    (problem,) = settings_problems()
    assert "multicast.ResolveScope written twice" in problem and "site-wide" in problem
    monkeypatch.setenv("LSLAPICFG", str(tmp_path / "absent.cfg"))
    assert "cannot be read" in settings_problems()[0]
