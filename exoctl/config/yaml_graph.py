"""Checks on the YAML node graph before anything is constructed: size, depth, keys.

The graph is walked once per distinct node (an alias is one node however often it is used),
so a refusal costs time linear in the file's size whatever the aliases would expand to:
alias bombs, self-containing aliases, nesting deeper than the bound, keys written twice in one
mapping (a ``<<`` merge is not a repetition), keys that are not plain values.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from exoctl.config.yaml_core_schema import _Loader
from exoctl.config.yaml_refusal import _MERGE_TAG, MAX_DEPTH, MAX_NODES, _line, _Refusal


def _first_paths(root: Node) -> dict[int, tuple[Any, ...]]:
    """Each distinct node's first key path (breadth first; one visit per node, aliases too)."""
    paths: dict[int, tuple[Any, ...]] = {id(root): ()}
    queue = [root]
    for node in queue:  # the list grows while iterated: a breadth-first queue
        loc = paths[id(node)]
        for key, child in _labelled_children(node):
            if id(child) not in paths:
                paths[id(child)] = (*loc, key)
                queue.append(child)
    return paths


def _labelled_children(node: Node) -> list[tuple[Any, Node]]:
    if isinstance(node, SequenceNode):
        return list(enumerate(node.value))
    if isinstance(node, MappingNode):
        out: list[tuple[Any, Node]] = []
        for k, v in node.value:
            name = k.value if isinstance(k, ScalarNode) else "(a key)"
            out += [(name, k), (name, v)]
        return out
    return []


def _check_graph(root: Node, node_path: dict[int, tuple[Any, ...]]) -> None:
    """Refuse a node graph that is too big once aliases are expanded, too deep, or cyclic.

    Post-order over distinct nodes, memoised by identity: the values each node holds with
    every alias expanded, and its height. A node met again while it is being counted is a
    recursive alias. The cost is one visit per distinct node, whatever the expansion.
    """
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    active: set[int] = set()  # the current path from the root (ancestors of the top)
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            active.discard(key)
            kids = _children(node)
            n = 1 + sum(size[id(c)] for c in kids)
            h = 1 + max((height[id(c)] for c in kids), default=0)
            if n > MAX_NODES:
                raise _Refusal(
                    _line(node),
                    node_path.get(key),
                    f"aliases expand to more than {MAX_NODES} values (an alias bomb?)",
                )
            size[key], height[key] = n, h
            continue
        if key in size:
            continue
        if key in active:
            raise _Refusal(
                _line(node), node_path.get(key), "an alias refers to a node that contains it"
            )
        active.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in size)
    if height[id(root)] > MAX_DEPTH + 1:  # a scalar inside MAX_DEPTH collections is fine
        node = root
        for _ in range(MAX_DEPTH + 1):  # down the tallest branch to the first level too deep
            node = max(_children(node), key=lambda c: height[id(c)])
        raise _Refusal(
            _line(node), node_path.get(id(node)), f"nested deeper than {MAX_DEPTH} levels"
        )


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _check_keys(loader: _Loader, root: Node) -> dict[tuple[Any, ...], int]:
    """Refuse keys written twice in one mapping; return each key path's line (1-based).

    Walks the tree as the reader of the file sees it (aliases expanded: bounded above), so that
    every path the schema may name has a line.
    """
    lines: dict[tuple[Any, ...], int] = {}
    checked: set[int] = set()
    stack: list[tuple[Node, tuple[Any, ...]]] = [(root, ())]
    while stack:
        node, loc = stack.pop()
        if isinstance(node, SequenceNode):
            for i, item in enumerate(node.value):
                lines.setdefault((*loc, i), _line(item) or 0)
                stack.append((item, (*loc, i)))
        elif isinstance(node, MappingNode):
            seen: dict[Any, int] = {}
            for knode, vnode in node.value:
                if knode.tag == _MERGE_TAG:  # merged keys may be overridden: not repetitions
                    merged = vnode.value if isinstance(vnode, SequenceNode) else [vnode]
                    stack.extend((m, loc) for m in merged)
                    continue
                key = _key_of(loader, knode, loc)
                kline = _line(knode) or 0
                if key in seen and id(node) not in checked:
                    raise _Refusal(
                        kline,
                        (*loc, key),
                        f"key written twice (also on line {seen[key]}): remove one; "
                        "YAML would silently keep only the last",
                    )
                seen[key] = kline
                lines.setdefault((*loc, key), kline)
                stack.append((vnode, (*loc, key)))
            checked.add(id(node))
    return lines


def _key_of(loader: _Loader, knode: Node, loc: tuple[Any, ...]) -> Any:
    if not isinstance(knode, ScalarNode):
        raise _Refusal(_line(knode), loc, "a key must be a plain value, not a list or mapping")
    key = loader.construct_object(knode)
    if not isinstance(key, Hashable):  # pragma: no cover - scalars construct hashable values
        raise _Refusal(_line(knode), loc, "unhashable key")
    return key
