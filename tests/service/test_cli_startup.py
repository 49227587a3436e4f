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

from exoctl.config.paths import read_socket_path
from exoctl.config.schema import DEFAULT_CONFIG, load_config
from exoctl.service import rpc

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("pydantic", "numpy", "structlog", "onnxruntime", "pylsl", "serial")

PROBE = """
import json, sys
from exoctl.cli import main
code = main(sys.argv[1:])
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(sys.stdin.read())))
print(json.dumps({"code": code, "heavy": heavy}))
"""


class EstopStandIn:
    RPC_METHODS = {"status": "status", "estop": "estop"}

    def __init__(self) -> None:
        self.pressed = 0

    def status(self) -> dict:
        return {"state": "idle"}

    def estop(self) -> dict:
        self.pressed += 1
        return {"safety_state": "ESTOP"}


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
    tmp_path: Path, write_config, command: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = write_config(tmp_path)
    h = EstopStandIn()
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
