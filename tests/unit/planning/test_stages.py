"""The planner's stages on their own: sanitise, classify and the forecaster's memory."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from powerplanner.core_settings import planner_settings
from powerplanner.model.roles import ROLES
from powerplanner.model.values import Observation, RoleState
from powerplanner.planning.data_state import DataState, classify
from powerplanner.planning.forecaster import Forecaster
from powerplanner.planning.sanitise import finite, sanitise
from tests.support.planner_inputs import make_config, obs

_ANY = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5), st.booleans())
_COUNT = st.one_of(st.integers(-3, 9), st.floats(allow_nan=True), st.booleans())


@st.composite
def _observations(draw: st.DrawFn) -> Observation:
    """Any values in any field, the way a broken metrics source or a hand-written observation file gives them."""
    def role() -> RoleState:
        counts: dict[str, Any] = {name: draw(_COUNT) for name in ("ready_replicas", "starting_replicas",
                                                                   "draining_replicas")}
        counts["gpus_per_replica"] = draw(st.one_of(st.none(), _COUNT))
        return RoleState(**counts, applied_cap_watts=draw(_ANY), measured_draw_watts=draw(_ANY))

    values: dict[str, Any] = {name: draw(_ANY) for name in ("time_s", "request_rate_per_s", "isl_tokens", "osl_tokens",
                                                            "ttft_ms", "itl_ms", "budget_watts",
                                                            "measured_power_watts")}
    return Observation(**values, window_s=60.0, prefill=role(), decode=role(), source_ok=draw(st.booleans()))


@given(_observations())
def test_sanitised_observations_hold_only_usable_numbers(raw: Observation) -> None:
    clean = sanitise(raw, 1234.0, 60.0).obs
    assert finite(clean.budget_watts) and clean.budget_watts > 0
    assert finite(clean.time_s)
    for value in (clean.request_rate_per_s, clean.ttft_ms, clean.itl_ms, clean.measured_power_watts):
        assert value is None or (finite(value) and value >= 0)
    for value in (clean.isl_tokens, clean.osl_tokens):
        assert value is None or (finite(value) and value > 0)
    for role in ROLES:
        rs = clean.role(role)
        for count in (rs.ready_replicas, rs.starting_replicas, rs.draining_replicas):
            assert isinstance(count, int) and not isinstance(count, bool) and count >= 0
        assert rs.applied_cap_watts is None or rs.applied_cap_watts > 0
        assert rs.gpus_per_replica is None or (type(rs.gpus_per_replica) is int and rs.gpus_per_replica >= 1)


@given(_observations())
def test_every_replaced_value_is_named(raw: Observation) -> None:
    sane = sanitise(raw, 1234.0, 60.0)
    if sane.obs != raw:
        assert sane.problems
    assert sanitise(sane.obs, 1234.0, 60.0).obs == sane.obs  # idempotent: the clean one needs no fixing


@given(rate=st.one_of(st.none(), st.just(math.nan), st.floats(-10, -1e-9)), source_ok=st.booleans())
def test_no_rate_is_never_idle(rate: float | None, source_ok: bool) -> None:
    raw = obs(rate=rate, source_ok=source_ok)
    state = classify(raw, sanitise(raw, 1.0, 0.0).obs, 0.5, 0.05)
    assert state is (DataState.MISSING if source_ok else DataState.SOURCE_ERROR)


@given(ttft_ms=st.one_of(st.none(), st.floats(0, 5000)), itl_ms=st.one_of(st.none(), st.floats(0, 500)))
def test_a_zero_rate_is_idle_unless_latency_says_a_backlog_is_served(ttft_ms: float | None,
                                                                     itl_ms: float | None) -> None:
    raw = obs(rate=0.0, ttft_ms=ttft_ms, itl_ms=itl_ms)
    over = (ttft_ms is not None and ttft_ms / 1000.0 > 0.5) or (itl_ms is not None and itl_ms / 1000.0 > 0.05)
    assert classify(raw, raw, 0.5, 0.05) is (DataState.BACKLOG if over else DataState.IDLE)


def test_cap_ticks_do_not_teach_the_forecaster() -> None:
    forecaster = Forecaster(planner_settings(make_config(predictor={"kind": "constant", "warmup_ticks": 0})))
    first = forecaster.adjust(obs(rate=4.0), DataState.OK, None)
    assert first is not None and first.request_rate_per_s == 4.0
    surge = forecaster.cap_tick(obs(rate=9.0), DataState.OK, None)
    assert surge is not None and surge.request_rate_per_s == 9.0  # caps follow the surge now
    lull = forecaster.cap_tick(obs(rate=1.0), DataState.OK, None)
    assert lull == first  # but the interval's forecast is untouched by either,
    assert forecaster.adjust(obs(rate=None), DataState.MISSING, None) == first  # and so are the predictors


def test_idle_restart_forgets_the_load_but_keeps_the_lengths() -> None:
    forecaster = Forecaster(planner_settings(make_config(predictor={"kind": "constant"})))
    forecaster.adjust(obs(rate=4.0, isl=1500.0, osl=200.0), DataState.OK, None)
    for expected in (1, 2):
        forecaster.adjust(obs(rate=0.0), DataState.IDLE, None)
        assert forecaster.idle_ticks == expected
    idle = forecaster.restart_for_idle()
    assert (idle.request_rate_per_s, idle.isl_tokens, idle.osl_tokens) == (0.0, 1500.0, 200.0)
    assert forecaster.cap_tick(obs(rate=0.0), DataState.IDLE, None) is None  # no interval forecast any more
    assert forecaster.adjust(obs(rate=0.0), DataState.BACKLOG, None) is None and forecaster.idle_ticks == 0
