"""No module of the product or the bench is over 600 lines.

A module that long holds more than one concept, and its readers cannot find the one they
want: split it along its real seams (what each part does), re-exporting from the old module
the names its callers use. Tests and generated data are not counted; hidden directories
(virtual environments, caches) are skipped.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("exoctl", "firmware_bridge", "bench")
MAX_LINES = 600


def modules(root: Path = ROOT) -> list[Path]:
    """Every Python module of the packages, outside hidden directories and caches."""
    out = []
    for package in PACKAGES:
        for py in sorted((root / package).rglob("*.py")):
            parts = py.relative_to(root).parts
            if any(p.startswith(".") or p == "__pycache__" for p in parts):
                continue
            out.append(py)
    return out


def too_long(paths: list[Path], limit: int = MAX_LINES, root: Path = ROOT) -> list[str]:
    """``path: N lines`` for each module over ``limit`` lines, longest first."""
    sizes = [(len(p.read_text(encoding="utf-8").splitlines()), p) for p in paths]
    return [
        f"{p.relative_to(root).as_posix()}: {n} lines"
        for n, p in sorted(sizes, key=lambda s: -s[0])
        if n > limit
    ]


def test_no_module_is_over_600_lines() -> None:
    found = modules()
    assert len(found) > 50, f"found only {len(found)} modules: is ROOT {ROOT} right?"
    offenders = too_long(found)
    assert offenders == [], (
        f"modules over {MAX_LINES} lines (split each along its seams):\n" + "\n".join(offenders)
    )


def test_the_check_catches_a_long_module(tmp_path: Path) -> None:
    pkg = tmp_path / "exoctl"
    (pkg / ".venv").mkdir(parents=True)
    (pkg / "short.py").write_text("x = 1\n" * MAX_LINES)
    (pkg / "long.py").write_text("x = 1\n" * (MAX_LINES + 1))
    (pkg / ".venv" / "vendored.py").write_text("x = 1\n" * 5000)
    found = modules(tmp_path)
    assert sorted(p.name for p in found) == ["long.py", "short.py"]
    assert too_long(found, root=tmp_path) == [f"exoctl/long.py: {MAX_LINES + 1} lines"]
