"""The state file: atomic, never overwrites a recorded original, survives a corrupt file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from powerplanner.agent.state import StateFileError, StateStore


def test_records_once_and_persists(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.json"
    store = StateStore(path)
    store.record_original("GPU-a", 700)
    store.record_original("GPU-a", 300)  # a later change never overwrites the original
    assert StateStore(path).originals() == {"GPU-a": 700.0}
    assert json.loads(path.read_text()) == {"version": 1, "originals": {"GPU-a": 700.0}}
    store.forget("GPU-a")
    assert StateStore(path).originals() == {}
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]  # no temp files left behind


def test_corrupt_file_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("{not json")
    assert StateStore(path).originals() == {}
    assert (tmp_path / "state.json.corrupt").exists()


def test_unwritable_location_raises_and_keeps_memory_consistent(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    store = StateStore(tmp_path / "file" / "state.json")
    with pytest.raises(StateFileError):
        store.record_original("GPU-a", 700)
    assert store.originals() == {}
