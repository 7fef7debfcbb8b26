"""The loop says what the planner cannot trust: missing load data and a GPU-count mismatch (gauge every tick,
log line and Warning Event once per episode), with the real Planner and in-memory collaborators."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import generate_latest

from powerplanner.config import config_from_mapping
from powerplanner.core_settings import build_planner
from powerplanner.live.budget import CompositeBudget, StaticBudget
from powerplanner.live.clock import FakeClock
from powerplanner.live.loop import LiveLoop, LoopSettings
from powerplanner.live.observe import build_observation
from powerplanner.live.prometheus import MetricsReading
from powerplanner.model.roles import ROLES, Role
from powerplanner.model.values import Reason, StepKind
from tests.support.live_fakes import FakeActuator, FakeMetrics
from tests.support.profiles import FakeProfile

BUDGET_WATTS = 16_000.0
NO_RATE = MetricsReading(None, None, None, None, None)  # the frontend series are absent (or NaN)


def make_loop(actuator: FakeActuator, metrics: FakeMetrics, missing_ticks: int = 3) -> tuple[LiveLoop, FakeClock]:
    config = config_from_mapping({"budget": {"watts": BUDGET_WATTS},
                                  "planner": {"adjustment_interval_s": 30, "cap_interval_s": 5}})
    clock = FakeClock()
    loop = LiveLoop(build_planner(config, FakeProfile()), metrics, actuator,
                    CompositeBudget([StaticBudget(BUDGET_WATTS)]), clock,
                    LoopSettings(cap_interval_s=5.0, window_s=30.0, metrics_missing_ticks=missing_ticks))
    return loop, clock


def gauge(loop: LiveLoop, name: str) -> float:
    for line in generate_latest(loop.telemetry.registry).decode().splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


def test_observation_carries_the_deployed_gpus_per_replica() -> None:
    act = FakeActuator(gpus_per_replica=8)
    obs = build_observation(0.0, 30.0, MetricsReading(1.0, 1000.0, 100.0, None, None), act.read_state(), 9000.0)
    assert obs.prefill.gpus_per_replica == obs.decode.gpus_per_replica == 8


def test_gpu_count_mismatch_only_cuts_and_is_said_on_every_tick(caplog: pytest.LogCaptureFixture) -> None:
    # 3 + 2 replicas of 8 GPUs at an unknown cap (700 W): 28,000 W provisioned against 16,000 W
    act = FakeActuator(replicas={Role.PREFILL: 3, Role.DECODE: 2}, gpus_per_replica=8)
    busy = MetricsReading(40.0, 2000.0, 300.0, 150.0, 30.0)  # traffic that the profile would scale up for
    loop, clock = make_loop(act, FakeMetrics(default=busy))
    caplog.set_level(logging.WARNING, logger="powerplanner.live.loop")
    previous = {role: (act.replicas[role], 700.0) for role in ROLES}
    for _ in range(12):
        report = loop.tick()
        assert report.decision is not None and Reason.GPU_COUNT_MISMATCH in report.decision.reasons
        assert gauge(loop, "powerplanner_gpu_count_mismatch") == 1.0
        for o in report.outcomes:
            replicas, cap = previous[o.step.role]
            if o.step.kind is StepKind.SCALE:
                assert o.step.value <= replicas, o
            else:
                assert o.step.value <= cap, o
        previous = {role: (act.replicas[role], float(act.caps[role] or 700)) for role in ROLES}
        clock.advance(5)
    assert sum(act.replicas[r] * 8 * (act.caps[r] or 700) for r in ROLES) <= BUDGET_WATTS
    assert [e[0] for e in act.events if e[0] == "GpuCountMismatch"] == ["GpuCountMismatch"]  # once per episode
    event = next(e for e in act.events if e[0] == "GpuCountMismatch")
    assert event[2] is True and "8 GPU(s) per replica" in event[1] and "assumes 4" in event[1]
    warned = [r.getMessage() for r in caplog.records if "GPU(s) per replica" in r.getMessage()]
    assert len(warned) == 1
    act.gpus_per_replica = 4  # the DGD now matches the profile
    report = loop.tick()
    assert report.decision is not None and Reason.GPU_COUNT_MISMATCH not in report.decision.reasons
    assert gauge(loop, "powerplanner_gpu_count_mismatch") == 0.0


def test_missing_metrics_hold_and_are_reported_after_n_ticks(caplog: pytest.LogCaptureFixture) -> None:
    act = FakeActuator(replicas={Role.PREFILL: 2, Role.DECODE: 2}, caps={Role.PREFILL: 400, Role.DECODE: 400})
    metrics = FakeMetrics(readings=[NO_RATE] * 8)
    loop, clock = make_loop(act, metrics, missing_ticks=3)
    caplog.set_level(logging.WARNING, logger="powerplanner.live.loop")
    seen = []
    for tick in range(8):
        report = loop.tick()
        assert report.decision is not None and Reason.METRICS_MISSING in report.decision.reasons
        seen.append(gauge(loop, "powerplanner_metrics_missing"))
        assert (act.replicas[Role.PREFILL], act.replicas[Role.DECODE]) == (2, 2), tick  # held, never scaled down
        assert all(c is not None and c <= 400 for c in act.caps.values())
        clock.advance(15)  # an adjustment tick every other tick
    assert seen == [0.0, 0.0] + [1.0] * 6
    missing = [e for e in act.events if e[0] == "MetricsMissing"]
    assert len(missing) == 1 and missing[0][2] is True and "requests counter is absent or NaN" in missing[0][1]
    assert sum("load metrics missing" in r.getMessage() for r in caplog.records) == 1
    loop.tick()  # the default reading: traffic again
    assert gauge(loop, "powerplanner_metrics_missing") == 0.0
    assert [e[0] for e in act.events if e[0] in ("MetricsMissing", "MetricsRecovered")] == [
        "MetricsMissing", "MetricsRecovered"]


def test_a_short_gap_raises_nothing() -> None:
    act = FakeActuator(replicas={Role.PREFILL: 2, Role.DECODE: 2})
    loop, clock = make_loop(act, FakeMetrics(readings=[NO_RATE, NO_RATE]), missing_ticks=3)
    for _ in range(4):
        loop.tick()
        clock.advance(5)
    assert gauge(loop, "powerplanner_metrics_missing") == 0.0
    assert not [e for e in act.events if e[0] in ("MetricsMissing", "MetricsRecovered")]


def test_a_failing_source_counts_as_missing_data_too() -> None:
    bad = MetricsReading(None, None, None, None, None, source_ok=False, source_error="prometheus timeout: slow",
                         error_kind="timeout")
    act = FakeActuator()
    loop, clock = make_loop(act, FakeMetrics(readings=[bad] * 2), missing_ticks=2)
    for _ in range(2):
        loop.tick()
        clock.advance(5)
    assert gauge(loop, "powerplanner_metrics_missing") == 1.0
    reasons = [e[0] for e in act.events if e[0].startswith("Metrics")]
    assert reasons == ["MetricsUnavailable", "MetricsMissing"]
    assert "Prometheus fault" in next(e[1] for e in act.events if e[0] == "MetricsMissing")
