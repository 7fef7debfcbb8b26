"""Every metric the planner and the agent export follows Prometheus' naming rules
(https://prometheus.io/docs/practices/naming/): one unit per metric, in its base unit, as the name's suffix;
``_total`` on counters and only there; the deployment and version in ``*_build_info``. Checked on the
exposition text a scrape returns, so what is checked is what Prometheus stores."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from powerplanner import __version__
from powerplanner.agent.exporter import AgentMetrics, GpuSample
from powerplanner.agent.sim_backend import SimGpuBackend, sim_gpus
from powerplanner.live.budget import CompositeBudget, StaticBudget
from powerplanner.live.clock import FakeClock
from powerplanner.live.loop import LiveLoop, LoopSettings
from powerplanner.live.telemetry import LoopTelemetry
from tests.support.live_fakes import FakeActuator, FakeMetrics, StepPlanner
from tests.support.planner_inputs import obs

BASE_UNITS = {"seconds", "second", "watts", "joules", "bytes", "ratio", "celsius", "tokens", "info"}
NON_BASE_UNITS = {"ms", "milliseconds", "us", "microseconds", "minutes", "hours", "kw", "kilowatts", "kwh", "mw",
                  "kilobytes", "megabytes", "kb", "mb", "gb", "percent", "millijoules"}
MIXED_UNIT_LABELS = {"quantity", "unit", "metric"}
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_SUFFIXES = ("_bucket", "_sum", "_count", "_created", "_total")


def naming_problems(exposition: str, prefix: str) -> list[str]:
    """What breaks the naming rules in one scrape's text (empty when nothing does)."""
    problems: list[str] = []
    for family in text_string_to_metric_families(exposition):
        name, kind = family.name, family.type
        if name.endswith("_created"):  # prometheus_client's creation time of a counter or histogram, not ours
            continue
        words = name.split("_")
        if not _NAME.match(name) or not name.startswith(prefix):
            problems.append(f"{name}: not snake_case under {prefix}")
        problems += [f"{name}: non-base unit {w!r}" for w in words if w in NON_BASE_UNITS]
        for i, word in enumerate(words):
            if word in BASE_UNITS - {"info"} and i != len(words) - 1:
                problems.append(f"{name}: unit {word!r} is not the suffix")
        if kind == "counter":  # the parser adds _total itself: read the raw sample lines
            raw = re.findall(rf"^({re.escape(name)}\w*)[{{ ]", exposition, flags=re.MULTILINE)
            problems += [f"{n}: counter sample without _total" for n in raw if not n.endswith(("_total", "_created"))]
        elif name.endswith("_total"):
            problems.append(f"{name}: _total on a {kind}")
        if name.endswith("_info") and any(s.value != 1 for s in family.samples):
            problems.append(f"{name}: an info metric's value is 1")
        for sample in family.samples:
            mixed = MIXED_UNIT_LABELS & set(sample.labels)
            if mixed:
                problems.append(f"{name}: label {sorted(mixed)} mixes quantities (one metric per unit)")
            if kind not in ("histogram", "counter") and sample.name.endswith(_SUFFIXES[:3]):
                problems.append(f"{sample.name}: histogram suffix on a {kind}")
    return problems


def _planner() -> LoopTelemetry:
    telemetry = LoopTelemetry(deployment="llm", namespace="prod")
    telemetry.decisions.labels("x").inc()
    telemetry.errors.labels("x").inc()
    telemetry.steps.labels("scale", "ok").inc()
    telemetry.replicas.labels("prefill", "ready").set(1)
    telemetry.cap_watts.labels("prefill", "target").set(1)
    telemetry.budget_source_watts.labels("config").set(1)
    telemetry.tick_seconds.observe(0.1)
    return telemetry


def _agent() -> AgentMetrics:
    gpus = sim_gpus(1)
    agent = AgentMetrics(SimGpuBackend(gpus))
    for counter in (agent.apply_failures, agent.clamps, agent.annotation_rejections, agent.mapping_failures,
                    agent.watch_restarts, agent.limit_changes):
        counter.labels("x").inc()
    agent.reconcile_seconds.observe(0.01)
    agent.publish([GpuSample(0, gpus[0].info.uuid, "p", "ns", "c", 300.0, 300.0, 700.0, 200.0, 700.0, 3)])
    return agent


def test_the_planners_metrics_follow_the_naming_rules() -> None:
    assert naming_problems(generate_latest(_planner().registry).decode(), "powerplanner_") == []


def test_the_agents_metrics_follow_the_naming_rules() -> None:
    assert naming_problems(generate_latest(_agent().registry).decode(), "powerplanner_agent_") == []


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('# TYPE powerplanner_observed_load gauge\npowerplanner_observed_load{quantity="isl"} 1\n', "mixes"),
        ("# TYPE powerplanner_ttft_ms gauge\npowerplanner_ttft_ms 1\n", "non-base unit"),
        ("# TYPE powerplanner_seconds_tick gauge\npowerplanner_seconds_tick 1\n", "not the suffix"),
        ("# TYPE powerplanner_steps counter\npowerplanner_steps 1\n", "without _total"),
        ("# TYPE powerplanner_budget_watts_total gauge\npowerplanner_budget_watts_total 1\n", "_total on a gauge"),
        ("# TYPE powerplanner_build_info gauge\npowerplanner_build_info 2\n", "info metric"),
        ("# TYPE other_budget_watts gauge\nother_budget_watts 1\n", "snake_case under"),
    ],
)
def test_the_check_refuses_each_broken_rule(text: str, why: str) -> None:
    problems = naming_problems(text, "powerplanner_")
    assert any(why in p for p in problems), problems


def _value(telemetry: LoopTelemetry, name: str, labels: dict[str, str] | None = None) -> float | None:
    return telemetry.registry.get_sample_value(name, labels or {})


def test_build_info_names_the_version_and_the_deployment() -> None:
    labels = {"version": __version__, "deployment": "llm", "deployment_namespace": "prod"}
    assert _value(_planner(), "powerplanner_build_info", labels) == 1
    agent = _agent()
    assert agent.registry.get_sample_value("powerplanner_agent_build_info", {"version": __version__}) == 1


def test_observed_load_is_one_metric_per_quantity_in_base_units() -> None:
    telemetry = _planner()
    telemetry.record_observation(obs(ttft_ms=250.0, itl_ms=20.0, rate=3.0))
    assert _value(telemetry, "powerplanner_observed_ttft_seconds") == pytest.approx(0.25)
    assert _value(telemetry, "powerplanner_observed_itl_seconds") == pytest.approx(0.02)
    assert _value(telemetry, "powerplanner_observed_request_rate_per_second") == pytest.approx(3.0)


def test_missing_observations_are_nan_not_zero() -> None:
    telemetry = _planner()
    telemetry.record_observation(obs(ttft_ms=None, itl_ms=None, rate=None))
    for name in ("ttft_seconds", "itl_seconds", "request_rate_per_second"):
        value = _value(telemetry, f"powerplanner_observed_{name}")
        assert value is not None and math.isnan(value), name


def test_the_last_tick_is_unix_time_from_the_injected_wall_clock() -> None:
    start = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    clock = FakeClock(start_s=1000.0, start_utc=start)  # monotonic 1000 s, wall 2026-03-01T12:00Z
    loop = LiveLoop(StepPlanner(), FakeMetrics(), FakeActuator(), CompositeBudget([StaticBudget(10000.0)]), clock,
                    LoopSettings(cap_interval_s=5.0, window_s=60.0))
    loop.tick()
    assert _value(loop.telemetry, "powerplanner_last_tick_timestamp_seconds") == start.timestamp()
    clock.advance(5.0)
    loop.tick()
    assert _value(loop.telemetry, "powerplanner_last_tick_timestamp_seconds") == start.timestamp() + 5.0
