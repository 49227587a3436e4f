"""Shared fixtures: a configuration whose service paths live in a temporary directory."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
import yaml

from exoctl.config.schema import DEFAULT_CONFIG, load_config


def write_config(tmp: Path, service: dict[str, Any] | None = None, **sections: Any) -> Path:
    """Default configuration with service paths under ``tmp`` (never /var/lib or /run)."""
    svc = {
        "data_dir": str(tmp / "data"),
        "socket_path": str(tmp / "run" / "control.sock"),
        "socket_group": None,
        "allowed_users": ["root"],
        "allowed_groups": [],
        "flush_interval_s": 0.2,
        "publish_lsl": False,
        "realtime_priority": 50,  # asked for: off by default (tests/conftest.py says why)
    }
    svc.update(service or {})
    cfg = load_config(DEFAULT_CONFIG).with_overrides(service=svc, **sections)
    data = cfg.model_dump(mode="json")
    data.pop("source", None)
    path = tmp / "exoctl.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class EstopStandIn:
    """A daemon's two always-answered methods and nothing else: what the CLI's quick path
    (``status``, ``estop``) talks to, with a count of e-stop presses to assert on."""

    RPC_METHODS = {"status": "status", "estop": "estop"}

    def __init__(self) -> None:
        self.pressed = 0

    def status(self) -> dict:
        return {"state": "idle"}

    def estop(self) -> dict:
        self.pressed += 1
        return {"safety_state": "ESTOP"}


@pytest.fixture
def estop_stand_in() -> EstopStandIn:
    """A fresh :class:`EstopStandIn` to serve with ``rpc.RpcServer``."""
    return EstopStandIn()


@pytest.fixture(name="write_config", scope="session")
def _write_config_fixture() -> Any:
    """Helpers are handed out as fixtures: with --import-mode=importlib, conftest is not an
    importable module."""
    return write_config


def cli_parser() -> argparse.ArgumentParser:
    """The shape exoctl/cli.py gives: a global --config, then sub-commands."""
    from exoctl.service.commands import register

    p = argparse.ArgumentParser(prog="exoctl")
    p.add_argument("--config", default=None)
    sp = p.add_subparsers(dest="cmd", required=True)
    register(sp)
    return p


def run_cli(argv: list[str]) -> int:
    args = cli_parser().parse_args(argv)
    return args.func(args)


@pytest.fixture(name="run_cli")
def _run_cli_fixture() -> Any:
    return run_cli
