"""The one configuration lookup every command uses (exoctl.config.lookup)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from exoctl.config import lookup as L
from exoctl.config.schema import DEFAULT_CONFIG, MODELS_DIR, load_config


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(L.ENV_VAR, raising=False)
    monkeypatch.setattr(L, "SYSTEM_CONFIG", tmp_path / "etc" / "exoctl.yaml")
    choice = L.find_config(None)
    assert choice.path == DEFAULT_CONFIG and choice.packaged
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "exoctl.yaml").write_text("x: 1\n")
    assert L.find_config(None).path == tmp_path / "etc" / "exoctl.yaml"
    assert not L.find_config(None).packaged
    monkeypatch.setenv(L.ENV_VAR, str(tmp_path / "env.yaml"))
    assert L.find_config(None) == L.ConfigChoice(tmp_path / "env.yaml", "$EXOCTL_CONFIG")
    assert L.config_path(argparse.Namespace(config=tmp_path / "cli.yaml")) == tmp_path / "cli.yaml"
    assert L.config_path(argparse.Namespace()) == tmp_path / "env.yaml"  # no --config at all


def test_packaged_default_names_packaged_files() -> None:
    """The default configuration is the checkout's configs/ (a wheel carries it inside the
    package: tests/packaging) and names the models shipped inside the package."""
    cfg = load_config(DEFAULT_CONFIG)
    pkg = Path(L.__file__).resolve().parents[1]
    assert pkg.parent / "configs" / "default.yaml" == DEFAULT_CONFIG
    assert cfg.model.path.is_file() and cfg.model.path.is_relative_to(pkg)
    assert cfg.estimator.calibration.is_file() and cfg.estimator.calibration.is_relative_to(pkg)


def test_relative_paths_resolve_against_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Never against the working directory: the same file means the same model anywhere."""
    text = DEFAULT_CONFIG.read_text()
    models = MODELS_DIR
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "m.onnx").write_bytes((models / "default.onnx").read_bytes())
    text = text.replace("exoctl:models/network.onnx", "m.onnx").replace(
        "data_dir: /var/lib/exoctl", "data_dir: rec"
    )
    (tmp_path / "conf" / "c.yaml").write_text(text)
    monkeypatch.chdir(tmp_path)
    cfg = load_config(Path("conf/c.yaml"))
    assert cfg.model.path == tmp_path / "conf" / "m.onnx"
    assert cfg.service.data_dir == tmp_path / "conf" / "rec"
    assert cfg.service.socket_path == Path("/run/exoctl/control.sock")  # absolute: as written
