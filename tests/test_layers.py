"""The floors of the code (pyproject.toml, ``[tool.importlinter]``) hold, and can fail.

``make test`` runs ``lint-imports`` too; this test puts the same check in front of whoever runs
``pytest``, and shows on a copy of the tree that an upward import breaks it (a contract that
cannot fail checks nothing).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The command-line entry point, run by the interpreter of this test (the dev extra installs it).
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"]  # fmt: skip


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LINT, "--no-cache"],
        cwd=root,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_the_contracts_list_no_exception() -> None:
    """An exception would let an upward import through unseen; move the shared code down."""
    for contract in _contracts():
        assert "ignore_imports" not in contract, contract["name"]
        assert not contract.get("unmatched_ignore_imports_alerting"), contract["name"]


def test_the_layers_contract_is_kept() -> None:
    r = _lint(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"Contracts: {len(_contracts())} kept, 0 broken." in r.stdout, r.stdout


def _copy_sources(dst: Path) -> None:
    """The Python sources and pyproject.toml: what the import graph is built from."""
    shutil.copy(ROOT / "pyproject.toml", dst / "pyproject.toml")
    for pkg in ("exoctl", "firmware_bridge"):
        for src in (ROOT / pkg).rglob("*.py"):
            out = dst / src.relative_to(ROOT)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, out)


def test_an_upward_import_breaks_the_build(tmp_path: Path) -> None:
    """The configuration importing the service (a floor far above it) is refused, by name."""
    _copy_sources(tmp_path)
    paths = tmp_path / "exoctl" / "config" / "paths.py"
    paths.write_text(paths.read_text() + "\nfrom exoctl.service import daemon  # noqa\n")
    r = _lint(tmp_path)
    assert r.returncode != 0, r.stdout
    assert "BROKEN" in r.stdout and "exoctl.config.paths -> exoctl.service.daemon" in r.stdout, (
        r.stdout
    )


def test_the_wire_package_imports_nothing_of_exoctl(tmp_path: Path) -> None:
    """firmware_bridge is the bottom floor: it stands alone (its own top-level package)."""
    _copy_sources(tmp_path)
    link = tmp_path / "firmware_bridge" / "link_stats.py"
    link.write_text(link.read_text() + "\nimport exoctl.errors  # noqa\n")
    r = _lint(tmp_path)
    assert r.returncode != 0, r.stdout
    assert "firmware_bridge.link_stats -> exoctl.errors" in r.stdout, r.stdout


def test_the_bench_never_imports_training(tmp_path: Path) -> None:
    """Training stands on the bench (its protocol runs HIL replays); the bench needs only the
    offline floor below both, so a bench module importing training breaks the build."""
    _copy_sources(tmp_path)
    score = tmp_path / "exoctl" / "hil" / "replay_score.py"
    score.write_text(score.read_text() + "\nfrom exoctl.training import pipeline  # noqa\n")
    r = _lint(tmp_path)
    assert r.returncode != 0, r.stdout
    assert "exoctl.hil.replay_score -> exoctl.training.pipeline" in r.stdout, r.stdout


def test_the_offline_floor_imports_neither_the_bench_nor_training(tmp_path: Path) -> None:
    _copy_sources(tmp_path)
    tick_sets = tmp_path / "exoctl" / "offline" / "tick_sets.py"
    tick_sets.write_text(tick_sets.read_text() + "\nfrom exoctl.hil import drift  # noqa\n")
    r = _lint(tmp_path)
    assert r.returncode != 0, r.stdout
    assert "exoctl.offline.tick_sets -> exoctl.hil.drift" in r.stdout, r.stdout
