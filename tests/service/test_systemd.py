"""The systemd unit and the udev rule."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "exoctl.service"
RULES = ROOT / "systemd" / "99-exoctl.rules"


def _verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )


def _unit_with_real_execstart(tmp_path: Path, text: str) -> Path:
    # verify checks that ExecStart's binary exists: point it at this venv's exoctl.
    exe = Path(sys.executable).with_name("exoctl")
    text = re.sub(r"^ExecStart=\S+", f"ExecStart={exe}", text, flags=re.M)
    out = tmp_path / "exoctl.service"
    out.write_text(text)
    return out


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed here, so the unit cannot be verified",
)
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    if not Path(sys.executable).with_name("exoctl").exists():
        pytest.skip("the exoctl console script is not installed in this environment")
    unit = _unit_with_real_execstart(tmp_path, UNIT.read_text())
    r = _verify(unit)
    complaints = [ln for ln in (r.stdout + r.stderr).splitlines() if unit.name in ln]
    assert r.returncode == 0 and not complaints, r.stdout + r.stderr
    # and verify really reads it: a broken copy is reported (so this test can fail)
    bad = _unit_with_real_execstart(tmp_path, UNIT.read_text().replace("Type=notify", "Type=bogus"))
    r = _verify(bad)
    assert "Type=bogus" in r.stderr or "service type" in r.stderr, r.stderr


def test_unit_has_the_required_settings() -> None:
    kv: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            k, v = line.split("=", 1)
            kv.setdefault(k.strip(), []).append(v.strip())
    assert kv["Type"] == ["notify"]
    assert kv["Restart"] == ["on-failure"]
    assert "WatchdogSec" in kv and kv["User"] == ["exoctl"] and kv["Group"] == ["exoctl"]
    assert "CAP_SYS_NICE" in kv["AmbientCapabilities"][0]
    for key in ("LimitMEMLOCK", "LimitRTPRIO", "ReadWritePaths", "RuntimeDirectory"):
        assert key in kv, key
    for key in ("ProtectSystem", "ProtectHome", "PrivateTmp", "NoNewPrivileges"):
        assert kv[key][0] in ("strict", "yes"), key
    assert any("/dev/exoskeleton" in v for v in kv["DeviceAllow"])
    assert kv["ExecStart"][0].endswith(" daemon")
    # LSL has no authentication: IP with this machine only (an amplifier elsewhere: a drop-in)
    assert kv["IPAddressDeny"] == ["any"] and kv["IPAddressAllow"] == ["localhost"]


def test_udev_rule_lines_are_well_formed() -> None:
    op = r"(==|!=|\+=|-=|:=|=)"
    pair = re.compile(r"^\s*([A-Z_]+(\{[^}]+\})?)\s*" + op + r'\s*"[^"]*"\s*$')
    rules = [ln for ln in RULES.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert len(rules) == 2
    for ln in rules:
        for part in ln.split(", "):
            assert pair.match(part), part
    text = "\n".join(rules)
    assert 'SYMLINK+="exoskeleton"' in text and 'GROUP="exoctl"' in text
    assert 'ATTR{latency_timer}="1"' in text
