"""The wheel and the sdist, built once per test session from a copy of the package's own files.

Built with this venv's setuptools (the dev extra) through its PEP 517 hooks, without an
isolated build environment: an isolated one would fetch setuptools from the index on every
run. The copy keeps ``build/`` and ``*.egg-info`` out of the checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# What the packaging configuration (pyproject.toml) draws on: the rest of the checkout (tests,
# bench, firmware sources, docs) is not part of an install.
SOURCE_FILES = ("pyproject.toml", "README.md")
SOURCE_DIRS = ("exoctl", "firmware_bridge", "configs")


@dataclass(frozen=True)
class Dists:
    wheel: Path
    sdist: Path
    env: dict[str, str]
    """The environment to run a build or an install in: none of this checkout's settings."""


def clean_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV", "EXOCTL_CONFIG", "PYTHONHOME")
    }


def copy_source(dst: Path) -> Path:
    """The files a build of exoctl reads, copied into ``dst`` (created)."""
    dst.mkdir(parents=True)
    for name in SOURCE_FILES:
        shutil.copy2(REPO / name, dst / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in SOURCE_DIRS:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, dst / name, ignore=ignore)
    return dst


@pytest.fixture(scope="session")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    root = tmp_path_factory.mktemp("dists")
    src = copy_source(root / "src")
    out = root / "dist"
    env = clean_env()
    hooks = (
        "import sys, setuptools.build_meta as b; "
        "out = sys.argv[1]; b.build_sdist(out); b.build_wheel(out)"
    )
    p = subprocess.run(
        [sys.executable, "-c", hooks, str(out)],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, f"build: exit {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    (wheel,) = out.glob("exoctl-*.whl")
    (sdist,) = out.glob("exoctl-*.tar.gz")
    return Dists(wheel, sdist, env)
