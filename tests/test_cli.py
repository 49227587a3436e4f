"""One CLI policy for every command (exoctl/cli_policy.py): results on stdout, strict JSON with
--json, one line per problem on stderr, never a traceback, exit codes shared by every family.

Written because a bad configuration exited 2 from one command family and 1 from another, and
`hil --duration -1` was accepted. The HIL runs themselves are in tests/hil/test_hil_cli.py
(slow).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from exoctl import cli, cli_parser, cli_policy
from exoctl.config.schema import DEFAULT_CONFIG
from exoctl.errors import EXPECTED_ERRORS
from exoctl.hil import commands as hil_commands
from exoctl.hil.runner import format_summary


def _bad_config(tmp_path: Path) -> Path:
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["device"]["heartbeat_period_s"] = 0.3  # in range alone, wrong with the 0.1 s timeout
    raw["estimator"]["calibration"] = str(DEFAULT_CONFIG.parent / raw["estimator"]["calibration"])
    raw["model"]["path"] = str(DEFAULT_CONFIG.parent / raw["model"]["path"])
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(raw, sort_keys=False))
    return p


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = cli.main(argv)
    except SystemExit as e:  # argparse's own exits (usage errors)
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_located_line(err: str, path: Path, key: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"exoctl: {path}:") and f": {key}: " in lines[0], err
    assert "Traceback" not in err


FAMILIES = [
    ["hil", "--duration", "1"],
    ["sim", "--duration", "1"],
    ["status"],  # service: daemon-facing
    ["sessions", "list"],  # service: recordings
    ["data", "export-sim", "--out", "OUT"],
    ["calibrate", "--data", "DATA", "--out", "OUT"],
    ["evaluate", "--model", "MODEL", "--data", "DATA"],
    ["config", "show"],
    ["bench", "up", "--dir", "DIR", "--duration", "1"],
]


@pytest.mark.parametrize("argv", FAMILIES, ids=lambda a: a[0])
def test_a_bad_configuration_exits_1_from_every_command_family(tmp_path, capsys, argv):
    path = _bad_config(tmp_path)
    argv = [str(tmp_path / a) if a.isupper() else a for a in argv]
    code, out, err = _run(["--config", str(path), *argv], capsys)
    assert code == cli_policy.EXIT_ERROR, (out, err)
    text = err + out  # data/training commands print their ERROR line on their own stream
    assert "device.heartbeat_period_s" in text and str(path) in text
    assert "Traceback" not in text


def test_hil_with_a_bad_configuration_is_one_line_on_stderr(tmp_path, capsys):
    path = _bad_config(tmp_path)
    code, out, err = _run(["--config", str(path), "hil", "--duration", "1"], capsys)
    assert code == 1 and out == ""
    _assert_one_located_line(err, path, "device.heartbeat_period_s")


def test_with_json_a_failure_is_a_json_document_on_stdout(tmp_path, capsys):
    path = _bad_config(tmp_path)
    for argv in (
        ["hil", "--duration", "1", "--json"],
        ["status", "--json"],
        ["config", "show", "--json"],
    ):
        code, out, err = _run(["--config", str(path), *argv], capsys)
        doc = json.loads(out)
        assert code == 1 and doc["ok"] is False and doc["exit_code"] == 1, out
        assert "device.heartbeat_period_s" in doc["error"] and "Traceback" not in err


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf", "-inf", "abc", "1e9"])
@pytest.mark.parametrize("command", [["hil"], ["sim"], ["bench", "up"]], ids=lambda c: c[0])
def test_durations_out_of_range_are_usage_errors(capsys, command, value):
    """`hil --duration -1` was accepted."""
    if command == ["bench", "up"] and value == "1e9":
        return  # a bench may run as long as it likes
    code, out, err = _run([*command, "--duration", value], capsys)
    assert code == cli_policy.EXIT_USAGE
    assert "--duration" in err and "Traceback" not in err and out == ""


def test_usage_error_with_json_is_a_json_document(capsys):
    code, out, err = _run(["hil", "--duration", "-1", "--json"], capsys)
    doc = json.loads(out)
    assert code == 2 and doc == {"ok": False, "error": doc["error"], "exit_code": 2}
    assert "--duration" in doc["error"]


@pytest.mark.parametrize(
    "text,key",
    [
        ("duration_s: 5\ninject:\n  - {at_s: 1, kind: melt_down}\n", "inject[0].kind"),
        ("duration_s: 5\ninject:\n  - {kind: emg_stop}\n", "inject[0].at_s"),
        ("duration_s: 5\ninject:\n  - {at_s: 9, kind: emg_stop}\n", "inject[0].at_s"),
        ("duration_s: -5\ninject: []\n", "duration_s"),
        ("duration_s: 5\nduration_s: 50\ninject: []\n", "duration_s"),
        ("duration_s: 5\ninject: []\nconfig: {device: {heartbeat_period_s: 0.3}}\n",
         "device.heartbeat_period_s"),
        ("duration_s: 5\ninject: []\nexpects: {}\n", "expects"),
    ],
)  # fmt: skip
def test_a_bad_scenario_is_one_located_line_before_anything_starts(tmp_path, capsys, text, key):
    path = tmp_path / "sc.yaml"
    path.write_text(text)
    code, out, err = _run(["hil", "--scenario", str(path)], capsys)
    assert code == 1, err
    assert err.count("\n") == 1 and f"{key}:" in err and "Traceback" not in err, err


def test_an_unknown_scenario_lists_the_known_ones(capsys):
    code, _, err = _run(["hil", "--scenario", "no_such_scenario"], capsys)
    assert code == 1 and "known scenarios:" in err and "emg_stop" in err


def test_a_bug_is_one_line_with_its_place_and_exit_70(monkeypatch, capsys):
    def broken(args):
        return {}["missing"]

    monkeypatch.setattr(hil_commands, "cmd_sim", broken)
    code, out, err = _run(["sim", "--duration", "1"], capsys)
    assert code == cli_policy.EXIT_INTERNAL
    assert err.count("\n") == 1 and "internal error" in err and "KeyError" in err
    assert "test_cli.py:" in err and "Traceback" not in err
    monkeypatch.setenv("EXOCTL_DEBUG", "1")
    code, out, err = _run(["sim", "--duration", "1"], capsys)
    assert code == 70 and "Traceback" in err  # asked for


def test_no_command_is_a_usage_error(capsys):
    code, out, err = _run([], capsys)
    assert code == 2 and out == "" and "usage:" in err


def test_json_is_strict_and_null_for_missing_figures():
    doc = {
        "r2": {"hip_l": float("nan"), "knee_l": 0.9},
        "max": float("inf"),
        "n": np.int64(3),
        "x": np.float32(0.5),
        "arr": np.array([1.0, np.nan]),
        "path": Path("/a/b"),
        7: (1, 2),
    }
    text = cli_policy.json_text(doc)
    back = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON: {c}"))
    assert back == {
        "r2": {"hip_l": None, "knee_l": 0.9},
        "max": None,
        "n": 3,
        "x": 0.5,
        "arr": [1.0, None],
        "path": "/a/b",
        "7": [1, 2],
    }


def test_human_summary_says_na_for_missing_figures():
    s = {
        "duration_s": 1.0,
        "target_rate_hz": 500.0,
        "control_rate_hz": None,
        "deadline_misses": None,
        "loop_jitter_us": {"p50": 1.0, "p99": float("nan"), "max": None},
        "tick_cost_us": None,
        "latency_ms": None,
        "realtime": {"controller_loop": "x", "simulator": "y"},
        "commands_sent": 1,
        "commands_received": 1,
        "limit_violations": 0,
        "scored_after_s": 2.0,
        "r2": {"hip_l": float("nan")},
        "rmse_nm": {"hip_l": None},
        "events": [],
        "faults": [],
    }
    text = format_summary(s)
    assert "R^2 n/a" in text and "RMSE n/a" in text and "p99 n/a" in text
    assert "not scored" in text


def test_the_documented_codes_are_the_ones_in_use():
    """README.md and docs/deploy.md list the same codes as exoctl/cli_policy.py."""
    root = Path(__file__).resolve().parents[1]
    codes = {v for k, v in vars(cli_policy).items() if k.startswith("EXIT_") and isinstance(v, int)}
    assert codes == {0, 1, 2, 3, 4, 5, 70, 130, 141}
    for doc in ("README.md", "docs/deploy.md"):
        text = (root / doc).read_text()
        for code in codes:
            assert f"| {code} |" in text, (doc, code)


def test_the_installed_entry_point_ends_a_bad_config_the_same_way(tmp_path):
    """Through a real process: stderr one line, exit 1, nothing on stdout."""
    path = _bad_config(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "exoctl.cli", "--config", str(path), "sim", "--duration", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and proc.stdout == ""
    _assert_one_located_line(proc.stderr, path, "device.heartbeat_period_s")


def test_evaluate_json_failure_is_still_one_json_document(tmp_path, capsys):
    code, out, err = _run(
        ["evaluate", "--model", str(tmp_path / "no.onnx"), "--data", str(tmp_path / "d.yaml")]
        + ["--json"],
        capsys,
    )
    doc = json.loads(out)
    assert code == 1 and doc["ok"] is False and doc["exit_code"] == 1
    assert err.startswith("exoctl: ") and "Traceback" not in err


# The wiring: each family registers its own commands, none is skipped, one error base ---------


def _commands(parser) -> set[str]:
    sub = next(a for a in parser._actions if a.dest == "command")
    return set(sub.choices)


def test_every_command_is_registered_by_the_module_that_owns_it():
    """hil and sim were wired in cli.py itself; now every family is a ``register``."""
    by_module: dict[str, set[str]] = {}
    for name in cli_parser.COMMAND_MODULES:
        p = cli_parser.Parser(prog="exoctl")
        sub = p.add_subparsers(dest="command")
        __import__(name, fromlist=["register"]).register(sub)
        by_module[name] = set(sub.choices)
    assert by_module["exoctl.hil.commands"] == {"hil", "sim"}
    every = set().union(*by_module.values())
    assert sum(len(c) for c in by_module.values()) == len(every)  # no command twice
    assert _commands(cli.build_parser()) == every  # and none added elsewhere


def test_a_command_module_that_fails_to_import_is_reported_not_skipped(monkeypatch, capsys):
    """It used to be skipped ("not built yet"): its commands were silently missing."""
    monkeypatch.setattr(
        cli_parser, "COMMAND_MODULES", (*cli_parser.COMMAND_MODULES, "exoctl.no_such_commands")
    )
    code, out, err = _run(["config", "show"], capsys)
    assert code == cli_policy.EXIT_INTERNAL and out == ""
    assert err.count("\n") == 1 and "exoctl.no_such_commands" in err, err
    assert "Traceback" not in err


def test_a_broken_command_module_with_json_is_a_json_document(monkeypatch, capsys):
    monkeypatch.setattr(cli_parser, "COMMAND_MODULES", ("exoctl.no_such_commands",))
    code, out, _ = _run(["config", "show", "--json"], capsys)
    doc = json.loads(out)
    assert code == 70 and doc["exit_code"] == 70 and "no_such_commands" in doc["error"]


def _error(module: str, name: str) -> type[Exception]:
    return getattr(__import__(module, fromlist=[name]), name)


# The input errors the CLI used to list by name, each where it is defined.
LISTED = [
    ("exoctl.config.yamlfile", "ConfigError"),
    ("exoctl.hil.processes", "ChildError"),
    ("exoctl.data.spec", "DatasetError"),
    ("exoctl.signal.calibration", "CalibrationError"),
    ("exoctl.estimation.torque_model", "ModelError"),
    ("exoctl.acquisition.sources", "AcquisitionError"),
    ("exoctl.hil.replay", "ReplayError"),
    ("exoctl.runtime.controller", "ControllerError"),
    ("firmware_bridge.link", "LinkError"),
    ("firmware_bridge.qemu_firmware", "FirmwareToolError"),
]


@pytest.mark.parametrize("module,name", LISTED, ids=lambda x: x.rsplit(".", 1)[-1])
def test_every_input_error_derives_from_the_one_base(module, name):
    assert issubclass(_error(module, name), EXPECTED_ERRORS)


RAISED = [
    *LISTED[1:],  # ConfigError: its own test above (one line per problem)
    ("firmware_bridge.protocol", "FrameError"),
    ("exoctl.recordings.store", "RecorderError"),
    ("exoctl.acquisition.lsl_scope", "LslScopeError"),
]


@pytest.mark.parametrize("module,name", RAISED, ids=lambda x: x.rsplit(".", 1)[-1])
def test_an_error_raised_on_purpose_is_exit_1_with_its_message(monkeypatch, capsys, module, name):
    """Any ExoctlError or BridgeError, not a list of names (FrameError, RecorderError were
    missing from it: a bug's exit 70)."""
    cls = _error(module, name)
    why = "the input says no\nfor this reason"
    exc = cls("value", why) if name == "FrameError" else cls(why)  # FrameError(kind, detail)

    def refuses(args):
        raise exc

    monkeypatch.setattr(hil_commands, "cmd_sim", refuses)
    code, out, err = _run(["sim", "--duration", "1"], capsys)
    assert code == cli_policy.EXIT_ERROR and out == ""
    assert err.startswith("exoctl: ") and err.count("\n") == 1, err
    assert err.endswith("the input says no for this reason\n"), err
