"""The one YAML reader for every file exoctl loads, with errors a person can act on.

Configuration, calibration, dataset descriptions and HIL scenarios all go through
:func:`read_yaml` (or :func:`read_yaml_mapping`). A file is text a careless or hostile hand may
have written, so the reader refuses, with the file, the line and the key in a single line:

* a key written twice in one mapping (plain PyYAML keeps the last: a torque limit of 40 N m
  written twice as 40 and 150 would silently become 150; a second ``safety:`` section would
  replace the first). A ``<<`` merge is not a repetition: explicit keys override merged ones;
* aliases that expand beyond :data:`MAX_NODES` values, or refer to their own ancestor (a 3 KB
  "billion laughs" file expands to 10^9 values: whoever walks it, or prints it, hangs);
* bytes that are not UTF-8, nesting deeper than :data:`MAX_DEPTH`, integers wider than
  :data:`MAX_INT_BITS` bits, files larger than :data:`MAX_BYTES`;
* anything PyYAML itself rejects, located at the line and column where it stopped;
* a plain value whose meaning differs between YAML 1.1 and YAML 1.2 (see below).

Scalars follow the YAML 1.2 core schema, the same everywhere: ``true``/``false`` are the only
booleans, numbers are decimal (or ``0o``/``0x``), ``1e-3`` is a float, and anything else is
text. The YAML 1.1 forms PyYAML used to guess at are refused, not read as text either, because
whoever wrote them meant something else: ``yes``/``no``/``on``/``off`` (1.1 booleans: an
``assist_gain: {hip_l: on}`` became 1.0), ``1:20`` (base 60: 80), ``1_20`` (120), ``012``
(octal 10 in 1.1, 12 in 1.2) and ``0b101``. Quoted, each is text; an explicit ``!!bool``,
``!!int`` or ``!!float`` accepts only the 1.2 forms. Text where a number is meant is the
schema's to refuse (strict types): this reader never turns ``"40"`` into 40.

Nothing a file contains ends in another exception: every refusal is the caller's error type
(:class:`ConfigError` unless the caller names its own), and no message prints a value whole.

How: libyaml composes the node graph (C, ~20x faster than PyYAML's pure-Python composer,
which took 21 s for a 600 KB list on a loaded machine; libyaml stops nesting at 1000 levels by
itself, so its recursion is bounded). The bounds are then checked on the graph, one visit per
distinct node, before anything is constructed: the cost of a refusal is linear in the file's
size (bounded too), whatever the aliases would expand to. PyYAML's own safe constructors build
the values; whatever they raise is located at the node that failed.

Why one module of this length: it is one pipeline (compose, check the graph's bounds and keys,
construct, locate a failure) over one loader and node graph, whose helpers serve nothing else.
"""

from __future__ import annotations

import math
import re
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from exoctl.errors import DataError
from exoctl.regular_file import open_regular

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


class ConfigError(DataError):
    """A file or setting that must not be used; the message is meant for a person.

    The base of every refusal the reader and the configuration schema make (the project's
    common exception base will become this class's parent).
    """


def format_key(loc: tuple[Any, ...]) -> str:
    """``('device', 'joints', 0, 'torque_limit_nm')`` -> ``device.joints[0].torque_limit_nm``."""
    out = ""
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + _short(str(part), 40)
    return out or "(top level)"


def _short(text: str, limit: int = 60) -> str:
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    return text if len(text) <= limit else text[: limit - 3] + "..."


class YamlDocument:
    """A file's value and where each key sits in it (1-based line of the key, or item).

    A plain class, not a dataclass: ``exoctl estop`` reads its socket path through this module,
    and ``dataclasses`` imports ``inspect`` (with ``ast``, ``dis``, ``tokenize``), a few ms of
    every e-stop's start-up."""

    __slots__ = ("data", "lines", "path", "root")

    def __init__(
        self,
        path: Path,
        data: Any,
        lines: dict[tuple[Any, ...], int] | None = None,
        root: Node | None = None,  # the checked node graph (positions)
    ) -> None:
        self.path = path
        self.data = data
        self.lines: dict[tuple[Any, ...], int] = {} if lines is None else lines
        self.root = root

    def __repr__(self) -> str:
        return f"YamlDocument(path={self.path!r}, data={self.data!r})"

    def line_of(self, loc: tuple[Any, ...]) -> int | None:
        """The line of ``loc``, or of its nearest ancestor the file names (None: no line)."""
        loc = tuple(loc)
        while loc:
            line = self.lines.get(loc)
            if line is not None:
                return line
            loc = loc[:-1]
        return None

    def where(self, loc: tuple[Any, ...]) -> str:
        """``path:line`` for messages (just ``path`` when the key is not in the file)."""
        line = self.line_of(loc)
        return f"{self.path}:{line}" if line is not None else str(self.path)


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


_BaseLoader: type = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader


class _Loader(_BaseLoader):
    """SafeLoader (libyaml's composer when present) that bounds integer width and locates
    every construction failure by the key path of the node that failed."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.node_path: dict[int, tuple[Any, ...]] = {}

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except _Refusal:
            raise
        except yaml.MarkedYAMLError as e:  # e.g. an unknown !tag, a bad !!binary, a bad merge
            raise _Refusal(
                _line(e.problem_mark) or _line(node), self.node_path.get(id(node)), _yaml_problem(e)
            ) from None
        except Exception as e:
            # PyYAML's constructors trust the scalar to match its tag: a date that does not
            # exist (2024-13-45) raises ValueError, an explicit `!!int` on nothing IndexError,
            # `!!timestamp x` AttributeError. Whatever they raise, the value cannot be read.
            raise _Refusal(
                _line(node),
                self.node_path.get(id(node)),
                f"cannot read value{_tag_of(node)}: {type(e).__name__}: {_short(str(e))}",
            ) from None

    def construct_yaml_int(self, node: ScalarNode) -> int:
        text = str(node.value)
        if not _CORE_INT.match(text):
            raise self._refuse_form(node, "an integer")
        sign = -1 if text.startswith("-") else 1
        digits = text.lstrip("+-")
        # a digit in base 2 carries the fewest bits (1): anything longer cannot fit
        if len(digits) > MAX_INT_BITS + 2:
            raise _Refusal(
                _line(node),
                self.node_path.get(id(node)),
                f"integer with {len(digits)} digits: wider than {MAX_INT_BITS} bits",
            )
        base = {"0o": 8, "0x": 16}.get(digits[:2], 10)
        value = sign * int(digits[2:] if base != 10 else digits, base)
        if abs(value).bit_length() > MAX_INT_BITS:
            raise _Refusal(
                _line(node), self.node_path.get(id(node)), f"integer wider than {MAX_INT_BITS} bits"
            )
        return value

    def construct_yaml_float(self, node: ScalarNode) -> float:
        text = str(node.value)
        if _CORE_INT.match(text):  # `!!float 3`
            return float(self.construct_yaml_int(node))
        if not _CORE_FLOAT.match(text):
            raise self._refuse_form(node, "a number")
        low = text.lower()
        if low.endswith(".nan"):
            return math.nan
        if low.endswith(".inf"):
            return -math.inf if low.startswith("-") else math.inf
        return float(text)

    def construct_yaml_bool(self, node: ScalarNode) -> bool:
        text = str(node.value)
        if text.lower() not in ("true", "false"):
            raise self._refuse_form(node, "a boolean")
        return text.lower() == "true"

    def construct_yaml11(self, node: ScalarNode) -> Any:
        raise self._refuse_form(node, None)

    def _refuse_form(self, node: ScalarNode, meant: str | None) -> _Refusal:
        return _Refusal(
            _line(node), self.node_path.get(id(node)), _form_problem(str(node.value), meant)
        )


def _form_problem(text: str, meant: str | None) -> str:
    """Why a plain value is refused, and the form that says what its writer meant."""
    shown = _short(text, 30)
    if _YAML11_BOOL.match(text):
        return (
            f"{shown}: not a boolean in YAML 1.2 (YAML 1.1 read it as one): write true or false, "
            f'or "{shown}" in quotes if text is meant'
        )
    if _YAML11_NUMBER.match(text) or meant in ("an integer", "a number"):
        if ":" in text:
            why = "a base-60 (sexagesimal) number in YAML 1.1 only"
        elif "_" in text:
            why = "digits grouped with '_' are a YAML 1.1 form only"
        elif text.lstrip("+-").startswith("0b"):
            why = "binary 0b... is a YAML 1.1 form only"
        elif re.match(r"^[-+]?0[0-9]", text):
            why = "a leading zero is octal in YAML 1.1, decimal in YAML 1.2"
        else:
            why = f"not {meant or 'a number'}"
        return (
            f"{shown}: {why}: write a plain number (e.g. 40, -2, 0.5, 1e-3), or quote it for text"
        )
    return f"{shown}: not {meant} (YAML 1.2 core schema)"


# The YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution), and the plain
# forms YAML 1.1 reads otherwise, refused (checked first: `012` is 10 in 1.1, 12 in 1.2).
_CORE_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_CORE_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_CORE_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_CORE_FLOAT = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
_YAML11_BOOL = re.compile(r"^(?:yes|Yes|YES|no|No|NO|on|On|ON|off|Off|OFF)$")
_YAML11_NUMBER = re.compile(
    r"^[-+]?(?:0b[0-1_]+|0[0-9_]+"
    r"|[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?"
    r"|(?=[0-9._]*_)[0-9][0-9_]*(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?"
    r"|0x[0-9a-fA-F]*_[0-9a-fA-F_]*|\.[0-9]*_[0-9_]*(?:[eE][-+]?[0-9]+)?)$"
)
_YAML11_TAG = "tag:exoctl,2026:yaml11-form"

_CORE_RESOLVERS: tuple[tuple[str, re.Pattern[str], str | list[str]], ...] = (
    ("tag:yaml.org,2002:bool", _CORE_BOOL, "tTfF"),
    ("tag:yaml.org,2002:null", _CORE_NULL, ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:int", _CORE_INT, "-+0123456789"),
    ("tag:yaml.org,2002:float", _CORE_FLOAT, "-+0123456789."),
    ("tag:yaml.org,2002:merge", re.compile(r"^(?:<<)$"), "<"),
)
_Loader.yaml_implicit_resolvers = {}
for _tag, _regexp, _first in (
    (_YAML11_TAG, _YAML11_BOOL, "yYnNoO"),
    (_YAML11_TAG, _YAML11_NUMBER, "-+0123456789."),
    *_CORE_RESOLVERS,
):
    _Loader.add_implicit_resolver(_tag, _regexp, list(_first))
_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)
_Loader.add_constructor("tag:yaml.org,2002:float", _Loader.construct_yaml_float)
_Loader.add_constructor("tag:yaml.org,2002:bool", _Loader.construct_yaml_bool)
_Loader.add_constructor(_YAML11_TAG, _Loader.construct_yaml11)


class _Dumper(yaml.SafeDumper):
    """SafeDumper that quotes every text this reader (or a YAML 1.1 reader) would take for
    something else: ``"1e3"`` (a float in YAML 1.2), ``"0o17"``, ``"yes"``, ``"1:20"``."""


_Dumper.yaml_implicit_resolvers = {
    k: list(v) for k, v in yaml.SafeDumper.yaml_implicit_resolvers.items()
}
for _tag, _regexp, _first in _CORE_RESOLVERS:
    _Dumper.add_implicit_resolver(_tag, _regexp, list(_first))


def dump_yaml(data: Any, **options: Any) -> str:
    """YAML text for ``data`` that :func:`read_yaml` reads back as the same value.

    The one writer for files exoctl reads again (calibrations, dataset descriptions, bench
    configurations); ``options`` as for ``yaml.dump`` (``sort_keys``, ``width``, ...).
    """
    return str(yaml.dump(data, Dumper=_Dumper, **options))


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


def read_yaml(path: str | Path, what: str, error: type[Exception] = ConfigError) -> YamlDocument:
    """Read one YAML document from ``path``; refuse (raise ``error``) with a located one-liner.

    ``what`` names the file's role for messages ("configuration", "calibration", ...).
    """
    path = Path(path)

    def refuse(line: int | None, loc: tuple[Any, ...] | None, problem: str) -> Exception:
        where = f"{path}:{line}" if line else str(path)
        key = f" {format_key(loc)}:" if loc else ""
        return error(f"{where}:{key} {problem}")

    try:
        with open_regular(path, what, error) as f:  # a FIFO or a device: refused, not waited on
            data = f.read(MAX_BYTES + 1)
    except OSError as e:
        return _raise(error(f"{path}: cannot read {what}: {e.strerror or e}"))
    if len(data) > MAX_BYTES:
        return _raise(
            refuse(None, None, f"{what} file larger than {MAX_BYTES // 1024} KiB: not read")
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line, col = _line_at_offset(data, e.start)
        loc = _key_at_line(data.decode("utf-8", errors="replace"), line)
        return _raise(
            refuse(
                line,
                loc,
                f"byte 0x{data[e.start]:02x} at column {col} is not UTF-8 "
                f"(save the {what} as UTF-8)",
            )
        )
    loader: _Loader | None = None
    try:
        loader = _Loader(text)
        root = loader.get_single_node()
        if root is None:
            return YamlDocument(path, None)
        loader.node_path = _first_paths(root)
        _check_graph(root, loader.node_path)
        lines = _check_keys(loader, root)
        # deep: every value is built inside construct_object, which locates any failure
        value = loader.construct_object(root, deep=True)
    except _Refusal as r:
        return _raise(refuse(r.line, r.loc, r.problem))
    except yaml.MarkedYAMLError as e:
        if "nesting depth" in str(e.problem):  # libyaml's own limit (1000) met first
            return _raise(
                refuse(
                    _line(e.problem_mark),
                    _path_at_error(text),
                    f"nested deeper than {MAX_DEPTH} levels",
                )
            )
        return _raise(refuse(_line(e.problem_mark), _path_at_error(text), _yaml_problem(e)))
    except yaml.YAMLError as e:  # ReaderError: a character YAML does not allow
        return _raise(_reader_error(refuse, text, data, e))
    finally:
        if loader is not None:
            loader.dispose()
    return YamlDocument(path, value, lines, root)


def _raise(e: Exception) -> Any:
    raise e


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


def read_yaml_mapping(
    path: str | Path,
    what: str,
    error: type[Exception] = ConfigError,
    top_level: str = "a mapping",
) -> dict[str, Any]:
    """:func:`read_yaml` for files whose top level must be a mapping; returns the mapping."""
    return read_yaml_document(path, what, error, top_level).data


def read_yaml_document(
    path: str | Path,
    what: str,
    error: type[Exception] = ConfigError,
    top_level: str = "a mapping",
) -> YamlDocument:
    """:func:`read_yaml_mapping` keeping the line of each key (for the schema's messages)."""
    doc = read_yaml(path, what, error)
    if not isinstance(doc.data, dict):
        raise error(f"{doc.path}:1: (top level): must be {top_level}")
    return doc
