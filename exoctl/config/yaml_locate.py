"""Where in a YAML file the parser or the decoder stopped, for a refusal a person can act on.

libyaml says the line and column of a syntax error or a bad byte, not the key it was in; these
helpers find that key (the collections still open when the event parser stops, or the deepest
key whose value spans the line) and word the error.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from exoctl.config.yaml_core_schema import _BaseLoader, _Loader
from exoctl.config.yaml_refusal import _short


def _line_at_offset(data: bytes, offset: int) -> tuple[int, int]:
    line_start = data.rfind(b"\n", 0, offset) + 1
    return data.count(b"\n", 0, offset) + 1, offset - line_start + 1


def _path_at_error(text: str) -> tuple[Any, ...] | None:
    """The key path open where the parser stops (for syntax errors: only then is this run).

    libyaml's composer does not say where in the document it failed; its event parser, run
    up to the same error, does: the path of the collections still open.
    """
    stack: list[list[Any]] = []  # per open collection: [is_mapping, items seen, current key]
    try:
        for ev in yaml.parse(text, Loader=_BaseLoader):
            if isinstance(ev, yaml.CollectionEndEvent):
                stack.pop()
            elif isinstance(ev, yaml.NodeEvent):
                if stack:
                    top = stack[-1]
                    if top[0] and top[1] % 2 == 0:
                        top[2] = ev.value if isinstance(ev, yaml.ScalarEvent) else "(a key)"
                    top[1] += 1
                if isinstance(ev, yaml.CollectionStartEvent):
                    stack.append([isinstance(ev, yaml.MappingStartEvent), 0, None])
    except yaml.YAMLError:
        return tuple(top[2] if top[0] else max(top[1] - 1, 0) for top in stack)
    return None


def _key_at_line(text: str, line: int) -> tuple[Any, ...] | None:
    """The deepest key whose value spans ``line`` (for errors found before parsing)."""
    try:
        loader = _Loader(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.YAMLError:
        return None
    if root is None:
        return None
    best: tuple[Any, ...] | None = None
    stack: list[tuple[Node, tuple[Any, ...]]] = [(root, ())]
    seen: set[int] = set()
    while stack:
        node, loc = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.start_mark.line + 1 <= line <= node.end_mark.line + 1 and (
            best is None or len(loc) >= len(best)
        ):
            best = loc
        if isinstance(node, SequenceNode):
            stack.extend((item, (*loc, i)) for i, item in enumerate(node.value))
        elif isinstance(node, MappingNode):
            for k, v in node.value:
                name = k.value if isinstance(k, ScalarNode) else "(a key)"
                if k.start_mark.line + 1 == line:
                    return (*loc, name)
                stack.append((v, (*loc, name)))
    return best


def _reader_error(refuse: Any, text: str, data: bytes, e: yaml.YAMLError) -> Exception:
    pos = getattr(e, "position", None)
    char = getattr(e, "character", None)
    if pos is None:  # pragma: no cover - reader errors carry a position
        return refuse(None, None, f"not valid YAML: {_short(str(e), 120)}")
    # libyaml counts bytes of the UTF-8 text, PyYAML characters
    offset = pos if yaml.__with_libyaml__ else len(text[:pos].encode())
    line, col = _line_at_offset(data, min(offset, len(data)))
    code = ord(char) if isinstance(char, str) and len(char) == 1 else char
    shown = f"U+{code:04X}" if isinstance(code, int) else repr(code)
    return refuse(
        line,
        _key_at_line(_UNPRINTABLE.sub(" ", text), line),
        f"character {shown} at column {col} is not allowed in YAML",
    )


# What libyaml's and PyYAML's readers refuse (YAML 1.1 printable set), blanked to find the key.
_UNPRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)
