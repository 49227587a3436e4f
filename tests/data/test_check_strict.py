"""`exoctl data check` and `exoctl calibrate` on hostile recordings, through the real CLI.

Before: EMG holding ``inf``, ``1e308`` or a 5,000-digit cell passed ``data check`` ("OK, 0
warnings") with numpy RuntimeWarnings on stderr, and ``calibrate`` then failed naming no file
or row; a .sto of one 160 MB data row was read whole (4 GB) before its error; errors went to
stdout and there was no ``--json``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from exoctl.data.export import export_recording
from exoctl.data.importers import MAX_LINE_CHARS, ImportErrorWithPath, read_sto
from exoctl.errors import DataError

ROOT = Path(__file__).resolve().parents[2]


def exoctl(*argv: str, limit_as: int | None = None) -> subprocess.CompletedProcess[str]:
    """The real command line, in a child (stdout and stderr apart; optional address-space
    limit, as ``ulimit -v``)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "default"}
    pre = None
    if limit_as is not None:
        import resource

        def pre() -> None:
            resource.setrlimit(resource.RLIMIT_AS, (limit_as, limit_as))

    return subprocess.run(
        [sys.executable, "-m", "exoctl.cli", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        preexec_fn=pre,
    )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, recording_factory) -> Path:
    d = tmp_path_factory.mktemp("ds")
    return export_recording(recording_factory(2.0), d, fmt="sto", trial="w", body_mass_kg=70.0)


def _with_cell(dataset: Path, tmp_path: Path, row: int, col: int, text: str) -> Path:
    """A copy of the dataset whose EMG file has ``text`` in data row ``row``, column ``col``
    (0 = time); returns the description. The file line of that row is row + 7."""
    for f in dataset.parent.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    emg = tmp_path / "w_emg.sto"
    lines = emg.read_text().splitlines()
    label = lines.index(next(ln for ln in lines if ln.startswith("time\t")))
    cells = lines[label + row].split("\t")
    cells[col] = text
    lines[label + row] = "\t".join(cells)
    emg.write_text("\n".join(lines) + "\n")
    return tmp_path / dataset.name


@pytest.mark.parametrize(
    ("cell", "what"),
    [("inf", "not finite"), ("-1e999", "not finite"), ("9" * 5000, "not finite"),
     ("1e308", "out of range")],
)  # fmt: skip
def test_data_check_names_file_row_and_column_of_a_bad_value(dataset, tmp_path, cell, what):
    desc = _with_cell(dataset, tmp_path, 25, 3, cell)
    r = exoctl("data", "check", str(desc))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Warning" not in r.stderr and "Traceback" not in r.stderr, r.stderr
    emg = tmp_path / "w_emg.sto"
    assert re.search(rf"{re.escape(str(emg))}:32: data row 25, column 'EMG03': .* {what}", r.stderr)
    assert "OK" not in r.stdout and "ERROR" not in r.stdout and str(emg) not in r.stdout
    for line in r.stderr.splitlines():
        assert line.startswith("exoctl: "), r.stderr


def test_calibrate_names_the_file_and_row_of_an_infinite_value(dataset, tmp_path):
    desc = _with_cell(dataset, tmp_path, 40, 1, "inf")
    r = exoctl("calibrate", "--data", str(desc), "--out", str(tmp_path / "cal.yaml"))
    assert r.returncode == 1, r.stdout + r.stderr
    assert re.search(r"w_emg\.sto:47: data row 40, column 'EMG01'", r.stderr), r.stderr
    assert "Warning" not in r.stderr and not (tmp_path / "cal.yaml").exists()


def test_data_check_json_on_success_and_on_failure(dataset, tmp_path):
    r = exoctl("data", "check", "--json", str(dataset))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["ok"] is True and doc["errors"] == []
    (trial,) = doc["trials"]
    assert trial["name"] == "w" and trial["fs_hz"] == 2000
    assert {m["name"] for m in trial["muscles"]} >= {"rectus_femoris_l"}

    bad = _with_cell(dataset, tmp_path, 25, 3, "inf")
    r = exoctl("data", "check", "--json", str(bad))
    assert r.returncode == 1
    doc = json.loads(r.stdout)  # one strict JSON document
    assert doc["ok"] is False and doc["exit_code"] == 1
    assert "data row 25, column 'EMG03'" in doc["error"]
    assert r.stderr.startswith("exoctl: ")


def test_a_description_that_cannot_be_read_is_reported_on_stderr_and_as_json(tmp_path):
    p = tmp_path / "d.yaml"
    p.write_text("format: exoctl-dataset/1\ntrials: yes\n")
    r = exoctl("data", "check", "--json", str(p))
    assert r.returncode == 1 and json.loads(r.stdout)["ok"] is False
    assert "d.yaml:2: trials" in r.stderr


def test_an_overlong_line_is_refused_by_its_line_number(tmp_path):
    p = tmp_path / "long.sto"
    with p.open("w") as f:
        f.write("x\nversion=1\nendheader\ntime\tEMG01\n0\t1\n")
        f.write("0.1\t" + "1" * (MAX_LINE_CHARS + 10) + "\n")
    with pytest.raises(ImportErrorWithPath, match=rf"^{re.escape(str(p))}:6: line longer than"):
        read_sto(p)


def test_one_huge_row_fails_in_bounded_memory_with_one_clean_error(dataset, tmp_path):
    """A 64 MB data row of 16 million cells under a 1.5 GB address-space limit: one line,
    exit 1, no traceback and no MemoryError (read whole and split, it took ~26 bytes of memory
    per byte of the file)."""
    for f in dataset.parent.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    emg = tmp_path / "w_emg.sto"
    head = emg.read_text().split("\n")[:8]
    with emg.open("w") as f:
        f.write("\n".join(head) + "\n")
        f.write("0.001" + "\t1.5" * (16 << 20) + "\n")
    r = exoctl("data", "check", str(tmp_path / dataset.name), limit_as=1_500_000_000)
    assert r.returncode == 1, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and "MemoryError" not in r.stderr, r.stderr[-2000:]
    assert re.search(r"w_emg\.sto:9: line longer than", r.stderr), r.stderr[-2000:]


def test_the_error_path_imports_nothing_heavy(dataset, tmp_path):
    """Under a memory limit, importing onnxruntime to report an error was a second failure."""
    desc = _with_cell(dataset, tmp_path, 25, 3, "inf")
    code = (
        "import sys\nfrom exoctl.cli import main\n"
        f"rc = main(['data', 'check', {str(desc)!r}])\n"
        "heavy = [m for m in ('onnxruntime', 'torch', 'pylsl') if m in sys.modules]\n"
        "print(rc, heavy)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert r.stdout.strip().splitlines()[-1] == "1 []", r.stdout + r.stderr


def test_an_infinite_sample_in_an_xdf_recording_is_named(recording_factory, tmp_path):
    import numpy as np

    from exoctl.data.dataset import load_dataset

    rec = recording_factory(2.0)
    emg = rec.emg.copy()
    emg[10, 3] = np.inf
    bad = type(rec)(**{**rec.__dict__, "emg": emg})
    desc = export_recording(bad, tmp_path, fmt="xdf", trial="w", body_mass_kg=70.0)
    with pytest.raises(
        DataError, match=r"\.xdf: sample 11, column '[^']+': value inf is not finite"
    ):
        load_dataset(desc).load_trial("w")
