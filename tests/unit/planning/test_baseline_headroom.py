"""``planner.baseline_replica_headroom``: every baseline's over-provisioning knob (the headline bench's energy at
equal SLO sets it; docs/simulator.md, "Headline")."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerplanner.core_settings import build_planner
from powerplanner.errors import ConfigError
from powerplanner.model.values import RoleState
from tests.support.planner_inputs import make_config, obs
from tests.support.profiles import FakeProfile

SIZED = ("dynamo-sla", "dynamo-power", "proportional", "dynamo-1.6")
BUDGET_W = 1e7  # never binds: the sizing alone shows


def _replicas(policy: str, headroom: float, rate: float) -> tuple[int, int]:
    config = make_config(budget_watts=BUDGET_W, baseline_replica_headroom=headroom)
    d = build_planner(config, FakeProfile(), policy).tick(obs(budget=BUDGET_W, rate=rate))
    return d.prefill.replicas, d.decode.replicas


@settings(max_examples=25, deadline=None)
@given(policy=st.sampled_from(SIZED), headroom=st.floats(1.0, 3.0), rate=st.floats(0.5, 15.0))
def test_headroom_sizes_as_for_that_multiple_of_the_load(policy: str, headroom: float, rate: float) -> None:
    """Headroom h at rate r sizes exactly as headroom 1 at rate h x r (the forecast's lengths unchanged)."""
    assert _replicas(policy, headroom, rate) == _replicas(policy, 1.0, headroom * rate)


@pytest.mark.parametrize("policy", SIZED)
def test_headroom_adds_replicas(policy: str) -> None:
    base = _replicas(policy, 1.0, 10.0)
    more = _replicas(policy, 2.0, 10.0)
    assert more[0] > base[0] and more[1] > base[1]


def test_static_holds_its_initial_replicas_times_the_headroom() -> None:
    planner = build_planner(make_config(baseline_replica_headroom=1.5), FakeProfile(), "static")
    start = dict(prefill=RoleState(3, applied_cap_watts=400.0), decode=RoleState(4, applied_cap_watts=400.0))
    d = planner.tick(obs(**start))  # type: ignore[arg-type]
    assert (d.prefill.replicas, d.decode.replicas) == (5, 6)  # ceil(4.5), 6


def test_ours_ignores_the_baseline_headroom() -> None:
    one = build_planner(make_config(), FakeProfile(), "ours").tick(obs(rate=10.0))
    two = build_planner(make_config(baseline_replica_headroom=2.0), FakeProfile(), "ours").tick(obs(rate=10.0))
    assert (one.prefill, one.decode) == (two.prefill, two.decode)


@pytest.mark.parametrize("bad", [0.5, 0.0, 11.0])
def test_headroom_below_one_or_absurd_is_refused(bad: float) -> None:
    with pytest.raises(ConfigError, match="baseline_replica_headroom"):
        make_config(baseline_replica_headroom=bad)
