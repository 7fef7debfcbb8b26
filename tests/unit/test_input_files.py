"""The one safe reader of a user's YAML/JSON: size, file kind, depth, aliases, duplicate keys, YAML 1.2 floats."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from powerplanner.config import load_config
from powerplanner.errors import ConfigError, ObservationError, UserError
from powerplanner.input_files import (
    MAX_DEPTH,
    DocumentProblem,
    loads_json,
    loads_yaml,
    read_json,
    read_text,
    read_yaml,
)


def _problem(parse: object, text: str) -> DocumentProblem:
    assert callable(parse)
    with pytest.raises(DocumentProblem) as info:
        parse(text)
    return info.value


def test_yaml_duplicate_key_names_both_lines() -> None:
    problem = _problem(loads_yaml, "budget:\n  watts: 1000\n  watts: 99999\n")
    assert (problem.line, problem.column) == (3, 3)
    assert "duplicate key 'watts' (first at line 2)" in problem.message


def test_yaml_duplicate_key_in_a_flow_mapping_and_a_list_item() -> None:
    assert "duplicate key 'a'" in _problem(loads_yaml, "x: [{a: 1, b: 2, a: 3}]\n").message
    assert _problem(loads_yaml, "- {k: 1}\n- k: 1\n  k: 2\n").line == 3


def test_yaml_merge_keys_may_be_overridden_but_not_repeated() -> None:
    assert loads_yaml("base: &b {watts: 1000, mode: provisioned}\nbudget:\n  <<: *b\n  watts: 900\n")["budget"] == {
        "watts": 900, "mode": "provisioned"}
    repeated = "b: &b {x: 1}\nc:\n  <<: *b\n  watts: 1\n  watts: 2\n"
    assert "duplicate key 'watts'" in _problem(loads_yaml, repeated).message


def test_yaml_keys_of_different_types_are_different_keys() -> None:
    assert loads_yaml("1: a\n'1': b\n") == {1: "a", "1": "b"}


@pytest.mark.parametrize("text", [
    "a: " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1),
    "a: " + "{b: " * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1),
    "".join("  " * i + f"k{i}:\n" for i in range(MAX_DEPTH + 2)),
    "a: " + "[" * 100_000,  # not even closed: refused at depth 65, long before the end
])
def test_yaml_deeper_than_the_limit_is_refused_before_the_recursion(text: str) -> None:
    assert "nested more than 64 levels" in _problem(loads_yaml, text).message


def test_yaml_at_the_depth_limit_loads() -> None:
    data = loads_yaml("a: " + "[" * (MAX_DEPTH - 1) + "1" + "]" * (MAX_DEPTH - 1))
    for _ in range(MAX_DEPTH - 1):
        data = data["a"] if isinstance(data, dict) else data[0]
    assert data == [1] or data == 1


def test_yaml_aliases_are_bounded_by_what_they_expand_to() -> None:
    bomb = "a0: &a0 [1,1,1,1,1,1,1,1,1,1]\n" + "".join(
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 7))
    assert "expands to more than 1,000,000 values" in _problem(loads_yaml, bomb).message
    assert loads_yaml("a: &a [1, 2]\nb: [*a, *a]\n") == {"a": [1, 2], "b": [[1, 2], [1, 2]]}


def test_yaml_aliases_cannot_nest_past_the_depth_limit() -> None:
    chain = "a0: &a0 [[[[[[[[[[1]]]]]]]]]]\n" + "".join(f"a{i}: &a{i} [[[[[[[[[[*a{i - 1}]]]]]]]]]]\n"
                                                          for i in range(1, 8))
    assert "its aliases included" in _problem(loads_yaml, chain).message


def test_yaml_recursive_alias_is_refused() -> None:
    assert "recursive" in _problem(loads_yaml, "a: &a [*a]\n").message


@pytest.mark.parametrize(("text", "reason"), [
    ("a: " + "9" * 5000, "digits"),
    ("a: 2001-02-30", "day is out of range"),
    ("a: 1\n---\nb: 2\n", "another document"),
    ("\x00", "special characters"),
])
def test_yaml_values_the_constructor_refuses_are_one_problem(text: str, reason: str) -> None:
    assert reason in _problem(loads_yaml, text).message


def test_yaml_reads_yaml_1_2_floats_that_yaml_1_1_left_as_text() -> None:
    assert loads_yaml("a: [1e-9, 2.5e3, 1E3, -1e+2, 1.5, 7, '1e3', 1e]") == {
        "a": [1e-9, 2500.0, 1000.0, -100.0, 1.5, 7, "1e3", "1e"]}
    assert yaml.safe_load("a: 1e3") == {"a": "1e3"}  # the global loader is untouched


def test_json_duplicate_key_names_its_line_and_the_first() -> None:
    problem = _problem(loads_json, '{"a": 1,\n "b": {"c": 1,\n  "c": 2}}')
    assert (problem.line, problem.column) == (3, 3)
    assert "duplicate key 'c' (first at line 2)" in problem.message
    assert "duplicate key 'a'" in _problem(loads_json, '{"\\u0061": 1, "a": 2}').message  # same key once decoded


def test_json_same_key_in_sibling_objects_is_fine() -> None:
    assert loads_json('[{"a": 1}, {"a": 2}]') == [{"a": 1}, {"a": 2}]


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"a":' * 100 + "1" + "}" * 100])
def test_json_deeper_than_the_limit_is_refused_before_the_parser(text: str) -> None:
    assert "nested more than 64 levels" in _problem(loads_json, text).message


def test_json_brackets_inside_strings_do_not_count() -> None:
    assert loads_json('{"a": "' + "[" * 500 + '"}') == {"a": "[" * 500}


@pytest.mark.parametrize(("text", "reason"), [('{"a": ' + "9" * 5000 + "}", "digits"), ('{"a": }', "Expecting value")])
def test_json_bad_values_are_one_problem(text: str, reason: str) -> None:
    assert reason in _problem(loads_json, text).message


def _read(path: Path, **kwargs: int) -> str:
    return read_text(path, ConfigError, not_found="not found; pass a file", what="config file", **kwargs)


def test_read_text_refuses_a_file_over_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("a: 1\n" * 100)
    assert _read(path, max_bytes=500) == "a: 1\n" * 100
    with pytest.raises(ConfigError) as info:
        _read(path, max_bytes=499)
    assert info.value.lines == (f"{path}: larger than {499 / 1024 / 1024:g} MiB, the most this input may hold; check "
                                "that it is the right file",)


def test_read_text_refuses_devices_fifos_and_directories(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path, words in ((Path("/dev/zero"), "not a regular file"), (fifo, "not a regular file"),
                        (tmp_path, "is a directory")):
        with pytest.raises(ConfigError) as info:
            _read(path)
        assert len(info.value.lines) == 1 and words in info.value.lines[0]


def test_read_text_missing_and_not_utf8(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found; pass a file"):
        _read(tmp_path / "nope.yaml")
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"a: caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        _read(bad)


def test_read_text_keeps_universal_newlines(tmp_path: Path) -> None:
    path = tmp_path / "crlf.yaml"
    path.write_bytes(b"a: 1\r\nb: 2\rc: 3\n")
    assert _read(path) == "a: 1\nb: 2\nc: 3\n"


def test_read_yaml_and_read_json_say_file_line_and_fix(tmp_path: Path) -> None:
    yml = tmp_path / "c.yaml"
    yml.write_text("a: 1\na: 2\n")
    with pytest.raises(ConfigError) as info:
        read_yaml(yml, ConfigError, not_found="x", what="config file")
    assert info.value.lines[0].startswith(f"{yml}: line 2, column 1: duplicate key 'a'")
    js = tmp_path / "o.json"
    js.write_text('{"a": 1, "a": 2}')
    with pytest.raises(ObservationError) as jinfo:
        read_json(js, ObservationError, not_found="x", what="observation")
    assert jinfo.value.lines[0].startswith(f"{js}: line 1, column 10: duplicate key 'a'")


def test_a_line_break_in_a_key_stays_on_one_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text('budget: {watts: 100}\n"bad\\nkey": 1\n')
    with pytest.raises(UserError) as info:
        load_config(path)
    assert len(info.value.lines) == 1 and "\n" not in info.value.lines[0]
    assert "['bad\\nkey']: unknown field" in info.value.lines[0]
