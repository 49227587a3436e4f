"""Configuration errors name the file, the key, the bad value and what is allowed."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from exoctl.config.schema import DEFAULT_CONFIG, ConfigError, deep_merge, load_config


def _write(tmp_path: Path, mutate) -> Path:
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    mutate(raw)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_default_config_loads_and_resolves_paths():
    cfg = load_config()
    assert cfg.joint_names == ("hip_l", "hip_r", "knee_l", "knee_r")
    assert cfg.model.path.is_absolute() and cfg.model.path.is_file()
    assert cfg.estimator.calibration.is_file()
    assert len(cfg.emg.muscles) == 16


def test_out_of_range_value_names_file_key_value_and_bound(tmp_path):
    path = _write(tmp_path, lambda r: r["device"]["joints"][2].update(torque_limit_nm=-5))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = str(e.value)
    assert str(path) in msg
    assert "device.joints[2].torque_limit_nm" in msg
    assert "-5" in msg
    assert "greater than 0" in msg


def test_enum_value_lists_allowed_values(tmp_path):
    path = _write(tmp_path, lambda r: r["emg"].update(source="bluetooth"))
    msg = str(pytest.raises(ConfigError, load_config, path).value)
    assert "emg.source" in msg and "'bluetooth'" in msg
    assert "'lsl'" in msg and "'replay'" in msg


def test_unknown_key_lists_allowed_keys(tmp_path):
    path = _write(tmp_path, lambda r: r["control"].update(rate_hzz=500))
    msg = str(pytest.raises(ConfigError, load_config, path).value)
    assert "control.rate_hzz" in msg
    assert "rate_hz" in msg and "assist_gain" in msg


def test_missing_key_and_cross_check(tmp_path):
    def mutate(r):
        del r["model"]["path"]
        r["control"]["assist_gain"].pop("knee_r")

    msg = str(pytest.raises(ConfigError, load_config, _write(tmp_path, mutate)).value)
    assert "model.path: required key is missing" in msg


def test_assist_gain_must_name_device_joints(tmp_path):
    path = _write(tmp_path, lambda r: r["control"]["assist_gain"].pop("knee_r"))
    msg = str(pytest.raises(ConfigError, load_config, path).value)
    assert "assist_gain" in msg and "knee_r" in msg


def test_baudrate_and_angle_range(tmp_path):
    def mutate(r):
        r["device"]["serial"]["baudrate"] = 12345
        r["device"]["joints"][0]["angle_min_rad"] = 2.0

    msg = str(pytest.raises(ConfigError, load_config, _write(tmp_path, mutate)).value)
    assert "device.serial.baudrate = 12345" in msg and "1000000" in msg
    assert "device.joints[0]" in msg and "angle_min_rad" in msg


def test_bad_yaml_and_missing_file(tmp_path):
    p = tmp_path / "broken.yaml"
    p.write_text("device: [unclosed\n")
    assert str(p) in str(pytest.raises(ConfigError, load_config, p).value)
    missing = tmp_path / "nope.yaml"
    assert "cannot read" in str(pytest.raises(ConfigError, load_config, missing).value)


def test_cli_reports_config_error_and_exits_1(tmp_path):
    """A bad configuration exits 1 from every command family (it was 2 from hil/sim and 1
    from the service commands before one policy, exoctl/cli_policy.py, covered both)."""
    path = _write(tmp_path, lambda r: r["control"].update(rate_hz=5000))
    proc = subprocess.run(
        [sys.executable, "-m", "exoctl.cli", "--config", str(path), "hil", "--duration", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert str(path) in proc.stderr and "control.rate_hz = 5000" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "less than or equal to 1000" in proc.stderr


# ---------------------------------------- cross-field checks (values each valid, wrong together)
LOCATED = r"^{file}:(\d+): {key}: .+$"


def _one_problem(path: Path, key: str) -> tuple[int, str]:
    """The configuration is refused with exactly one located line naming ``key``."""
    msg = str(pytest.raises(ConfigError, load_config, path).value)
    assert "\n" not in msg, msg
    m = re.match(LOCATED.format(file=re.escape(str(path)), key=re.escape(key)), msg)
    assert m, msg
    return int(m.group(1)), msg


def test_heartbeat_longer_than_the_command_timeout_is_refused(tmp_path):
    """A 0.3 s heartbeat with a 0.1 s firmware command timeout was accepted (the
    firmware then timed out three times in 1.5 s idle)."""
    path = _write(tmp_path, lambda r: r["device"].update(heartbeat_period_s=0.3))
    line, msg = _one_problem(path, "device.heartbeat_period_s")
    assert "heartbeat_period_s" in path.read_text().splitlines()[line - 1]
    assert "command_timeout_s (0.1 s)" in msg
    # the bound is half the timeout: exactly half is accepted, a little more is not
    load_config(_write(tmp_path, lambda r: r["device"].update(heartbeat_period_s=0.05)))
    _one_problem(
        _write(tmp_path, lambda r: r["device"].update(heartbeat_period_s=0.051)),
        "device.heartbeat_period_s",
    )


@pytest.mark.parametrize("edges", [[20.0, float("inf")], [float("-inf"), 450.0], [20.0, "nan"]])
def test_bandpass_edges_must_be_finite(tmp_path, edges):
    """A band-pass edge at infinity passed validation and failed later."""
    edges = [float(e) for e in edges]
    path = _write(tmp_path, lambda r: r["estimator"].update(bandpass_hz=edges))
    msg = str(pytest.raises(ConfigError, load_config, path).value)
    assert "estimator.bandpass_hz[" in msg and "finite" in msg


def test_a_socket_path_too_long_for_its_estop_sibling_is_refused(tmp_path):
    """A Unix socket's path holds 107 bytes; the e-stop socket beside the control socket is 6
    bytes longer. Too long was found only when the daemon bound it (seen under pytest-xdist's
    longer temporary directories: 'OSError: AF_UNIX path too long')."""
    ok = "/run/exoctl/" + "d" * (107 - len("/run/exoctl/") - len("/c.estop.sock")) + "/c.sock"
    assert len(ok.replace("c.sock", "c.estop.sock")) == 107
    load_config(_write(tmp_path, lambda r: r["service"].update(socket_path=ok)))
    longer = ok.replace("/c.sock", "/cc.sock")
    _, msg = _one_problem(
        _write(tmp_path, lambda r: r["service"].update(socket_path=longer)), "service.socket_path"
    )
    assert "107 bytes" in msg and "shorter directory" in msg


def test_bandpass_above_nyquist_is_refused(tmp_path):
    """A band-pass edge above Nyquist passed validation and failed later."""
    path = _write(tmp_path, lambda r: r["estimator"].update(bandpass_hz=[20.0, 1500.0]))
    _, msg = _one_problem(path, "estimator.bandpass_hz")
    assert "Nyquist frequency 1000 Hz" in msg
    # the same edge is fine once the EMG is sampled fast enough
    load_config(
        _write(
            tmp_path,
            lambda r: (
                r["estimator"].update(bandpass_hz=[20.0, 1500.0]),
                r["emg"].update(sampling_rate_hz=4000),
            ),
        )
    )


@pytest.mark.parametrize(
    "mutate,key",
    [
        # commands feed the firmware's command timeout: two ticks at least
        (lambda r: (r["control"].update(rate_hz=50),
                    r["device"].update(command_timeout_s=0.03, heartbeat_period_s=0.01)),
         "device.command_timeout_s"),
        # the tick feeds the safe-stop deadline: the ramp needs a tick, zero within safe_stop_s
        (lambda r: (r["control"].update(rate_hz=50), r["safety"].update(safe_stop_s=0.03)),
         "safety.safe_stop_s"),
        # the simulator's EMG chunks feed the EMG watchdog (degraded at half its timeout)
        (lambda r: r["simulator"].update(emg_chunk_samples=200), "simulator.emg_chunk_samples"),
        # the assist smoothing filter runs at the control rate
        (lambda r: r["control"].update(rate_hz=50, smoothing_hz=30.0), "control.smoothing_hz"),
    ],
)  # fmt: skip
def test_every_period_against_the_timeout_it_feeds(tmp_path, mutate, key):
    _one_problem(_write(tmp_path, mutate), key)


def test_several_problems_one_line_each(tmp_path):
    def mutate(r):
        r["device"]["heartbeat_period_s"] = 0.3
        r["estimator"]["bandpass_hz"] = [20.0, 1500.0]

    path = _write(tmp_path, mutate)
    lines = str(pytest.raises(ConfigError, load_config, path).value).splitlines()
    assert len(lines) == 2
    assert all(re.match(rf"^{re.escape(str(path))}:\d+: \S+: ", line) for line in lines), lines


def test_overrides_are_validated_the_same_way():
    cfg = load_config()
    with pytest.raises(ConfigError, match="device.heartbeat_period_s"):
        cfg.with_overrides(device={"heartbeat_period_s": 0.3})
    assert cfg.with_overrides(safety={"emg_timeout_s": 0.2}).safety.emg_timeout_s == 0.2


def test_deep_merge_merges_mappings_and_modifies_nothing():
    a = {"device": {"serial": {"port": "a", "baudrate": 1}, "name": "x"}, "k": 1}
    b = {"device": {"serial": {"port": "b"}}, "k": {"new": 2}}
    out = deep_merge(a, b)
    assert out == {"device": {"serial": {"port": "b", "baudrate": 1}, "name": "x"}, "k": {"new": 2}}
    assert a["device"]["serial"]["port"] == "a" and b == {
        "device": {"serial": {"port": "b"}},
        "k": {"new": 2},
    }


def test_a_huge_value_is_shown_bounded(tmp_path):
    """No message builds the repr of a whole value (an alias bomb's message once
    took minutes); a 100,000-element list in the wrong place is shown in a few characters."""
    path = _write(tmp_path, lambda r: r["device"].update(name=list(range(99_000))))
    t0 = time.perf_counter()
    msg = str(pytest.raises(ConfigError, load_config, path).value)
    assert len(msg) < 400 and "device.name = [0, 1, 2, 3, 4, 5, ...]" in msg
    assert time.perf_counter() - t0 < 30  # reading 99,000 values; the message itself is ~us


@pytest.mark.parametrize(
    ("lsl", "key", "words"),
    [
        ({"source_id": "amp' or '1'='1"}, "emg.lsl.source_id", "single quote"),
        ({"name": "emg']"}, "emg.lsl.name", "single quote"),
        ({"host": "amp pc;rm"}, "emg.lsl.host", "host name"),
        ({"host": "amp-pc", "peers": ["10.0.0.5", "{all}"]}, "emg.lsl.peers", "'{all}'"),
        ({"peers": ["10.0.0.5"]}, "emg.lsl", "emg.lsl.host is not"),
    ],
)
def test_lsl_identity_host_and_peers_are_checked(tmp_path, lsl, key, words):
    """They go into an LSL query and liblsl's settings: a quote or a brace would change
    which streams match, so they are refused at load time."""
    path = _write(tmp_path, lambda r: r["emg"]["lsl"].update(lsl))
    msg = str(pytest.raises(ConfigError, load_config, path).value)
    assert key in msg and words in msg, msg


def test_lsl_amplifier_host_and_peers_load():
    cfg = load_config().with_overrides(emg={"lsl": {"host": "amp-pc", "peers": ["fe80::1"]}})
    assert cfg.emg.lsl.host == "amp-pc" and cfg.emg.lsl.peers == ["fe80::1"]


def test_accepted_device_ids_must_not_be_empty_nor_hold_blank_patterns() -> None:
    """An empty list would refuse every device: it is refused in plain words, pointing at
    ["*"] for a maker who means "any device"."""
    cfg = load_config()
    with pytest.raises(ConfigError, match=r"device\.accepted_device_ids = \[\]: .*\[\"\*\"\]"):
        cfg.with_overrides(device={"accepted_device_ids": []})
    with pytest.raises(ConfigError, match=r"'exofw 1' is not a device id pattern"):
        cfg.with_overrides(device={"accepted_device_ids": ["exofw 1"]})
    ok = cfg.with_overrides(device={"accepted_device_ids": ["*"]})
    assert ok.device.accepted_device_ids == ["*"]
