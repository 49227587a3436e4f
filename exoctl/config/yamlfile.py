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

Where: this module is the pipeline and its public face (:func:`read_yaml`, :func:`dump_yaml`,
:class:`YamlDocument`, :class:`ConfigError`); its stages are :mod:`~exoctl.config.yaml_refusal`
(bounds, the located refusal), :mod:`~exoctl.config.yaml_core_schema` (loader and dumper),
:mod:`~exoctl.config.yaml_graph` (graph checks) and :mod:`~exoctl.config.yaml_locate` (where a
parser error is).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import Node

from exoctl.config.yaml_core_schema import _Loader
from exoctl.config.yaml_core_schema import dump_yaml as dump_yaml
from exoctl.config.yaml_graph import _check_graph, _check_keys, _first_paths
from exoctl.config.yaml_locate import _key_at_line, _line_at_offset, _path_at_error, _reader_error
from exoctl.config.yaml_refusal import MAX_BYTES as MAX_BYTES
from exoctl.config.yaml_refusal import MAX_DEPTH as MAX_DEPTH
from exoctl.config.yaml_refusal import MAX_INT_BITS as MAX_INT_BITS
from exoctl.config.yaml_refusal import MAX_NODES as MAX_NODES
from exoctl.config.yaml_refusal import _line, _Refusal, _short, _yaml_problem
from exoctl.errors import DataError
from exoctl.regular_file import open_regular


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
