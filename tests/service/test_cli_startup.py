"""``exoctl estop`` and ``exoctl status`` start without the heavy imports (pydantic, numpy, the
daemon's logging): an e-stop must not wait on them. Functional checks only; the timing is in
bench/bench_cli_start.py (``python -m bench --only cli_start``).

The socket is still the one of the configuration the user chose (--config, $EXOCTL_CONFIG),
read with the same path rule as the full load."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from exoctl import cli, cli_parser
from exoctl.config import paths
from exoctl.config.paths import read_socket_path
from exoctl.config.schema import DEFAULT_CONFIG, load_config
from exoctl.service import rpc
from exoctl.service.commands import quick

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("pydantic", "numpy", "structlog", "onnxruntime", "pylsl", "serial", "argparse", "inspect")

PROBE = """
import json, sys
from exoctl.cli import main
code = main(sys.argv[1:])
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(sys.stdin.read())))
print(json.dumps({"code": code, "heavy": heavy}))
"""


def _probe(argv: list[str], env: dict[str, str] | None = None) -> dict:
    p = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        input=json.dumps(HEAVY),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.splitlines()[-1])


@pytest.mark.parametrize("command", [["estop"], ["status"], ["status", "--json"]])
def test_estop_and_status_do_not_import_the_heavy_stack(
    tmp_path: Path,
    write_config,
    estop_stand_in,
    command: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = write_config(tmp_path)
    h = estop_stand_in
    srv = rpc.RpcServer(
        load_config(cfg).service.socket_path, rpc.methods_from(h), allowed_users=["root"]
    ).start()
    try:
        by_option = _probe(["--config", str(cfg), *command])
        monkeypatch.setenv("EXOCTL_CONFIG", str(cfg))  # found through the lookup rule
        by_env = _probe(command, env=None)
    finally:
        srv.close()
    for r in (by_option, by_env):
        assert r == {"code": 0, "heavy": []}
    assert h.pressed == (2 if command == ["estop"] else 0)


def test_other_commands_still_take_the_full_path(tmp_path: Path, write_config) -> None:
    """A control: the probe does see the heavy imports where a command needs them."""
    cfg = write_config(tmp_path)
    r = _probe(["--config", str(cfg), "fault", "clear"])
    assert r["code"] == 3 and "pydantic" in r["heavy"]


@pytest.mark.parametrize(
    "socket_path", [None, "run/control.sock", "~/exoctl/c.sock", "/tmp/x/control.sock"]
)
def test_the_socket_path_is_read_by_the_full_loads_rule(tmp_path: Path, socket_path) -> None:
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    for key in ("calibration",):
        raw["estimator"][key] = str(DEFAULT_CONFIG.parent / raw["estimator"][key])
    raw["model"]["path"] = str(DEFAULT_CONFIG.parent / raw["model"]["path"])
    if socket_path is None:
        raw["service"].pop("socket_path", None)
    else:
        raw["service"]["socket_path"] = socket_path
    sub = tmp_path / "etc"
    sub.mkdir()
    path = sub / "exoctl.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert read_socket_path(path) == load_config(path).service.socket_path


@pytest.mark.parametrize("text", ["service: [\n", "service: {socket_path: 5}\n", "- 1\n"])
def test_an_unreadable_socket_path_is_none_so_the_full_load_reports_it(
    tmp_path: Path, text: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert read_socket_path(path) is None


# The quick parser reads what the full parser reads, or hands the line over -------------------

SAME_AS_ARGPARSE = [
    ["estop"],
    ["estop", "--json"],
    ["--config", "c.yaml", "estop"],
    ["--config=c.yaml", "estop", "--json"],
    ["status"],
    ["status", "--json"],
    ["status", "--watch"],
    ["status", "--watch", "--json"],
    ["status", "--json", "--watch"],
    ["status", "--watch", "2.5"],
    ["status", "--watch=0.2", "--json"],
    ["--config", "c.yaml", "status", "--watch", "86400"],
]


@pytest.mark.parametrize("argv", SAME_AS_ARGPARSE, ids=" ".join)
def test_the_quick_parser_reads_a_line_as_the_full_parser_does(argv: list[str]) -> None:
    fast = quick.parse(argv)
    assert fast is not None, "a plain estop/status line must take the quick path"
    full = cli_parser.build_parser().parse_args(argv)
    for key in ("command", "json", "watch"):
        assert getattr(fast, key) == getattr(full, key, None), key
    assert (fast.config is None) == (full.config is None)
    assert fast.config is None or Path(fast.config) == full.config
    assert fast.func is full.func  # the very same command function


HANDED_OVER = [
    [],
    ["--help"],
    ["estop", "--help"],
    ["status", "-h"],
    ["--version"],
    ["fault", "clear"],
    ["estop", "extra"],
    ["estop", "--watch"],  # status only
    ["estop", "--json", "--json"],
    ["status", "--watch", "1", "--watch", "2"],
    ["status", "--watch", "-1"],
    ["status", "--watch", "0"],
    ["status", "--watch", "nan"],
    ["status", "--watch=abc"],
    ["status", "--wat", "1"],  # argparse's abbreviations are argparse's
    ["status", "--js"],
    ["--config"],
    ["--config", "--json", "estop"],
    ["--config="],
    ["--config=", "estop"],
    ["--json", "estop"],
    ["estop", "--config", "c.yaml"],
    ["estop", "--"],
]


@pytest.mark.parametrize("argv", HANDED_OVER, ids=lambda a: " ".join(a) or "(none)")
def test_anything_else_goes_to_the_full_parser(argv: list[str]) -> None:
    assert quick.parse(argv) is None


# An e-stop with a configuration it cannot read ----------------------------------------------


@pytest.fixture
def default_socket_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, estop_stand_in):
    """Starts a stand-in daemon on the default socket (moved under tmp_path: never /run here)."""

    def start():
        sock = tmp_path / "run" / "control.sock"
        sock.parent.mkdir()
        monkeypatch.setattr(paths, "DEFAULT_SOCKET_PATH", sock)
        h = estop_stand_in
        srv = rpc.RpcServer(sock, rpc.methods_from(h), allowed_users=["root"]).start()
        return h, srv

    return start


@pytest.mark.parametrize(
    "config", ["missing.yaml", "bad.yaml", "socket5.yaml"], ids=["missing", "not YAML", "not text"]
)
def test_estop_without_a_readable_configuration_presses_the_default_socket(
    tmp_path: Path, default_socket_daemon, capsys, config: str
) -> None:
    (tmp_path / "bad.yaml").write_text("service: [\n")
    (tmp_path / "socket5.yaml").write_text("service: {socket_path: 5}\n")
    h, srv = default_socket_daemon()
    try:
        code = cli.main(["--config", str(tmp_path / config), "estop"])
    finally:
        srv.close()
    out, err = capsys.readouterr()
    assert h.pressed == 1  # pressed, although the configuration could not be read
    assert code == 1  # and still an error: the file must be fixed
    assert out.startswith("EMERGENCY STOP")
    lines = err.splitlines()
    assert len(lines) == 2 and all(line.startswith("exoctl: ") for line in lines), err
    assert str(tmp_path / config) in lines[0]
    assert "pressed at the default socket" in lines[1] and "NOT reached" in lines[1]


def test_estop_without_a_readable_configuration_with_json(
    tmp_path: Path, default_socket_daemon, capsys
) -> None:
    h, srv = default_socket_daemon()
    try:
        code = cli.main(["--config", str(tmp_path / "missing.yaml"), "estop", "--json"])
    finally:
        srv.close()
    out, _ = capsys.readouterr()
    doc = json.loads(out)
    assert code == 1 and h.pressed == 1
    assert doc["ok"] is False and doc["exit_code"] == 1
    assert doc["data"] == {"safety_state": "ESTOP"} and "default socket" in doc["error"]


def test_estop_with_no_configuration_and_no_daemon_says_it_was_not_pressed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setattr(paths, "DEFAULT_SOCKET_PATH", tmp_path / "none" / "control.sock")
    code = cli.main(["--config", str(tmp_path / "missing.yaml"), "estop"])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    lines = err.splitlines()
    assert len(lines) == 2 and "missing.yaml" in lines[0], err
    assert "e-stop NOT pressed" in lines[1] and "not running" in lines[1]


def test_status_with_an_unreadable_configuration_is_still_exit_1(
    tmp_path: Path, default_socket_daemon, capsys
) -> None:
    """A control: only the e-stop falls back to the default socket."""
    h, srv = default_socket_daemon()
    try:
        code = cli.main(["--config", str(tmp_path / "missing.yaml"), "status"])
    finally:
        srv.close()
    out, err = capsys.readouterr()
    assert code == 1 and out == "" and "missing.yaml" in err and h.pressed == 0
