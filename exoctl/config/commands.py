"""``exoctl config show`` and ``exoctl config init``: see and copy the configuration in use.

The packaged default lives inside the installed package, where a person should not edit it.
``init`` writes an editable copy of the configuration the lookup finds (exoctl.config.lookup;
the packaged default unless told otherwise) with every relative path made absolute, so the
copy names the same model and calibration wherever it is put (``/etc/exoctl/exoctl.yaml``, a
bench directory). The text is copied, comments and layout included; only the path values are
replaced, at the positions the YAML parser reports for them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import yaml

from exoctl.cli_policy import EXIT_ERROR, EXIT_OK, emit_json, fail
from exoctl.config.lookup import ConfigChoice, find_config
from exoctl.config.paths import resolve_path
from exoctl.config.schema import PATH_KEYS, load_config
from exoctl.config.yamlfile import read_yaml

_PLAIN = re.compile(r"[A-Za-z0-9_./~+@-]+")


def with_absolute_paths(text: str, root: yaml.Node | None, base: Path) -> str:
    """``text`` (a configuration file's YAML) with its relative path values made absolute
    against ``base``, everything else (comments, order, layout) unchanged."""
    if root is None:  # an empty file: nothing to make absolute
        return text
    edits: list[tuple[int, int, str]] = []
    for keys in PATH_KEYS:
        node = root
        for k in keys:
            node = _child(node, k)
        if not isinstance(node, yaml.ScalarNode) or node.tag != "tag:yaml.org,2002:str":
            continue
        if Path(node.value).expanduser().is_absolute():
            continue
        new = resolve_path(node.value, base)  # the load's rule, exoctl: paths included
        edits.append(
            (
                node.start_mark.index,
                node.end_mark.index,
                new if _PLAIN.fullmatch(new) else json.dumps(new),
            )
        )
    for start, end, new in sorted(edits, reverse=True):
        text = text[:start] + new + text[end:]
    return text


def _child(node: Any, key: str) -> Any:
    if not isinstance(node, yaml.MappingNode):
        return None
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            return v
    return None


def _copy_text(choice: ConfigChoice) -> str:
    load_config(choice.path)  # a bad file is reported with its file, key and value first
    doc = read_yaml(choice.path, "configuration")  # the one reader: its checked node graph
    return with_absolute_paths(choice.path.read_text(), doc.root, choice.path.resolve().parent)


def cmd_show(args: argparse.Namespace) -> int:
    choice = find_config(getattr(args, "config", None))
    if args.json:
        cfg = load_config(choice.path)
        doc = {"path": str(choice.path), "chosen_by": choice.origin, **cfg.model_dump(mode="json")}
        emit_json(doc)
        return EXIT_OK
    text = _copy_text(choice)
    print(f"# exoctl configuration {choice.path} (chosen by: {choice.origin}); paths made absolute")
    print(text, end="" if text.endswith("\n") else "\n")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    choice = find_config(getattr(args, "config", None))
    out: Path = args.out
    if out.exists() and not args.force:
        return fail(f"{out} exists; not overwritten (--force replaces it)", EXIT_ERROR)
    when = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    header = (
        f"# Written by `exoctl config init` on {when} from {choice.path}.\n"
        "# Its relative paths were made absolute; paths you add are relative to this file.\n"
    )
    text = header + _copy_text(choice)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(out)
    except OSError as e:
        return fail(f"cannot write {out}: {e.strerror or e}", EXIT_ERROR)
    cfg = load_config(out)
    print(f"wrote {out} (a copy of {choice.path})")
    print(f"  model        {cfg.model.path}")
    print(f"  calibration  {cfg.estimator.calibration}")
    print(
        f"Edit it (joints, limits, muscles, service), then check it: exoctl --config {out} config show"
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``exoctl config show|init`` to the main parser."""
    p = subparsers.add_parser(
        "config",
        help="show the configuration in use, or write an editable copy of it",
        description="The configuration is --config, else $EXOCTL_CONFIG, else "
        "/etc/exoctl/exoctl.yaml when it exists, else the one shipped in the package.",
    )
    sp = p.add_subparsers(dest="config_cmd", required=True, metavar="{show,init}")
    show = sp.add_parser("show", help="print the configuration in use (paths made absolute)")
    show.add_argument("--json", action="store_true", help="the validated configuration as JSON")
    show.set_defaults(func=cmd_show)
    init = sp.add_parser(
        "init", help="write an editable copy of the configuration in use, with working paths"
    )
    init.add_argument(
        "--out", type=Path, default=Path("exoctl.yaml"), help="where (default ./exoctl.yaml)"
    )
    init.add_argument("--force", action="store_true", help="replace an existing file")
    init.set_defaults(func=cmd_init)
