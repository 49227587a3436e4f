"""Scripts written against the old layout, where recordings were modules of
``exoctl.service``: importing one by its old name says which module to import instead."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from exoctl.service import MOVED_TO_RECORDINGS

OLD_NAMES = [f"exoctl.service.{m}" for m in MOVED_TO_RECORDINGS] + ["exoctl.service.report.page"]


@pytest.mark.parametrize("old", OLD_NAMES)
def test_an_old_module_name_says_where_the_module_is_now(old: str) -> None:
    moved = old.split(".")[2]
    new = f"exoctl.recordings.{moved}"
    importlib.import_module(new)  # it is there, under the same name
    with pytest.raises(ModuleNotFoundError, match=f"import {new} instead"):
        importlib.import_module(old)


def _python(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60)


def test_the_message_comes_in_a_fresh_interpreter_and_with_python_m() -> None:
    """The first import a script makes may be the old name; ``python -m`` reads it too."""
    imported = _python("-c", "from exoctl.service.store import connect")
    assert imported.returncode == 1
    assert "import exoctl.recordings.store instead" in imported.stderr
    ran = _python("-m", "exoctl.service.export")
    assert ran.returncode == 1
    assert "import exoctl.recordings.export instead" in ran.stderr


def test_other_missing_modules_are_still_plainly_missing() -> None:
    """The message is for the moved modules only; the daemon's own modules import as ever."""
    importlib.import_module("exoctl.service.daemon")
    with pytest.raises(ModuleNotFoundError, match="No module named 'exoctl.service.nothing'"):
        importlib.import_module("exoctl.service.nothing")
    with pytest.raises(ModuleNotFoundError, match="No module named 'exoctl.service_store'"):
        importlib.import_module("exoctl.service_store")
