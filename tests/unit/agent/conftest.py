"""Fixtures for the agent's unit tests (the world they build is tests/support/agent_world.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.agent_world import World, make_world


@pytest.fixture()
def world(tmp_path: Path) -> World:
    return make_world(tmp_path / "state.json")
