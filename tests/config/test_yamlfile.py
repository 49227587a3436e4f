"""The one YAML reader: every refusal is a ConfigError of one line with file, line and key.

Each input that once crashed the reader, hung it or was read wrong (non-UTF-8 bytes, deep
nesting, huge integers, an alias bomb; duplicate keys, last one winning) as a test; then a
property: any bytes at all give a value or a located one-line ConfigError, never another
exception, and quickly.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exoctl.config.schema import DEFAULT_CONFIG, MODELS_DIR, load_config
from exoctl.config.yamlfile import (
    MAX_BYTES,
    MAX_DEPTH,
    MAX_NODES,
    ConfigError,
    dump_yaml,
    read_yaml,
)

LOCATED = re.compile(r"^(?P<file>[^\n]+?):(?P<line>\d+): (?P<key>[^\n]+?): [^\n]+$")


def _refusal(path: Path) -> re.Match[str]:
    with pytest.raises(ConfigError) as e:
        read_yaml(path, "configuration")
    msg = str(e.value)
    m = LOCATED.match(msg)
    assert m, f"not a located one-line message: {msg!r}"
    assert m["file"] == str(path)
    return m


def _write(tmp_path: Path, text: str | bytes, name: str = "f.yaml") -> Path:
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text)
    return p


def _default_text() -> str:
    # the shipped file names the models inside the package; these copies name them by path
    models = MODELS_DIR
    return DEFAULT_CONFIG.read_text().replace("exoctl:models", str(models))


def test_torque_limit_written_twice_is_refused(tmp_path):
    """A torque limit written twice, as 40 and then 150 N m, was read as 150."""
    text = _default_text().replace(
        "torque_limit_nm: 40.0,", "torque_limit_nm: 40.0, torque_limit_nm: 150.0,", 1
    )
    p = _write(tmp_path, text)
    m = _refusal(p)
    assert m["key"] == "device.joints[0].torque_limit_nm"
    assert text.splitlines()[int(m["line"]) - 1].count("torque_limit_nm") == 2
    assert "twice" in str(pytest.raises(ConfigError, load_config, p).value)


def test_second_safety_section_is_refused(tmp_path):
    """A second `safety:` section silently reset the first to its defaults."""
    text = _default_text().replace("emg_timeout_s: 0.1", "emg_timeout_s: 0.3")
    text += "\nsafety:\n  rom_fade_rad: 0.15\n"
    p = _write(tmp_path, text)
    m = _refusal(p)
    assert m["key"] == "safety"
    assert text.splitlines()[int(m["line"]) - 1] == "safety:"
    first = text.splitlines().index("safety:") + 1
    assert f"also on line {first}" in str(pytest.raises(ConfigError, load_config, p).value)


def test_merge_keys_are_not_repetitions(tmp_path):
    p = _write(
        tmp_path,
        "base: &b {torque_limit_nm: 40.0, rate: 1}\njoint: {<<: *b, torque_limit_nm: 30.0}\n",
    )
    assert read_yaml(p, "x").data["joint"] == {"torque_limit_nm": 30.0, "rate": 1}


def test_keys_equal_as_values_are_repetitions(tmp_path):
    assert _refusal(_write(tmp_path, "a:\n  1: x\n  0x1: y\n"))["key"] == "a[1]"


def _bomb(levels: int = 10, fan: int = 9) -> str:
    lines = ["a0: &a0 [" + ", ".join(['"lol"'] * fan) + "]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * fan) + "]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_fails_fast(tmp_path):
    """A 3 KB alias bomb ran the reader into MemoryError after 55 s."""
    text = _bomb(levels=12, fan=9) + _default_text()
    text = text.replace("  muscles:\n", "  muscles: *a11\n  muscles_was:\n", 1)
    p = _write(tmp_path, text)
    t0 = time.perf_counter()
    m = _refusal(p)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    took = time.perf_counter() - t0
    assert "alias" in m.string and str(MAX_NODES) in m.string
    assert m["key"].startswith("a")
    assert len(str(e.value)) < 300
    assert took < 5.0, took  # generous: the refusal is linear in the file (~ms here)


def test_recursive_alias_is_refused(tmp_path):
    m = _refusal(_write(tmp_path, "a: &x [1, *x]\n"))
    assert "contains it" in m.string


def test_aliases_within_the_bound_are_read(tmp_path):
    p = _write(tmp_path, "j: &j {lo: -0.5, hi: 1.8}\njoints: [*j, *j, *j]\n")
    assert read_yaml(p, "x").data["joints"] == [{"lo": -0.5, "hi": 1.8}] * 3


def test_non_utf8_is_located(tmp_path):
    """Non-UTF-8 bytes crashed the reader with UnicodeDecodeError."""
    p = _write(tmp_path, b"device:\n  name: ok\nsafety:\n  emg_timeout_s: 0.1 # \xff\xfe\n")
    m = _refusal(p)
    assert m["line"] == "4" and m["key"] == "safety.emg_timeout_s"
    assert "0xff" in m.string and "UTF-8" in m.string


@pytest.mark.parametrize("opener,closer", [("[", "]"), ("{a: ", "}")])
def test_deep_nesting_fails_fast(tmp_path, opener, closer):
    """50,000 nested brackets crashed the reader with RecursionError."""
    p = _write(tmp_path, "x: " + opener * 50_000 + "1" + closer * 50_000 + "\n")
    t0 = time.perf_counter()
    m = _refusal(p)
    assert time.perf_counter() - t0 < 5.0
    assert m["key"].startswith("x") and f"deeper than {MAX_DEPTH}" in m.string


def test_block_nesting_past_the_bound_is_refused(tmp_path):
    text = "".join("  " * i + f"k{i}:\n" for i in range(MAX_DEPTH + 2)) + "  " * 40 + "v\n"
    m = _refusal(_write(tmp_path, text))
    assert m["key"].startswith("k0.k1.k2")


def test_nesting_within_the_bound_is_read(tmp_path):
    p = _write(tmp_path, "x: " + "[" * (MAX_DEPTH - 1) + "1" + "]" * (MAX_DEPTH - 1) + "\n")
    assert read_yaml(p, "x").data["x"] is not None


@pytest.mark.parametrize("literal", ["9" * 5000, "-" + "9" * 30, "0x" + "f" * 17, "0o" + "7" * 30])
def test_huge_integers_are_refused(tmp_path, literal):
    """A 5,000-digit integer crashed the reader with ValueError."""
    m = _refusal(_write(tmp_path, f"seed: {literal}\n"))
    assert m["key"] == "seed" and "64 bits" in m.string
    assert len(m.string) < 200


def test_64_bit_integers_are_read(tmp_path):
    p = _write(tmp_path, f"a: {2**64 - 1}\nb: -{2**63}\nc: 0x{'f' * 16}\n")
    assert read_yaml(p, "x").data == {"a": 2**64 - 1, "b": -(2**63), "c": 2**64 - 1}


def test_impossible_date_and_unknown_tag_are_located(tmp_path):
    m = _refusal(_write(tmp_path, "a: 1\nwhen: !!timestamp 2024-13-45\n"))
    assert m["line"] == "2" and m["key"] == "when"
    m = _refusal(_write(tmp_path, "a: 1\nb: !python/object:os.system x\n"))
    assert m["line"] == "2" and m["key"] == "b"


def test_syntax_error_is_one_located_line(tmp_path):
    m = _refusal(_write(tmp_path, "device:\n  name: [unclosed\nsafety: {}\n"))
    assert m["key"].startswith("device.name") and "not valid YAML" in m.string


def test_control_character_is_located(tmp_path):
    m = _refusal(_write(tmp_path, "a: 1\nb: x\x07y\n"))
    assert m["line"] == "2" and m["key"] == "b" and "U+0007" in m.string


def test_oversized_file_is_refused_unread(tmp_path):
    p = _write(tmp_path, "a: " + "x" * MAX_BYTES + "\n")
    with pytest.raises(ConfigError, match="larger than"):
        read_yaml(p, "configuration")


def test_lines_of_keys_are_kept(tmp_path):
    doc = read_yaml(_write(tmp_path, "a:\n  b: 1\n  c:\n    - 1\n    - {d: 2}\n"), "x")
    assert doc.line_of(("a", "b")) == 2
    assert doc.line_of(("a", "c", 1, "d")) == 5
    assert doc.line_of(("a", "c", 7)) == 3  # not in the file: its nearest ancestor


READER_MODULES = {
    f"exoctl/config/{name}.py"
    for name in ("yamlfile", "yaml_refusal", "yaml_core_schema", "yaml_graph", "yaml_locate")
}
"""The reader's own modules: the only ones that may call PyYAML's parser."""


def test_every_yaml_file_of_the_project_is_read_by_this_reader():
    """No module parses YAML itself: configuration, calibration, datasets, scenarios."""
    root = Path(__file__).resolve().parents[2]
    offenders = []
    for py in (root / "exoctl").rglob("*.py"):
        if py.relative_to(root).as_posix() in READER_MODULES:
            continue
        text = py.read_text()
        if re.search(r"yaml\.(safe_load|load|full_load|unsafe_load|compose|parse)\(", text):
            offenders.append(str(py.relative_to(root)))
    assert offenders == []


# ------------------------------------------------------------------------------- property
def _yamlish() -> st.SearchStrategy[bytes]:
    """Bytes that often are YAML: fragments of real syntax mixed with arbitrary bytes."""
    pieces = st.sampled_from(
        [b"a", b"b", b": ", b"\n", b"  ", b"- ", b"[", b"]", b"{", b"}", b", ", b"&x ", b"*x",
         b"<<: ", b"!!int ", b"!!binary ", b"!!timestamp ", b"2024-13-45", b"0x", b"9" * 30,
         b"1e999", b".nan", b"'", b'"', b"#", b"? ", b"|", b">", b"---\n", b"...\n", b"%YAML 1.1\n",
         b"\xff", b"\xc3", b"\x00", b"\x07", b"\xef\xbb\xbf", b"\t", b"!foo ", b"~", b"@"]
    )  # fmt: skip
    return st.one_of(
        st.binary(max_size=300),
        st.lists(pieces, max_size=80).map(b"".join),
        st.lists(st.one_of(pieces, st.binary(max_size=3)), max_size=60).map(b"".join),
    )


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=_yamlish())
def test_any_bytes_give_a_value_or_a_located_config_error(tmp_path, data):
    p = tmp_path / "fuzz.yaml"
    p.write_bytes(data)
    t0 = time.perf_counter()
    try:
        read_yaml(p, "configuration")
    except ConfigError as e:
        msg = str(e)
        assert "\n" not in msg and msg.startswith(str(p)), msg
        assert len(msg) < 400, msg
    assert time.perf_counter() - t0 < 1.0


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    value=st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats() | st.text(),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
        max_leaves=30,
    )
)
def test_what_the_project_writes_reads_back(tmp_path, value):
    """Within the bounds, the reader reads what exoctl's writer wrote: the same value (text
    such as "1e3", "0o7" or "yes" is quoted; nothing refused wrongly)."""
    p = tmp_path / "rt.yaml"
    p.write_text(dump_yaml({"v": value}))
    got = read_yaml(p, "x").data["v"]
    assert got == value or _has_nan(value)


@pytest.mark.parametrize("text", ["1e3", "0o17", "0x1f", "yes", "1:20", "1_20", "012", ".5"])
def test_text_that_looks_like_a_number_is_written_quoted(tmp_path, text):
    p = tmp_path / "rt.yaml"
    p.write_text(dump_yaml({"v": text}))
    assert read_yaml(p, "x").data["v"] == text


def _has_nan(v) -> bool:
    if isinstance(v, float):
        return v != v
    if isinstance(v, list):
        return any(_has_nan(x) for x in v)
    if isinstance(v, dict):
        return any(_has_nan(x) for x in v.values())
    return False
