"""The state file: atomic, never overwrites a recorded original, and whatever is on disk, the agent starts.

Safety properties asserted here: a file that cannot be trusted is kept (a timestamped copy or rename, never
deleted or overwritten) and every GPU of the node then takes NVML's default limit as its original; each entry
is validated against its own GPU; a failed write leaves no temporary file and loses no entry the caller asked
to keep.
"""

from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerplanner.agent import state as state_module
from powerplanner.agent.gpu import GpuInfo
from powerplanner.agent.sim_backend import sim_gpus
from powerplanner.agent.state import MAX_STATE_BYTES, StateFileError, StateStore

NODE = "node-a"
GPUS = [g.info for g in sim_gpus(4)]  # 200..700 W, default 700 W
DEFAULTS = {g.uuid: g.default_limit_watts for g in GPUS}
U0, U1, U2, U3 = (g.uuid for g in GPUS)
CLOCK = 1_780_000_000.0  # a fixed wall clock: two set-asides in the same second must not collide


def store(path: Path, gpus: list[GpuInfo] = GPUS, node: str = NODE) -> StateStore:
    return StateStore(path, node, gpus, wall_clock=lambda: CLOCK)


def asides(path: Path) -> list[Path]:
    return sorted(p for p in path.parent.iterdir() if p.name.startswith(path.name + ".") and p.name.endswith(".bad"))


def test_records_once_and_persists_as_version_2_with_the_node(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.json"
    s = store(path)
    s.record_original(U0, 650)
    s.record_original(U0, 300)  # a later change never overwrites the original
    assert store(path).originals() == {U0: 650.0}
    assert json.loads(path.read_text()) == {"version": 2, "node": NODE, "originals": {U0: 650.0}}
    s.forget(U0)
    assert store(path).originals() == {}
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]  # no temp files left behind


def test_version_1_is_read_as_this_nodes_file_and_rewritten_as_version_2(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": 1, "originals": {U0: 700.0, U1: 650}}))
    s = store(path)
    assert s.originals() == {U0: 700.0, U1: 650.0} and asides(path) == [] and not s.dirty
    s.forget(U0)
    assert json.loads(path.read_text()) == {"version": 2, "node": NODE, "originals": {U1: 650.0}}


def _v2(**changes: Any) -> bytes:
    body: dict[str, Any] = {"version": 2, "node": NODE, "originals": {U0: 650.0}}
    body.update(changes)
    return json.dumps(body).encode()


UNTRUSTED = {
    "empty": b"",
    "blank": b"  \n",
    "not_utf8": b'{"version": 2, "node": "\xff\xfe", "originals": {}}',
    "not_json": b"{not json",
    "truncated": _v2()[:-7],
    "nul_bytes": b"\x00" * 64,
    "not_an_object": b"[1, 2, 3]",
    "version_3": _v2(version=3),
    "version_bool": _v2(version=True),
    "version_missing": json.dumps({"node": NODE, "originals": {}}).encode(),
    "other_node": _v2(node="node-b"),
    "node_missing": json.dumps({"version": 2, "originals": {U0: 650.0}}).encode(),
    "originals_list": _v2(originals=[650.0]),
    "duplicate_keys": b'{"version": 2, "node": "node-a", "originals": {}, "originals": {"x": 1}}',
    "deeply_nested": b"[" * 100_000 + b"]" * 100_000,
}


@pytest.mark.parametrize("raw", list(UNTRUSTED.values()), ids=list(UNTRUSTED))
def test_an_untrusted_file_is_kept_and_every_gpu_takes_its_default(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(raw)
    s = store(path)
    assert s.originals() == DEFAULTS
    [aside] = asides(path)
    assert aside.read_bytes() == raw  # kept byte for byte
    s.flush()  # the corrected file replaces the bad one atomically
    assert json.loads(path.read_text()) == {"version": 2, "node": NODE, "originals": DEFAULTS}
    assert store(path).originals() == DEFAULTS and asides(path) == [aside]


def test_set_asides_never_overwrite_one_another(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    for raw in (b"one", b"two", b"three"):  # three bad files within the same second
        path.write_bytes(raw)
        store(path)
    assert sorted(p.read_bytes() for p in asides(path)) == [b"one", b"three", b"two"]


def test_an_unreadable_path_is_renamed_aside(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.mkdir()  # cannot be read as a file
    (path / "inside").write_text("kept")
    s = store(path)
    assert s.originals() == DEFAULTS
    [aside] = asides(path)
    assert (aside / "inside").read_text() == "kept"
    s.flush()
    assert store(path).originals() == DEFAULTS


def test_a_file_too_large_is_renamed_aside_whole(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(b" " * (MAX_STATE_BYTES + 10))
    assert store(path).originals() == DEFAULTS
    [aside] = asides(path)
    assert aside.stat().st_size == MAX_STATE_BYTES + 10


def test_each_entry_is_validated_on_its_own(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    raw = (
        '{"version": 2, "node": "node-a", "originals": {'
        f'"{U0}": NaN, "{U1}": -5, "{U2}": 5000, "{U3}": 300, "GPU-elsewhere": 250, "GPU-gone": Infinity, '
        '"GPU-bool": true}}'
    ).encode()
    path.write_bytes(raw)
    s = store(path)
    # NaN, negative and out-of-range entries take their GPU's default; the good ones are kept; an entry of a
    # GPU this node does not have is kept when it is a number of watts (the GPU may come back), else dropped.
    assert s.originals() == {U0: 700.0, U1: 700.0, U2: 700.0, U3: 300.0, "GPU-elsewhere": 250.0}
    [aside] = asides(path)
    assert aside.read_bytes() == raw
    s.flush()
    assert store(path).originals() == s.originals() and len(asides(path)) == 1


def test_a_value_the_gpu_reports_out_of_range_is_recorded_as_its_default(tmp_path: Path) -> None:
    s = store(tmp_path / "state.json")
    s.record_original(U0, float("nan"))
    s.record_original(U1, 9000)
    assert s.originals() == {U0: 700.0, U1: 700.0}


def _fail_fsync(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_space(_fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(state_module.os, "fsync", no_space)


def test_a_failed_write_leaves_no_temporary_file_and_the_old_file_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.json"
    s = store(path)
    s.record_original(U0, 650)
    before = path.read_bytes()
    with monkeypatch.context() as patch:
        _fail_fsync(patch)
        with pytest.raises(StateFileError, match="No space left"):
            s.record_original(U1, 600)
        with pytest.raises(StateFileError):
            s.forget(U0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]
    assert path.read_bytes() == before
    assert s.originals() == {U0: 650.0} and not s.dirty  # the dropped entry and the failed forget are undone


def test_an_entry_kept_when_unsaved_is_written_by_the_next_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.json"
    s = store(path)
    with monkeypatch.context() as patch:
        _fail_fsync(patch)
        with pytest.raises(StateFileError):
            s.record_original(U1, 600, keep_if_unsaved=True)
        assert s.original(U1) == 600.0 and s.dirty
        with pytest.raises(StateFileError):
            s.flush()
    assert not path.exists() and list(tmp_path.iterdir()) == []
    s.flush()  # the disk accepts writes again
    assert store(path).originals() == {U1: 600.0} and not s.dirty


def test_an_untrusted_file_that_cannot_be_set_aside_is_never_overwritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(b"garbage")

    def refuse(_path: Path, _raw: bytes) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    with monkeypatch.context() as patch:
        patch.setattr(StateStore, "_write_new", staticmethod(refuse))
        s = store(path)
        assert s.originals() == DEFAULTS
        with pytest.raises(StateFileError, match="never overwritten"):
            s.flush()
        with pytest.raises(StateFileError, match="never overwritten"):
            s.forget(U0)
        assert path.read_bytes() == b"garbage" and s.original(U0) == 700.0
    s.flush()  # set aside now, then written
    [aside] = asides(path)
    assert aside.read_bytes() == b"garbage" and store(path).originals() == DEFAULTS


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
ENTRY = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10_000), JSON)
KEYS = st.sampled_from([U0, U1, U2, U3, "GPU-other"]) | st.text(max_size=6)
DOCUMENTS = st.one_of(
    st.binary(max_size=200),
    JSON.map(lambda doc: json.dumps(doc).encode()),
    st.fixed_dictionaries(
        {"version": st.sampled_from([1, 2, 2, 3, True, "2"]), "node": st.sampled_from([NODE, NODE, "node-b", 7]),
         "originals": st.dictionaries(KEYS, ENTRY, max_size=6)},
    ).map(lambda doc: json.dumps(doc).encode()),
    st.dictionaries(KEYS, ENTRY, max_size=6).map(
        lambda entries: json.dumps({"version": 2, "node": NODE, "originals": entries}).encode()
    ),
)


@settings(max_examples=300, deadline=None)
@given(DOCUMENTS, st.booleans())
def test_any_file_loads_or_is_set_aside_and_never_raises(raw: bytes, truncate: bool) -> None:
    raw = raw[: len(raw) // 2] if truncate else raw
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "state.json"
        path.write_bytes(raw)
        s = store(path)
        originals = s.originals()
        by_uuid = {g.uuid: g for g in GPUS}
        for uuid, watts in originals.items():
            assert math.isfinite(watts) and watts > 0
            if uuid in by_uuid:
                assert by_uuid[uuid].min_limit_watts <= watts <= by_uuid[uuid].max_limit_watts
        kept = asides(path)
        if kept:  # anything not taken as it was is kept byte for byte, and the store wants to rewrite it
            assert [p.read_bytes() for p in kept] == [raw] and s.dirty
        else:
            assert path.read_bytes() == raw and not s.dirty
        s.flush()
        s.record_original(U0, 650)  # the store works whatever it started from
        assert store(path).originals() == s.originals()
        assert not [p for p in Path(tmp).iterdir() if p.name.endswith(".tmp")]
