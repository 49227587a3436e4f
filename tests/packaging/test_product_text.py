"""Product text is written for the people who install and run exoctl, not as a development log.

Checked: every text file inside the built wheel and the sdist (the code's messages, comments and
docstrings, the configurations, the models' JSON records, the package metadata that carries the
README) and the published docs (README.md, CHANGELOG.md, docs/**, systemd/), and the
benchmarks' sources (bench/**): their reports and their tables in docs/benchmarks.md are
published, with the labels, notes and owners written there. CHANGELOG.md is not exempt: it
tells the history by version and date, in terms of what changed for a user.

What is refused, and why:

- **Issue references in any spelling** ("issue 14", "issue #14", "Issue-14", "issues 20 and
  21", "#14", "PR 3"): the tracker is not shipped; a reader cannot follow them. Say what the
  behaviour is and why.
- **Bare commit ids** (7 to 40 lowercase hex characters with at least one digit and one
  letter, standing alone): history belongs in git and in CHANGELOG.md's prose. Not refused:
  hex in a line labelled as a digest (``sha256``, ``sha1``, ``digest``, ``fingerprint``,
  ``checksum``: a model's fingerprint is data the user compares; a model record's labelled
  ``"git_commit"`` field, its provenance), parts of a UUID or of a longer hex run, and hex
  colours.
- **Role words that name who built it** (:data:`ROLE_WORDS`): "safety engineer", "another
  engineer's load", "the lead", "reviewer", "the review's mends". The text names the people who
  use the device (the clinician, the person deploying it), never the team's division of work.
- **Absolute paths of a build machine**: ``/work/...``, ``/root/...``, ``/home/...`` anywhere
  checked, and ``/tmp/...`` in what is shipped (the wheel and the sdist). The docs may show
  ``/tmp/...`` in example commands a user types; a glob such as ``/home/*`` in a check is not a
  path.

A second test keeps ``docs/architecture.md`` true: every ``exoctl/...`` or
``firmware_bridge/...`` path and every dotted ``exoctl.`` / ``firmware_bridge.`` name it
mentions exists in the checkout.
"""

from __future__ import annotations

import re
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

from .conftest import REPO, Dists

ISSUE_REF = re.compile(
    r"\b(?:issues?|tickets?|PRs?|pull[ -]requests?)[ \t_-]*#?[ \t]*\d+\b"
    r"|(?<![\w&#/=\"'])#\d+\b",
    re.IGNORECASE,
)
COMMIT_ID = re.compile(r"(?<![\w-])[0-9a-f]{7,40}(?![\w-])")
DIGEST_LABEL = re.compile(
    r"sha-?256|sha-?1\b|digest|fingerprint|checksum|\"git_commit\":", re.IGNORECASE
)
HEX_COLOUR = re.compile(r"#[0-9a-fA-F]{3,8}\b")

ROLE_WORDS: tuple[str, ...] = (
    r"\bengineers?\b",  # "safety engineer", "another engineer's load", "other engineers'"
    r"\bthe lead\b",
    r"\breviewers?\b",
    r"\bthe review(?:'s|s)?\b",
    r"\bcode review\b",
    r"\bmaintainers?\b",
)
ROLE = re.compile("|".join(ROLE_WORDS), re.IGNORECASE)

BUILD_PATH_ANYWHERE = re.compile(r"(?<![\w.~$}])/(?:work|root|home)/[\w.-]")
BUILD_PATH_SHIPPED = re.compile(r"(?<![\w.~$}])/(?:work|root|home|tmp)/[\w.-]")

BINARY_SUFFIXES = (".onnx", ".pt", ".pyc", ".so", ".png", ".whl", ".gz")


def _findings(name: str, text: str, shipped: bool) -> Iterator[str]:
    paths = BUILD_PATH_SHIPPED if shipped else BUILD_PATH_ANYWHERE
    for n, line in enumerate(text.splitlines(), 1):
        where = f"{name}:{n}"
        no_colours = HEX_COLOUR.sub("", line)
        for m in ISSUE_REF.finditer(no_colours):
            yield f"{where}: issue reference {m.group(0)!r}"
        if not DIGEST_LABEL.search(line):
            for m in COMMIT_ID.finditer(no_colours):
                word = m.group(0)
                if re.search(r"\d", word) and re.search(r"[a-f]", word):
                    yield f"{where}: commit id {word!r}"
        for m in ROLE.finditer(line):
            yield f"{where}: role word {m.group(0)!r}"
        for m in paths.finditer(line):
            yield f"{where}: build-machine path {m.group(0)!r} in {line.strip()[:80]!r}"


def _text(name: str, data: bytes) -> str | None:
    if name.endswith(BINARY_SUFFIXES):
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _members(archive: Path) -> Iterator[tuple[str, bytes]]:
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                if not info.is_dir():
                    yield info.filename, z.read(info)
    else:
        with tarfile.open(archive) as t:
            for member in t.getmembers():
                f = t.extractfile(member) if member.isfile() else None
                if f is not None:
                    yield member.name, f.read()


def _check_archive(archive: Path) -> list[str]:
    found: list[str] = []
    seen = 0
    for name, data in _members(archive):
        text = _text(name, data)
        if text is not None:
            seen += 1
            found.extend(_findings(f"{archive.name}!{name}", text, shipped=True))
    assert seen > 50, f"{archive.name}: only {seen} text files: not the package"
    return found


def _report(found: list[str]) -> str:
    head = "\n".join(found[:80])
    more = f"\n... and {len(found) - 80} more" if len(found) > 80 else ""
    return f"{len(found)} development-log remnants:\n{head}{more}"


def test_the_wheel_has_no_development_log(dists: Dists) -> None:
    found = _check_archive(dists.wheel)
    assert not found, _report(found)


def test_the_sdist_has_no_development_log(dists: Dists) -> None:
    found = _check_archive(dists.sdist)
    assert not found, _report(found)


def _published_docs() -> list[Path]:
    docs = [REPO / "README.md", REPO / "CHANGELOG.md"]
    docs += sorted(p for p in (REPO / "docs").rglob("*") if p.is_file())
    docs += sorted(p for p in (REPO / "systemd").rglob("*") if p.is_file())
    return docs


def test_the_docs_have_no_development_log() -> None:
    found: list[str] = []
    for path in _published_docs():
        assert path.is_file(), f"{path.relative_to(REPO)} is missing"
        text = _text(path.name, path.read_bytes())
        if text is not None:
            found.extend(_findings(str(path.relative_to(REPO)), text, shipped=False))
    assert not found, _report(found)


def _benchmark_sources() -> list[Path]:
    """bench/ as a checkout has it: not its generated results, caches or LibEMG's venv."""
    skip = {"results", "__pycache__", ".venv-libemg"}
    return sorted(
        p
        for p in (REPO / "bench").rglob("*")
        if p.is_file() and not skip.intersection(p.relative_to(REPO / "bench").parts)
    )


def test_the_benchmarks_have_no_development_log() -> None:
    sources = _benchmark_sources()
    assert len(sources) > 20, f"only {len(sources)} files under bench/: not the benchmarks"
    found: list[str] = []
    for path in sources:
        text = _text(path.name, path.read_bytes())
        if text is not None:
            found.extend(_findings(str(path.relative_to(REPO)), text, shipped=False))
    assert not found, _report(found)


def test_the_checks_catch_what_they_are_for() -> None:
    """Each kind of remnant, in the spellings it has had, is found; the lookalikes are not."""
    caught = [
        "None of issue 14's targets is met",
        "see issue #14",
        "Issue-14",
        "issues 20 and 21",
        "fixed in #14",
        "measured at `fd4c05b`",
        "b8a2bda1c3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8",
        "the safety engineer's loop",
        "under another engineer's load",
        "the review's mends",
        "asked by the lead",
        '"config": "/work/main/configs/default.yaml"',
        "written to /tmp/build/x",
    ]
    for line in caught:
        assert list(_findings("x", line, shipped=True)), line
    passed = [
        "sha256: 3f2a9c0d1e4b5a6c7d8e9f00112233445566778899aabbccddeeff0011223344",
        "fingerprint 3f2a9c0d1e4b",
        "session 20260101T120000Z-0a1b2c",
        "uuid 123e4567-e89b-12d3-a456-426614174000",
        "colour: #333; border: #1a2b3c",
        "## Quick start",
        "0x7fffffff and 123456789",
        "Engineering detail is in the appendix",
        "/run/exoctl/control.sock",
        'case $p in /home/* | /root/*) fail "under /home or /root"',
        '"git_commit": "4622e4d1daebec9059d37ee596d940807dd1c594",',
    ]
    for line in passed:
        assert not list(_findings("x", line, shipped=True)), line


# --- docs/architecture.md names only what exists -------------------------------------------

PATH_REF = re.compile(r"(?<![\w/.])((?:exoctl|firmware_bridge)/[\w./*-]*[\w*])")
DOTTED_REF = re.compile(r"(?<![\w/.])((?:exoctl|firmware_bridge)(?:\.[A-Za-z_]\w*)+)")


def _module_exists(dotted: str) -> bool:
    """``a.b.c`` is a module or package of the checkout, or an attribute named in one."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        base = REPO.joinpath(*parts[:cut])
        module = base.with_suffix(".py")
        if module.is_file() or (base / "__init__.py").is_file():
            rest = parts[cut:]
            if not rest:
                return True
            source = module if module.is_file() else base / "__init__.py"
            return re.search(rf"\b{re.escape(rest[0])}\b", source.read_text()) is not None
    return False


def _path_exists(ref: str) -> bool:
    ref = ref.rstrip("/.")
    if "*" in ref:
        return any(REPO.glob(ref))
    return (REPO / ref).exists() or (REPO / ref).with_suffix(".py").exists()


BARE_MODULE = re.compile(r"`(\w+\.py)`")


def _bare_modules_missing(text: str) -> list[str]:
    """A bare ``name.py`` beside a path on the same line ("`exoctl/signal/dsp.py`,
    `activation.py`") is a file of one of the folders that line names."""
    missing = []
    for line in text.splitlines():
        refs = PATH_REF.findall(line)
        folders = {REPO / r if (REPO / r).is_dir() else (REPO / r).parent for r in refs}
        for name in BARE_MODULE.findall(line):
            if folders and not any((f / name).is_file() for f in folders):
                missing.append(f"{name} (beside {', '.join(sorted(refs))})")
    return missing


def test_architecture_doc_names_only_what_exists() -> None:
    text = (REPO / "docs" / "architecture.md").read_text()
    paths = sorted(set(PATH_REF.findall(text)))
    dotted = sorted(set(DOTTED_REF.findall(text)) - {"exoctl.yaml"})
    assert len(paths) + len(dotted) > 10, "the extraction found almost nothing"
    missing = [p for p in paths if not _path_exists(p)]
    missing += [d for d in dotted if not _module_exists(d)]
    missing += _bare_modules_missing(text)
    assert not missing, f"docs/architecture.md names what does not exist: {missing}"


def test_architecture_doc_names_every_model_input_kind() -> None:
    from exoctl.estimation.input_kinds import KINDS as INPUT_KINDS

    text = (REPO / "docs" / "architecture.md").read_text()
    absent = [k for k in INPUT_KINDS if f"`{k}`" not in text]
    assert not absent, f"docs/architecture.md does not name the input kinds {absent}"


def test_the_shipped_models_regenerate_commands_name_modules_that_exist() -> None:
    """Each model's record says how to make it again (``regenerate``, ``command``): the module
    it runs exists and has a command line, and the configuration it names is the shipped one,
    written relative to the checkout, not as a folder of the machine it was built on."""
    import importlib.util
    import json
    import shlex

    records = sorted((REPO / "exoctl" / "models").glob("*.json"))
    assert records
    for path in records:
        doc = json.loads(path.read_text())
        for key in ("regenerate", "command"):
            if key not in doc:
                continue
            argv = shlex.split(doc[key])
            assert argv[:2] == ["python", "-m"], (path.name, key, doc[key])
            spec = importlib.util.find_spec(argv[2])
            assert spec is not None and spec.origin, (path.name, key, argv[2])
            assert "def main(" in Path(spec.origin).read_text(), (path.name, key, argv[2])
        assert doc["config"] == "configs/default.yaml", (path.name, doc["config"])
        assert (REPO / doc["config"]).is_file()
