"""The run loop and step execution with in-memory collaborators and a fake clock."""

from __future__ import annotations

import threading
from datetime import datetime

from prometheus_client import generate_latest

from powerplanner.kube.errors import KubeErrorKind, Timeout
from powerplanner.live.actuation import execute
from powerplanner.live.budget import AdminBudget, BudgetReading, CompositeBudget, StaticBudget
from powerplanner.live.clock import FakeClock
from powerplanner.live.loop import LiveLoop, LoopSettings
from powerplanner.live.observe import build_observation
from powerplanner.live.prometheus import MetricsReading, PrometheusErrorKind
from powerplanner.model.roles import Role
from tests.support.live_fakes import FakeActuator, FakeMetrics, StepPlanner, cap, scale


def make_loop(planner: StepPlanner, actuator: FakeActuator, metrics: FakeMetrics | None = None,
              dry_run: bool = False, admin: AdminBudget | None = None) -> tuple[LiveLoop, FakeClock]:
    clock = FakeClock()
    sources = [StaticBudget(10000.0)] + ([admin] if admin else [])
    loop = LiveLoop(planner, metrics or FakeMetrics(), actuator, CompositeBudget(sources), clock,
                    LoopSettings(cap_interval_s=5.0, window_s=60.0, dry_run=dry_run))
    return loop, clock


def test_steps_run_in_order_and_events_are_emitted() -> None:
    act = FakeActuator(caps={Role.PREFILL: 250, Role.DECODE: 250})  # raises only: nothing waits for a cut
    planner = StepPlanner((cap(Role.DECODE, 300), scale(Role.PREFILL, 2), cap(Role.PREFILL, 450)))
    loop, _ = make_loop(planner, act)
    report = loop.tick()
    assert act.calls == [("set_cap", Role.DECODE, 300), ("scale", Role.PREFILL, 2), ("set_cap", Role.PREFILL, 450)]
    assert [o.outcome for o in report.outcomes] == ["done"] * 3
    assert [e[0] for e in act.events] == ["PowerPlanApplied"]
    text = generate_latest(loop.telemetry.registry).decode()  # the outcome enum's values are the label values
    assert 'powerplanner_steps_total{kind="set_cap",outcome="done"} 2.0' in text
    assert 'powerplanner_steps_total{kind="scale",outcome="done"} 1.0' in text
    loop.tick()  # the planner repeats the same steps: nothing changes, no new event
    assert [e[0] for e in act.events] == ["PowerPlanApplied"]


def test_dry_run_touches_nothing() -> None:
    act = FakeActuator()
    loop, _ = make_loop(StepPlanner((cap(Role.DECODE, 300), scale(Role.PREFILL, 2))), act, dry_run=True)
    report = loop.tick()
    assert act.calls == [] and act.events == []
    assert [o.outcome for o in report.outcomes] == ["dry_run", "dry_run"]
    assert loop.last_decision_json()["dry_run"] is True


def test_not_ready_dgd_only_cuts_power() -> None:
    act = FakeActuator(replicas={Role.PREFILL: 2, Role.DECODE: 2}, caps={Role.PREFILL: 500, Role.DECODE: 500},
                       ready=False)
    steps = (cap(Role.DECODE, 300), scale(Role.PREFILL, 1), scale(Role.DECODE, 3), cap(Role.PREFILL, 600))
    outcomes = execute(steps, act.read_state(), act, {Role.PREFILL: 500.0, Role.DECODE: 500.0})
    assert [o.outcome for o in outcomes] == ["done", "done", "skipped", "skipped"]
    assert "not Ready" in outcomes[2].detail


def test_wait_for_drain_and_stop_after_failure() -> None:
    act = FakeActuator(replicas={Role.PREFILL: 2, Role.DECODE: 2})
    steps = (scale(Role.DECODE, 1), scale(Role.PREFILL, 3, wait=True), cap(Role.PREFILL, 400))
    outcomes = execute(steps, act.read_state(), act, {})
    assert [o.outcome for o in outcomes] == ["done", "skipped", "done"]  # this tick's scale-down is draining
    act.fail_on.add("set_cap")
    outcomes = execute((cap(Role.DECODE, 300), scale(Role.PREFILL, 4)), act.read_state(), act, {})
    assert [o.outcome for o in outcomes] == ["failed", "not_run"]
    assert act.replicas[Role.PREFILL] == 2


def test_prometheus_fault_is_reported_and_recovery_noticed() -> None:
    bad = MetricsReading(None, None, None, None, None, source_ok=False, source_error="prometheus timeout: slow",
                         error_kind=PrometheusErrorKind.TIMEOUT)
    metrics = FakeMetrics(readings=[bad, bad])
    act = FakeActuator()
    planner = StepPlanner()
    loop, _ = make_loop(planner, act, metrics)
    for _ in range(3):
        loop.tick()
    assert [o.source_ok for o in planner.observations] == [False, False, True]
    assert planner.observations[0].request_rate_per_s is None
    reasons = [e[0] for e in act.events]
    assert reasons == ["MetricsUnavailable", "MetricsRecovered"]  # once per transition, not per tick
    text = generate_latest(loop.telemetry.registry).decode()
    assert 'powerplanner_errors_total{kind="prometheus_timeout"} 2.0' in text
    assert "powerplanner_metrics_source_up 1.0" in text


def test_kubernetes_read_failure_skips_tick() -> None:
    act = FakeActuator(read_error=Timeout("list pods: timed out"))
    planner = StepPlanner((cap(Role.DECODE, 300),))
    loop, _ = make_loop(planner, act)
    report = loop.tick()
    assert report.decision is None and planner.observations == [] and act.calls == []
    assert 'kind="kubernetes_timeout"' in generate_latest(loop.telemetry.registry).decode()


def test_a_failed_step_is_counted_by_its_error_kind() -> None:
    """The kind travels on the outcome (a StrEnum), not parsed back out of its detail text."""
    act = FakeActuator()
    act.fail_on.add("set_cap")
    loop, _ = make_loop(StepPlanner((cap(Role.DECODE, 300),)), act)
    report = loop.tick()
    assert [(o.outcome, o.error_kind) for o in report.outcomes] == [("failed", KubeErrorKind.SERVER)]
    metrics = generate_latest(loop.telemetry.registry).decode()
    assert 'powerplanner_errors_total{kind="kubernetes_server"} 1.0' in metrics


def test_observation_joins_cluster_and_budget() -> None:
    act = FakeActuator(replicas={Role.PREFILL: 2, Role.DECODE: 3}, caps={Role.PREFILL: 450, Role.DECODE: None})
    admin = AdminBudget()
    planner = StepPlanner()
    loop, _ = make_loop(planner, act, admin=admin)
    loop.tick()
    admin.set(7000)
    loop.tick()
    first, second = planner.observations
    assert first.prefill.ready_replicas == 2 and first.decode.ready_replicas == 3
    assert first.prefill.applied_cap_watts == 450.0 and first.decode.applied_cap_watts is None
    assert (first.budget_watts, second.budget_watts) == (10000.0, 7000.0)


def test_observation_counts_the_higher_of_the_agents_report_and_the_annotation() -> None:
    """Lowered: the agents still report the old cap. Raised: the report still lags behind the annotation."""
    state = FakeActuator(caps={Role.PREFILL: 366, Role.DECODE: 300}).read_state()
    reading = MetricsReading(1.0, 1000.0, 100.0, 100.0, 20.0,
                             applied_cap_watts={Role.PREFILL: 333.0, Role.DECODE: 333.0})
    obs = build_observation(0.0, 60.0, reading, state, 2000.0)
    assert (obs.prefill.applied_cap_watts, obs.decode.applied_cap_watts) == (366.0, 333.0)
    unreported = build_observation(0.0, 60.0, MetricsReading(1.0, 1000.0, 100.0, 100.0, 20.0), state, 2000.0)
    assert (unreported.prefill.applied_cap_watts, unreported.decode.applied_cap_watts) == (366.0, 300.0)


def test_run_ticks_on_the_cap_interval_and_stops() -> None:
    act = FakeActuator()
    loop, clock = make_loop(StepPlanner(), act)
    stop = threading.Event()
    assert loop.run(stop, max_ticks=4) == 4
    assert clock.sleeps == [5.0, 5.0, 5.0] and clock.now_s() == 15.0
    assert loop.run(stop, once=True) == 1
    stop.set()
    assert loop.run(stop) == 0


class BrokenSource:
    name = "promql"

    def read(self, now_utc: datetime) -> BudgetReading:
        return BudgetReading(self.name, None, "budget.promql failed (unreachable): down")


def test_broken_budget_source_is_inactive_and_reported() -> None:
    clock = FakeClock()
    planner = StepPlanner()
    loop = LiveLoop(planner, FakeMetrics(), FakeActuator(), CompositeBudget([StaticBudget(9000.0), BrokenSource()]),
                    clock, LoopSettings(cap_interval_s=5.0, window_s=60.0))
    report = loop.tick()
    assert report.budget is not None and (report.budget.watts, report.budget.source) == (9000.0, "config")
    assert any("budget.promql" in e for e in report.errors)
    assert 'powerplanner_errors_total{kind="budget_promql"} 1.0' in generate_latest(loop.telemetry.registry).decode()


def test_run_survives_an_unexpected_error() -> None:
    act = FakeActuator()
    loop, _ = make_loop(StepPlanner(), act)
    calls: list[int] = []

    def flaky_read() -> object:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return FakeActuator.read_state(act)

    act.read_state = flaky_read  # type: ignore[method-assign,assignment]
    assert loop.run(threading.Event(), max_ticks=2) == 2
    assert loop.last is not None and loop.last.decision is not None
    assert 'powerplanner_errors_total{kind="internal"} 1.0' in generate_latest(loop.telemetry.registry).decode()
