"""The wheel, installed in a fresh venv, runs from any directory.

Installs the wheel built from the package's own files (tests/packaging/conftest.py) into a
new venv (no system site packages: its dependencies come from pip's cache or the package index,
as for a user), and
runs the installed ``exoctl`` from an unrelated directory: the HIL bench with the packaged
configuration, models and calibration; a packaged scenario; the /etc/exoctl step of
docs/deploy.md (``exoctl config init``, then the model and calibration copied beside the
file and named relative to it); and the training command's advice without PyTorch.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import REPO, Dists

pytestmark = [pytest.mark.wheel, pytest.mark.timeout(2400)]


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 600):
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{cmd}: exit {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


@pytest.fixture(scope="module")
def installed(
    tmp_path_factory: pytest.TempPathFactory, dists: Dists
) -> tuple[Path, Path, dict[str, str]]:
    """(venv bin dir, an unrelated working directory, the environment to run in)."""
    root = tmp_path_factory.mktemp("wheel")
    env = dists.env
    wheel = dists.wheel
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], root, env)
    bin_dir = venv / "bin"
    _run([str(bin_dir / "python"), "-m", "pip", "install", "-q", str(wheel)], root, env, 1200)
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    return bin_dir, elsewhere, env


def test_the_venv_is_the_wheels_own(installed) -> None:
    bin_dir, cwd, env = installed
    p = _run([str(bin_dir / "python"), "-c",
              "import exoctl, sys; print(exoctl.__file__); print(sys.flags.no_site, sys.path)"],
             cwd, env)  # fmt: skip
    where = Path(p.stdout.splitlines()[0])
    assert "site-packages" in where.parts and not where.is_relative_to(REPO)
    cfg = (bin_dir.parent / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in cfg
    listed = _run([str(bin_dir / "python"), "-m", "pip", "list", "--format=json"], cwd, env)
    names = {d["name"].lower() for d in json.loads(listed.stdout)}
    assert {"numpy", "onnxruntime", "pylsl", "pydantic"} <= names
    assert "torch" not in names and "pytest" not in names  # only what exoctl itself needs


def test_hil_runs_from_any_directory(installed) -> None:
    bin_dir, cwd, env = installed
    p = _run([str(bin_dir / "exoctl"), "hil", "--duration", "2", "--json"], cwd, env)
    doc = json.loads(p.stdout)
    assert doc["duration_s"] == 2.0 and doc["ticks"] > 0 and doc["commands_sent"] > 0
    assert set(doc["r2"]) == {"hip_l", "hip_r", "knee_l", "knee_r"}
    show = json.loads(_run([str(bin_dir / "exoctl"), "config", "show", "--json"], cwd, env).stdout)
    assert show["chosen_by"] == "packaged default"
    # configs/ of the checkout, carried inside the package (pyproject.toml's package-dir)
    assert Path(show["path"]).parts[-4:] == ("site-packages", "exoctl", "configs", "default.yaml")
    assert "site-packages" in show["model"]["path"] and Path(show["model"]["path"]).is_file()


def test_every_packaged_scenario_is_found_and_one_runs(installed) -> None:
    bin_dir, cwd, env = installed
    p = subprocess.run([str(bin_dir / "exoctl"), "hil", "--scenario", "nonesuch"],
                       cwd=cwd, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert p.returncode != 0
    known = p.stderr.split("known scenarios: ")[1].split()[0:]
    shipped = sorted(f.stem for f in (REPO / "configs" / "scenarios").glob("*.yaml"))
    assert [k.rstrip(",") for k in known] == shipped
    doc = json.loads(
        _run([str(bin_dir / "exoctl"), "hil", "--scenario", "estop", "--json"], cwd, env).stdout
    )
    assert doc["scenario"]["name"] == "estop" and doc["events"][0]["detected_as"] == "estop"


def test_the_etc_exoctl_step_of_the_deploy_guide(installed, tmp_path: Path) -> None:
    """docs/deploy.md step 3, with a temporary directory standing for /etc/exoctl."""
    bin_dir, cwd, env = installed
    etc = tmp_path / "etc" / "exoctl"
    conf = etc / "exoctl.yaml"
    _run([str(bin_dir / "exoctl"), "config", "init", "--out", str(conf)], cwd, env)
    first = yaml.safe_load(conf.read_text())
    assert Path(first["model"]["path"]).is_absolute() and Path(first["model"]["path"]).is_file()
    again = subprocess.run([str(bin_dir / "exoctl"), "config", "init", "--out", str(conf)],
                           cwd=cwd, env=env, capture_output=True, text=True)  # fmt: skip
    assert again.returncode == 1 and "not overwritten" in again.stderr
    # "sudo cp my_model.onnx my_calibration.yaml /etc/exoctl/  # paths are relative to the yaml"
    shutil.copy2(first["model"]["path"], etc / "my_model.onnx")
    shutil.copy2(first["estimator"]["calibration"], etc / "my_calibration.yaml")
    text = conf.read_text()
    text = text.replace(first["model"]["path"], "my_model.onnx")
    text = text.replace(first["estimator"]["calibration"], "my_calibration.yaml")
    conf.write_text(text)
    run_env = {**env, "EXOCTL_CONFIG": str(conf)}
    show = json.loads(
        _run([str(bin_dir / "exoctl"), "config", "show", "--json"], cwd, run_env).stdout
    )
    assert show["chosen_by"] == "$EXOCTL_CONFIG"
    assert show["model"]["path"] == str(etc / "my_model.onnx")
    assert show["estimator"]["calibration"] == str(etc / "my_calibration.yaml")
    doc = json.loads(
        _run([str(bin_dir / "exoctl"), "hil", "--duration", "2", "--json"], cwd, run_env).stdout
    )
    assert doc["ticks"] > 0


def test_train_without_pytorch_gives_the_cpu_install(installed) -> None:
    bin_dir, cwd, env = installed
    p = subprocess.run([str(bin_dir / "exoctl"), "train", "--data", "x.yaml", "--out", "m.onnx"],
                       cwd=cwd, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert p.returncode == 2
    assert (
        "https://download.pytorch.org/whl/cpu" in p.stderr and "-e ." not in p.stderr.split("(")[0]
    )
