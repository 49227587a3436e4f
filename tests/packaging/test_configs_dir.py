"""configs/ is one folder at the top of the checkout, found by every kind of install.

pyproject.toml maps the package ``exoctl.configs`` onto it, so a wheel carries it inside the
package (tests/packaging/test_wheel.py runs a fresh venv's ``exoctl`` on it); an editable
install and a plain checkout (``PYTHONPATH``) read the folder itself. Because the package list
is written out (a mapped package is not found by setuptools' discovery), a package added under
exoctl/ or firmware_bridge/ must be added there: the first test names the one left out.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import yaml
from setuptools import find_namespace_packages

from exoctl.config.paths import CONFIG_DIR, DEFAULT_CONFIG, resolve_path

from .conftest import REPO, Dists, copy_source


def test_every_package_is_listed_for_the_build() -> None:
    listed = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = set(find_namespace_packages(str(REPO), include=["exoctl*", "firmware_bridge*"]))
    found |= {
        "exoctl.configs" + p.removeprefix("configs")
        for p in find_namespace_packages(str(REPO), include=["configs*"])
    }
    found |= {"exoctl.configs"}
    assert found - listed == set(), (
        f"add to [tool.setuptools] packages in pyproject.toml: {sorted(found - listed)}"
    )
    assert listed - found == set(), (
        f"listed in pyproject.toml but not in the checkout: {sorted(listed - found)}"
    )


def test_a_checkout_reads_the_top_level_folder() -> None:
    assert CONFIG_DIR == REPO / "configs" and DEFAULT_CONFIG.is_file()
    assert not (REPO / "exoctl" / "configs").exists(), "one copy: configs/ only"
    assert Path(resolve_path("exoctl:models/network.onnx", CONFIG_DIR)).is_file()


def test_the_wheel_carries_configs_inside_the_package(dists: Dists) -> None:
    with zipfile.ZipFile(dists.wheel) as z:
        names = set(z.namelist())
    shipped = {
        f"exoctl/{p.relative_to(REPO).as_posix()}" for p in (REPO / "configs").rglob("*.yaml")
    }
    assert shipped and shipped <= names, sorted(shipped - names)
    assert "exoctl/models/network.onnx" in names and "exoctl/models/sim_calibration.yaml" in names


def test_an_editable_install_finds_the_top_level_folder(tmp_path: Path) -> None:
    """``pip install -e`` of a copy, in a fresh venv: the editable wheel is built with this
    venv's setuptools (PEP 660 hook), installed without dependencies (the path lookup is
    import-light), then asked from an unrelated directory where its configuration is."""
    src = copy_source(tmp_path / "src")
    out = tmp_path / "dist"
    hooks = "import sys, setuptools.build_meta as b; out = sys.argv[1]; b.build_editable(out)"
    env = {"PATH": "/usr/bin:/bin"}
    subprocess.run(
        [sys.executable, "-c", hooks, str(out)],
        cwd=src,
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = out.glob("exoctl-*.whl")
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300
    )
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
                    "-q", "--no-deps", str(wheel)], check=True, capture_output=True, timeout=600)  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = (
        "from exoctl.config.paths import DEFAULT_CONFIG, resolve_path; import exoctl; "
        "print(exoctl.__file__); print(DEFAULT_CONFIG); "
        "print(resolve_path('exoctl:models/network.onnx', DEFAULT_CONFIG.parent))"
    )
    p = subprocess.run([str(venv / "bin" / "python"), "-c", probe], cwd=elsewhere, env=env,
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert p.returncode == 0, p.stderr
    module, config, model = (Path(line) for line in p.stdout.splitlines())
    assert module == src / "exoctl" / "__init__.py"
    assert config == src / "configs" / "default.yaml" and config.is_file()
    assert model == src / "exoctl" / "models" / "network.onnx" and model.is_file()


def test_config_init_copies_the_default_with_the_shipped_files_found(tmp_path: Path) -> None:
    """The copy names the shipped model and calibration by absolute path (the default names
    them inside the package, ``exoctl:models/...``), so it works wherever it is put."""
    out = tmp_path / "etc" / "exoctl.yaml"
    p = subprocess.run([sys.executable, "-m", "exoctl.cli", "config", "init", "--out", str(out)],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert p.returncode == 0, p.stderr
    doc = yaml.safe_load(out.read_text())
    for path in (doc["model"]["path"], doc["estimator"]["calibration"]):
        assert Path(path).is_absolute() and Path(path).is_file(), path
        assert Path(path).parent == REPO / "exoctl" / "models"
