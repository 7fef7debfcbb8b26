"""Every loader of a user's file, fed random and hostile documents: a clean UserError or a result, nothing else.

Hostile means what a user (or an attacker with write access to a ConfigMap) can put in a file: random bytes,
nesting thousands deep, alias bombs, duplicate keys, booleans and text where numbers go, numbers of thousands
of digits, NaN, lists where mappings go, a file larger than the limit, a device, a FIFO. The loaders are called
through their public functions on files in a temporary directory, as the CLI calls them.
"""

from __future__ import annotations

import copy
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from powerplanner.config import load_agent_config, load_config
from powerplanner.errors import UserError
from powerplanner.input_files import MAX_DOCUMENT_BYTES
from powerplanner.model.capped import CappedProfile
from powerplanner.model.loaders import load_profile_path
from powerplanner.model.profile_format import document_from_profile
from powerplanner.model.profiles import load_profile
from powerplanner.observation_schema import load_observation
from powerplanner.sim.scenario_file import load_scenario
from powerplanner.sim.scenarios import Scenario, TraceSpec
from powerplanner.sim.traces import MAX_TRACE_BYTES
from tests.support import dynamo_data

CONFIG: dict[str, Any] = {
    "budget": {"watts": 16000, "schedule": [{"start": "08:00", "watts": 12000}], "headroom": 0.05},
    "planner": {"cap_interval_s": 5, "adjustment_interval_s": 60, "prefill": {"min_replicas": 1, "max_replicas": 4},
                "static_caps_watts": {"decode": 500}},
    "prometheus": {"window_s": 60, "timeout_s": 2, "retries": 1},
    "agent": {"resync_s": 30, "allowed_namespaces": ["dynamo"], "park": True},
}
SCENARIO: dict[str, Any] = {
    "name": "h",
    "trace": {"synthetic": {"duration_s": 60, "mean_rate_per_s": 1, "isl": {"fixed": 100}, "osl": {"fixed": 10},
                            "shape": [{"kind": "burst", "starts_s": [10], "width_s": 5, "factor": 2}]}},
    "budget": {"watts": 20000},
    "planner": {"cap_interval_s": 5},
    "sim": {"replica_start_s": 30, "drain_limit_s": 60},
}
OBSERVATION: dict[str, Any] = {
    "time_s": 0, "window_s": 60, "request_rate_per_s": 6.0, "isl_tokens": 2000, "osl_tokens": 300,
    "budget_watts": 14000, "prefill": {"ready_replicas": 1, "applied_cap_watts": 700},
    "decode": {"ready_replicas": 4, "applied_cap_watts": 700},
}
MOONCAKE = [{"timestamp": 1000 * i, "input_length": 100 + i, "output_length": 10, "hash_ids": [i, i + 1]}
            for i in range(4)]
AZURE = [["TIMESTAMP", "ContextTokens", "GeneratedTokens"],
         *[[f"2023-11-16 18:15:{40 + i:02d}.0000000", str(100 + i), "20"] for i in range(4)]]


def _profile_document() -> dict[str, Any]:
    profile = load_profile("llama2-70b-h100-tp4")
    assert isinstance(profile, CappedProfile)
    return document_from_profile(profile)


PROFILE = _profile_document()


def _dynamo_document() -> dict[str, Any]:
    prefill, decode = dynamo_data.arrays()
    both = {k: v.tolist() for k, v in {**prefill, **decode}.items()}
    both["max_kv_tokens"] = both["max_kv_tokens"][0]
    return both


DYNAMO = _dynamo_document()  # Dynamo's profiler raw data, both halves in one JSON file


def _load_trace(path: Path) -> object:
    """What ``powerplanner simulate --trace`` does with the file (read, span and gap checks, rate scale)."""
    return Scenario(name="h", trace=TraceSpec(path=str(path))).load_trace()


# name -> (file suffix, loader, base document, serializer of a (mutated) document)
Loader = tuple[str, Callable[[Path], object], Any, Callable[[Any], str]]


def _yaml(doc: Any) -> str:
    return yaml.safe_dump(doc, sort_keys=False)


def _json(doc: Any) -> str:
    return json.dumps(doc)


def _jsonl(doc: Any) -> str:
    rows = doc if isinstance(doc, list) else [doc]
    return "".join(json.dumps(row) + "\n" for row in rows)


def _csv(doc: Any) -> str:
    rows = doc if isinstance(doc, list) else [doc]
    return "".join(",".join(str(c) for c in (r if isinstance(r, list) else [r])) + "\n" for r in rows)


LOADERS: dict[str, Loader] = {
    "config": (".yaml", load_config, CONFIG, _yaml),
    "agent-config": (".yaml", load_agent_config, CONFIG, _yaml),
    "scenario": (".yaml", lambda p: load_scenario(str(p)), SCENARIO, _yaml),
    "observation": (".json", load_observation, OBSERVATION, _json),
    "profile-yaml": (".yaml", lambda p: load_profile_path(str(p)), PROFILE, _yaml),
    "profile-json": (".json", lambda p: load_profile_path(str(p)), PROFILE, _json),
    "dynamo-json": (".json", lambda p: load_profile_path(str(p), gpu="H200-SXM"), DYNAMO, _json),
    "mooncake": (".jsonl", _load_trace, MOONCAKE, _jsonl),
    "azure": (".csv", _load_trace, AZURE, _csv),
}

def _nested_list(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


DEEP_LIST = _nested_list(70)  # past the depth limit, yet serialisable by yaml and json

STRUCTURES = st.sampled_from([DEEP_LIST, {"a": {"b": {"c": [1, {"d": None}]}}}, [], {}, [1, 2.5, "x"]])
HOSTILE_LEAVES = st.one_of(
    st.booleans(), st.none(),
    st.sampled_from([0, -1, 10**30, 2**63, 1e-9, 1e300, -0.0, math.nan, math.inf, -math.inf, 0.5]),
    st.sampled_from(["", " ", "5000", "1e3", "true", "NaN", "08:00", "-", "\x00", "llama2-70b-h100-tp4"]),
    st.integers(), st.floats(), st.text(max_size=12), STRUCTURES,
)
VALUES = st.recursive(HOSTILE_LEAVES, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


@st.composite
def _mutated(draw: st.DrawFn, doc: Any) -> Any:
    """``doc`` with one to three of its values (at any depth) replaced by hostile ones, keys added or dropped."""

    def once(node: Any) -> Any:
        if isinstance(node, dict) and node and draw(st.integers(0, 7)):  # mostly descend: reach the leaves
            key = draw(st.sampled_from(sorted(node, key=str)))
            action = draw(st.sampled_from(["descend", "descend", "drop", "add"]))
            if action == "drop":
                node.pop(key)
            elif action == "add":
                node[draw(st.text(max_size=8))] = copy.deepcopy(draw(VALUES))
            else:
                node[key] = once(node[key])
            return node
        if isinstance(node, list) and node and draw(st.integers(0, 7)):
            i = draw(st.integers(0, len(node) - 1))
            node[i] = once(node[i])
            return node
        return copy.deepcopy(draw(VALUES))  # never the shared st.just objects: they are mutated next

    out = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 3))):
        out = once(out)
    return out


def _alias_bomb(levels: int) -> str:
    lines = ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@st.composite
def _raw_text(draw: st.DrawFn, base: str) -> bytes:
    """Hostile text: random bytes, deep nesting, alias bombs, a recursive alias, duplicated lines (duplicate
    keys), digits by the thousand, a base document cut short or spliced with junk."""
    n = draw(st.integers(60, 20000))
    kind = draw(st.sampled_from(["bytes", "deep-flow", "deep-object", "deep-block", "bomb", "recursive", "dup-line",
                                 "digits", "cut", "splice", "anchors"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "deep-flow":
        return ("[" * n + "]" * n).encode()
    if kind == "deep-object":
        return ('{"a":' * n + "1" + "}" * n).encode()
    if kind == "deep-block":
        return "".join("  " * i + f"k{i}:\n" for i in range(min(n, 400))).encode()
    if kind == "bomb":
        return _alias_bomb(draw(st.integers(3, 9))).encode()
    if kind == "recursive":
        return b"a: &a [*a, 1]\nbudget: &b {watts: *b}\n"
    if kind == "digits":
        return f"budget: {{watts: {'9' * n}}}\n{{\"budget_watts\": {'9' * n}}}\n".encode()
    if kind == "anchors":
        return b"base: &b {watts: 1000}\nbudget:\n  <<: *b\n  watts: 900\n"
    lines = base.splitlines(keepends=True) or [""]
    if kind == "dup-line":
        i = draw(st.integers(0, len(lines) - 1))
        lines.insert(i, lines[i])
        return "".join(lines).encode()
    if kind == "cut":
        return base.encode()[: draw(st.integers(0, len(base.encode())))]
    junk = draw(st.binary(max_size=40))
    at = draw(st.integers(0, len(base.encode())))
    return base.encode()[:at] + junk + base.encode()[at:]


def _assert_clean(path: Path, loader: Callable[[Path], object]) -> None:
    try:
        loader(path)
    except UserError as exc:
        assert exc.lines, "a UserError with no line"
        for line in exc.lines:
            assert isinstance(line, str) and line.strip(), f"an empty error line: {exc.lines!r}"
            assert "\n" not in line and "Traceback" not in line, line


def _write(directory: str, suffix: str, data: bytes) -> Path:
    path = Path(directory) / f"input{suffix}"
    path.write_bytes(data)
    return path


SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                         HealthCheck.data_too_large])


@pytest.mark.parametrize("name", sorted(LOADERS))
@SETTINGS
@given(data=st.data())
def test_mutated_documents_load_or_fail_cleanly(name: str, data: st.DataObject) -> None:
    suffix, loader, base, dump = LOADERS[name]
    doc = data.draw(_mutated(base), label="document")
    try:
        text = dump(doc)
    except (yaml.YAMLError, ValueError, TypeError, RecursionError):
        return  # not serialisable as this format (e.g. a key that is not a string): nothing a user can write
    with tempfile.TemporaryDirectory() as directory:
        _assert_clean(_write(directory, suffix, text.encode("utf-8", "surrogatepass")), loader)


@pytest.mark.parametrize("name", sorted(LOADERS))
@SETTINGS
@given(data=st.data())
def test_hostile_text_loads_or_fails_cleanly(name: str, data: st.DataObject) -> None:
    suffix, loader, base, dump = LOADERS[name]
    raw = data.draw(_raw_text(dump(base)), label="text")
    with tempfile.TemporaryDirectory() as directory:
        _assert_clean(_write(directory, suffix, raw), loader)


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_unreadable_kinds_of_file_fail_with_one_line(name: str, tmp_path: Path) -> None:
    """A file over the size limit (sparse: no disk used), /dev/zero (never ends), a FIFO (would block), a
    directory: one line each, and the FIFO is not waited on."""
    suffix, loader, _, _ = LOADERS[name]
    huge = tmp_path / f"huge{suffix}"
    with huge.open("wb") as handle:
        handle.truncate(max(MAX_DOCUMENT_BYTES, MAX_TRACE_BYTES if suffix in (".jsonl", ".csv") else 0) + 1)
    fifo = tmp_path / f"fifo{suffix}"
    os.mkfifo(fifo)
    zero = tmp_path / f"zero{suffix}"
    zero.symlink_to("/dev/zero")
    folder = tmp_path / f"dir{suffix}"
    folder.mkdir()
    expected = {huge: "larger than", fifo: "not a regular file", zero: "not a regular file", folder: "directory"}
    for path, words in expected.items():
        with pytest.raises(UserError) as info:
            loader(path)
        assert len(info.value.lines) == 1, info.value.lines
        assert words in info.value.lines[0] and str(path) in info.value.lines[0]


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_the_base_documents_load(name: str, tmp_path: Path) -> None:
    """The hostile tests start from documents that load: a mutation, not the base, is what fails."""
    suffix, loader, base, dump = LOADERS[name]
    assert loader(_write(str(tmp_path), suffix, dump(base).encode())) is not None
