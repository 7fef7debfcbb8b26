"""Fail closed, end to end: the real Planner and loop against a real Prometheus and the Kubernetes emulator.

- A DGD with 8 GPUs per replica under the built-in TP4 profile (issue 11, path 3: 30,920 W against 16,000 W
  with only a warning): the planner never executes a step that adds power, and its cuts bring the cluster's
  provisioned power (pods x their GPU limits x their cap) under the budget; it says why on every tick.
- The frontend series become NaN, then disappear (issue 11, path 5: 9+5 replicas scaled to 1+1 in three
  adjustment ticks with 40 req/s of real traffic): the planner holds replicas and caps, raises
  ``powerplanner_metrics_missing`` and one ``MetricsMissing`` Event, and plans again once the series are back.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import generate_latest

from powerplanner.config import Config, config_from_mapping
from powerplanner.live.clock import FakeClock
from powerplanner.live.loop import LiveLoop, TickReport
from powerplanner.live.service import Service, build_service
from powerplanner.model.roles import ROLES
from powerplanner.model.values import Reason, StepKind
from tests.fixtures.k8s import CAP_ANNOTATION, LABEL_DGD, PODS, EmulatedCluster
from tests.integration.live.conftest import LivePrometheus

pytestmark = pytest.mark.integration

BUDGET_WATTS = 16_000.0
DEFAULT_LIMIT_WATTS = 700  # what a GPU runs at until its pod's cap is applied (counted for unannotated pods)


def provisioned_watts(cluster: EmulatedCluster, dgd: str = "llm") -> float:
    """Every pod holding GPUs (terminating ones too) x the GPUs its containers limit x its cap annotation."""
    total = 0.0
    wanted = cluster._resource_key(PODS)
    for (res, _ns, _name), obj in cluster.emulator.objects.items():
        if res != wanted or obj.deleted or (obj.get("metadata", {}).get("labels") or {}).get(LABEL_DGD) != dgd:
            continue
        gpus = sum(int(((c.get("resources") or {}).get("limits") or {}).get("nvidia.com/gpu", 0))
                   for c in (obj.get("spec") or {}).get("containers") or [])
        raw = (obj.get("metadata", {}).get("annotations") or {}).get(CAP_ANNOTATION)
        total += gpus * (int(raw) if raw else DEFAULT_LIMIT_WATTS)
    return total


def make_config(prom_url: str, model: str, window_s: float = 5.0) -> Config:
    return config_from_mapping({
        "budget": {"watts": BUDGET_WATTS, "reload_config": False},
        "planner": {"adjustment_interval_s": 30, "cap_interval_s": 5, "metrics_missing_ticks": 3,
                    "prefill": {"min_replicas": 1, "max_replicas": 12},
                    "decode": {"min_replicas": 1, "max_replicas": 12}},
        "prometheus": {"url": prom_url, "window_s": window_s, "model": model, "dynamo_namespace": "dyn",
                       "timeout_s": 2, "retries": 1, "backoff_s": 0.05},
        "kubernetes": {"namespace": "default", "dgd_name": "llm"},
        "profile": {"name": "llama2-70b-h100-tp4"},
    })


def drive(live: LivePrometheus, model: str, requests: int) -> None:
    for _ in range(requests):
        live.frontend.serve(model, 2000, 200, 0.2, 0.03)
    live.server.wait_for_scrapes(2)


def gauge(loop: LiveLoop, name: str) -> float:
    for line in generate_latest(loop.telemetry.registry).decode().splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


def event_reasons(cluster: EmulatedCluster) -> list[str]:
    return [e["reason"] for e in cluster.list_objects("v1/events", "default")]


def live_replicas(cluster: EmulatedCluster) -> dict[str, int]:
    return {r: sum(1 for p in cluster.pods("llm", r) if not p["metadata"].get("deletionTimestamp"))
            for r in ("prefill", "decode")}


def live_caps(cluster: EmulatedCluster) -> dict[str, set[str | None]]:
    return {r: {(p["metadata"].get("annotations") or {}).get(CAP_ANNOTATION) for p in cluster.pods("llm", r)
                if not p["metadata"].get("deletionTimestamp")} for r in ("prefill", "decode")}


def power_adding_steps(report: TickReport) -> list[Any]:
    """Executed steps that add power compared with the state the tick observed."""
    assert report.observation is not None and report.state is not None
    adding = []
    for o in report.outcomes:
        if o.outcome != "done":
            continue
        step = o.step
        if step.kind is StepKind.SCALE and step.value > report.state.role(step.role).spec_replicas:
            adding.append(o)
        applied = report.observation.role(step.role).applied_cap_watts
        if step.kind is StepKind.SET_CAP and step.value > (applied if applied is not None else DEFAULT_LIMIT_WATTS):
            adding.append(o)
    return adding


@pytest.fixture
def mismatched(request: pytest.FixtureRequest, live_prometheus: LivePrometheus,
               cluster: EmulatedCluster) -> Iterator[tuple[Service, FakeClock, str]]:
    version = request.param
    cluster.add_dgd(version, prefill_replicas=3, decode_replicas=2, gpus_per_replica=8)
    cluster.reconcile(version=version, gpus=8)
    model = f"gpu8-{version}"
    live_prometheus.frontend.touch(model)
    live_prometheus.server.wait_for_scrapes(1)  # the series exist at 0 before the first request counts
    clock = FakeClock()
    svc = build_service(make_config(live_prometheus.server.url, model), None, clock=clock,
                        api_client=cluster.api_client(), serve_metrics=False, pod_watch_read_timeout_s=0.5)
    yield svc, clock, version
    svc.close()


@pytest.mark.parametrize("mismatched", ["v1alpha1", "v1beta1"], indirect=True)
def test_eight_gpu_dgd_under_a_tp4_profile_ends_within_the_budget_and_never_adds_power(
    live_prometheus: LivePrometheus, cluster: EmulatedCluster, mismatched: tuple[Service, FakeClock, str],
) -> None:
    svc, clock, version = mismatched
    loop = svc.loop
    model = f"gpu8-{version}"
    snapshots: list[float] = []
    cluster.on_write.append(lambda c: snapshots.append(provisioned_watts(c)))
    start = float(cluster.call(lambda: provisioned_watts(cluster)))
    assert start == 5 * 8 * DEFAULT_LIMIT_WATTS  # 28,000 W against 16,000 W
    for tick in range(14):  # 70 s of planner time: two adjustment ticks and the cap ticks between them
        drive(live_prometheus, model, 200)  # 40 req/s over the 5 s window: the profile alone would scale up
        report = loop.tick()
        assert report.decision is not None and report.observation is not None, report.errors
        assert report.observation.request_rate_per_s is not None and report.observation.request_rate_per_s > 10
        assert all(report.observation.role(r).gpus_per_replica == 8 for r in ROLES)
        assert Reason.GPU_COUNT_MISMATCH in report.decision.reasons, tick
        assert not power_adding_steps(report), (tick, report.outcomes)
        assert gauge(loop, "powerplanner_gpu_count_mismatch") == 1.0
        cluster.reconcile(version=version, gpus=8)
        clock.advance(5)
    end = float(cluster.call(lambda: provisioned_watts(cluster)))
    assert end <= BUDGET_WATTS, (start, end, snapshots)
    assert snapshots and all(b <= a for a, b in itertools.pairwise([start, *snapshots])), snapshots
    assert live_replicas(cluster) == {"prefill": 3, "decode": 2}  # caps alone were enough: 40 GPUs x 400 W
    assert event_reasons(cluster).count("GpuCountMismatch") == 1


@pytest.fixture
def held(live_prometheus: LivePrometheus, cluster: EmulatedCluster) -> Iterator[tuple[Service, FakeClock]]:
    cluster.add_dgd_v1alpha1(prefill_replicas=1, decode_replicas=1, gpus_per_replica=4)
    cluster.reconcile(gpus=4)
    live_prometheus.frontend.touch("gone-e2e")
    live_prometheus.server.wait_for_scrapes(1)
    clock = FakeClock()
    svc = build_service(make_config(live_prometheus.server.url, "gone-e2e", window_s=3.0), None, clock=clock,
                        api_client=cluster.api_client(), serve_metrics=False, pod_watch_read_timeout_s=0.5)
    yield svc, clock
    svc.close()


def test_nan_or_absent_frontend_series_hold_replicas_and_caps(
    live_prometheus: LivePrometheus, cluster: EmulatedCluster, held: tuple[Service, FakeClock],
) -> None:
    svc, clock = held
    loop = svc.loop
    front = live_prometheus.frontend
    model, ns = "gone-e2e", "dyn"

    # Real traffic: the planner sizes the deployment up.
    for _ in range(9):
        drive(live_prometheus, model, 120)  # 40 req/s over the 3 s window
        report = loop.tick()
        assert report.observation is not None and report.observation.request_rate_per_s is not None
        cluster.reconcile(gpus=4)
        clock.advance(5)
    loop.tick()  # the newest pods get their caps
    sized = live_replicas(cluster)
    caps = live_caps(cluster)
    assert sum(sized.values()) > 2 and all(None not in c for c in caps.values()), (sized, caps)
    top = {r: max(int(c or 0) for c in cs) for r, cs in caps.items()}
    assert gauge(loop, "powerplanner_metrics_missing") == 0.0

    def hold_for(ticks: int, phase: str) -> None:
        for tick in range(ticks):
            clock.advance(30)  # every tick an adjustment tick: the old planner scaled to 1+1 on the third
            report = loop.tick()
            assert report.decision is not None and report.observation is not None
            assert report.observation.request_rate_per_s is None, (phase, tick, report.observation)
            assert Reason.METRICS_MISSING in report.decision.reasons, (phase, tick)
            assert Reason.IDLE_SCALE_TO_MIN not in report.decision.reasons
            cluster.reconcile(gpus=4)
            assert live_replicas(cluster) == sized, (phase, tick)
            now = live_caps(cluster)
            assert all(c is not None and int(c) <= top[r] for r, cs in now.items() for c in cs), (phase, tick, now)

    # NaN: the counter and the histograms' sums become NaN (a broken exporter); Prometheus answers NaN.
    front.requests.labels(model, ns, "chat", "success").inc(math.nan)
    for h in (front.ttft, front.itl, front.isl, front.osl):
        h.labels(model, ns).observe(math.nan)
    live_prometheus.server.wait_for_scrapes(2)
    hold_for(4, "nan")
    assert gauge(loop, "powerplanner_metrics_missing") == 1.0

    # Absent: the frontend stops exporting the series (restart, relabelling, a new model label).
    front.requests.remove(model, ns, "chat", "success")
    for h in (front.ttft, front.itl, front.isl, front.osl, front.duration):
        h.remove(model, ns)
    live_prometheus.server.wait_for_scrapes(8)  # 4 s: longer than the 3 s window, no sample is left in it
    hold_for(4, "absent")
    assert gauge(loop, "powerplanner_metrics_missing") == 1.0
    assert event_reasons(cluster).count("MetricsMissing") == 1  # one episode, one Event

    # The series come back with traffic: the planner plans again and says so.
    front.touch(model)
    live_prometheus.server.wait_for_scrapes(1)
    drive(live_prometheus, model, 120)
    clock.advance(30)
    report = loop.tick()
    assert report.observation is not None and report.observation.request_rate_per_s is not None
    assert report.decision is not None and Reason.METRICS_MISSING not in report.decision.reasons
    assert gauge(loop, "powerplanner_metrics_missing") == 0.0
    assert "MetricsRecovered" in event_reasons(cluster)
