"""The YAML reader's loader and the writer's dumper: YAML 1.2 core scalars, 1.1 forms refused.

:class:`_Loader` is PyYAML's SafeLoader (libyaml's composer when present) with the YAML 1.2
core schema's implicit resolvers in place of YAML 1.1's, a resolver that catches the plain
forms YAML 1.1 reads otherwise (``yes``, ``1:20``, ``012``, ...) to refuse them with the form
that was probably meant, integers bounded in width, and every construction failure located by
the key path of the node that failed. :func:`dump_yaml` writes what it reads back unchanged.
"""

from __future__ import annotations

import math
import re
from typing import Any

import yaml
from yaml.nodes import Node, ScalarNode

from exoctl.config.yaml_refusal import (
    MAX_INT_BITS,
    _line,
    _Refusal,
    _short,
    _tag_of,
    _yaml_problem,
)

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
