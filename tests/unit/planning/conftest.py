"""Fixtures for the planner tests: a config and the fake profile (builders in tests/support/)."""

from __future__ import annotations

import pytest

from powerplanner.config import Config
from tests.support.planner_inputs import make_config
from tests.support.profiles import FakeProfile


@pytest.fixture
def profile() -> FakeProfile:
    return FakeProfile()


@pytest.fixture
def config() -> Config:
    return make_config()
