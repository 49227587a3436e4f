"""Today's code beside the current one, in the same benchmark run: a baseline tree from git.

Why: a figure such as "whole tick p50 40 us" means little on a shared machine; the same
measurement of the code as it was before the work on the tick's cost, taken in the same run
on the same machine state, gives a ratio that does mean something. The baseline is the last
commit of the main line before that work began (2026-12-01), found in the checkout's history by
its subject (``BASELINE_SUBJECT``; ``BASELINE`` is its id, or empty without git). Its
``exoctl``, ``firmware_bridge`` and ``configs`` are extracted with ``git archive`` into a temporary directory once per process; a measurement
then runs in a child process whose ``PYTHONPATH`` puts that tree first (the benchmark code
itself, ``bench``, is always the current one, so both trees are measured the same way).

Without git or the commit (a source tarball), the baseline is unavailable and the benchmarks
say so instead of inventing a figure.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import REPO

BASELINE_SUBJECT = "Layout: the linear model's default path is exoctl/models, as before the move"
"""The subject of the main line's last commit before the work on the tick's cost."""


def _find_baseline() -> str:
    """The id of the commit named by ``BASELINE_SUBJECT`` (made on 2026-12-01, so a later
    commit that quotes the subject is not taken for it), or "" without git or that commit."""
    try:
        return subprocess.run(
            ["git", "log", "-1", "--format=%h", "--until=2026-12-02", "--fixed-strings",
             f"--grep={BASELINE_SUBJECT}", "HEAD"],
            cwd=REPO, capture_output=True, text=True, check=True, timeout=60,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return ""


BASELINE = _find_baseline()
_PARTS = ("exoctl", "firmware_bridge", "configs")
_trees: dict[bool, tuple[Path | None, str | None]] = {}


def baseline_tree(with_bench: bool = False) -> tuple[Path | None, str | None]:
    """(the extracted baseline tree, None) or (None, why it is unavailable).

    ``with_bench``: the tree carries its own ``bench`` package too, for a benchmark whose code
    calls the controller through an interface that changed since (``bench_loop``: the baseline
    is then measured by the baseline's own ``run_variant``). Without it, the current ``bench``
    measures both trees the same way (``bench_tick``)."""
    if with_bench in _trees:
        return _trees[with_bench]
    tmp = Path(tempfile.mkdtemp(prefix="exoctl-baseline-"))
    atexit.register(shutil.rmtree, tmp, True)
    parts = (*_PARTS, "bench") if with_bench else _PARTS
    try:
        if not BASELINE:
            raise OSError(f"no commit {BASELINE_SUBJECT!r} in this checkout's history")
        arch = subprocess.run(
            ["git", "archive", "--format=tar", BASELINE, *parts],
            cwd=REPO, capture_output=True, check=True, timeout=60,
        )  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(tmp)], input=arch.stdout, check=True, timeout=60)
        _trees[with_bench] = (tmp, None)
    except (OSError, subprocess.SubprocessError) as e:
        err = getattr(e, "stderr", b"") or b""
        why = f"baseline {BASELINE} unavailable: {e} {err.decode(errors='replace')[:200]}"
        _trees[with_bench] = (None, why)
    return _trees[with_bench]


_ref_trees: dict[str, tuple[Path | None, str | None, str | None]] = {}


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=REPO, capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()


def merge_base(with_ref: str = "main") -> str | None:
    """The commit where this checkout left ``with_ref``: today's code, as far as this branch
    is concerned (None without git or that ref)."""
    try:
        return _git("merge-base", "HEAD", with_ref)[:12] or None
    except (OSError, subprocess.SubprocessError):
        return None


def ref_tree(ref: str) -> tuple[Path | None, str | None, str | None]:
    """(extracted tree, its commit, None) or (None, None, why): the code of git ``ref`` (a
    branch, tag or commit) for a benchmark to run beside this checkout in the same run.

    ``git archive`` into a temporary directory (removed at exit) rather than ``git worktree
    add``: nothing is registered in the repository, which other checkouts share. Only the
    product's packages are extracted; the measuring code, ``bench``, is this checkout's, so
    both trees are measured the same way."""
    if ref in _ref_trees:
        return _ref_trees[ref]
    try:
        commit = _git("rev-parse", "--verify", f"{ref}^{{commit}}")[:12]
        names = set(_git("ls-tree", "--name-only", commit).split())
        parts = [x for x in _PARTS if x in names]
        tmp = Path(tempfile.mkdtemp(prefix="exoctl-ref-"))
        atexit.register(shutil.rmtree, tmp, True)
        arch = subprocess.run(["git", "archive", "--format=tar", commit, *parts], cwd=REPO,
                              capture_output=True, check=True, timeout=60)  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(tmp)], input=arch.stdout, check=True, timeout=60)
        _ref_trees[ref] = (tmp, commit, None)
    except (OSError, subprocess.SubprocessError) as e:
        err = getattr(e, "stderr", b"") or b""
        err = err.decode(errors="replace") if isinstance(err, bytes) else err
        _ref_trees[ref] = (None, None, f"git {ref} unavailable: {e} {err[:200]}".strip())
    return _ref_trees[ref]


def tree_env(tree: Path | None) -> dict[str, str]:
    """The environment of a child that imports ``exoctl`` from ``tree`` (None: the current)."""
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    path = [str(REPO)] if tree is None else [str(tree), str(REPO)]
    env["PYTHONPATH"] = os.pathsep.join(path + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def call_in_tree(tree: Path | None, target: str, kwargs: dict, timeout_s: float) -> Any:
    """Run ``module:function(**kwargs)`` in a child process importing ``exoctl`` from ``tree``;
    its JSON result. The child's stderr passes through (progress); a failure raises with the
    tail of it."""
    code = (
        "import importlib, json, sys\n"
        "mod, fn = sys.argv[1].split(':')\n"
        "res = getattr(importlib.import_module(mod), fn)(**json.loads(sys.argv[2]))\n"
        "sys.stdout.write('\\n@@RESULT@@' + json.dumps(res, default=str))\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", code, target, json.dumps(kwargs)],
        env=tree_env(tree), cwd=tree or REPO, capture_output=True, text=True, timeout=timeout_s,
    )  # fmt: skip
    if p.returncode != 0 or "@@RESULT@@" not in p.stdout:
        tail = " | ".join((p.stderr or "").strip().splitlines()[-4:])
        raise RuntimeError(f"{target} in {tree or 'the current tree'} failed: {tail}")
    return json.loads(p.stdout.rsplit("@@RESULT@@", 1)[1])


def tree_label(tree: Path | None) -> str:
    return f"today's code (git {BASELINE})" if tree is not None else "this branch"
