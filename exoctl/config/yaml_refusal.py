"""The YAML reader's bounds and its located refusal (see :mod:`exoctl.config.yamlfile`).

Every stage of the reader (the loader's constructors, the graph checks, the error locators)
refuses through :class:`_Refusal`, a line and a key path with the problem in words, which
:func:`~exoctl.config.yamlfile.read_yaml` turns into the caller's error type. The limits are
here because each stage checks its own.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import Node

MAX_BYTES = 1 << 20
"""Largest file read (1 MiB): exoctl's YAML files are a few KB; a dataset description with a
thousand trials is ~0.5 MB."""
MAX_DEPTH = 32
"""Deepest nesting of mappings and sequences (exoctl's own files nest 4 deep)."""
MAX_NODES = 100_000
"""Most values a document may hold once every alias is expanded (default.yaml: ~200)."""
MAX_INT_BITS = 64
"""Widest integer (a 5,000-digit integer used to crash the reader with ValueError)."""

_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Refusal(Exception):
    """Internal: a located refusal, turned into the caller's error by read_yaml."""

    def __init__(self, line: int | None, loc: tuple[Any, ...] | None, problem: str) -> None:
        super().__init__(problem)
        self.line, self.loc, self.problem = line, loc, problem


def _tag_of(node: Node) -> str:
    tag = str(node.tag)
    return f" as !!{tag.rsplit(':', 1)[-1]}" if tag.startswith("tag:yaml.org,2002:") else ""


def _line(node_or_mark: Any) -> int | None:
    mark = getattr(node_or_mark, "start_mark", node_or_mark)
    return None if mark is None else mark.line + 1


def _short(text: str, limit: int = 60) -> str:
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _yaml_problem(e: yaml.MarkedYAMLError) -> str:
    problem = _short(e.problem or "not valid YAML", 120)
    col = e.problem_mark.column + 1 if e.problem_mark is not None else None
    text = f"not valid YAML: {problem}" + (f" (column {col})" if col else "")
    if e.context:
        ctx_line = _line(e.context_mark)
        text += f", {_short(e.context, 80)}" + (
            f" that starts on line {ctx_line}" if ctx_line else ""
        )
    return text
