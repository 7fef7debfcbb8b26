"""End to end: real Prometheus scraping Dynamo-shaped frontend metrics, the real Planner, the Kubernetes
emulator with a mini operator, the admin endpoint, and a fake clock (no sleeping for planner time).

Traffic rises -> the planner scales up within the budget and sets caps; the budget is cut through
``PUT /budget`` -> caps drop on the next cap tick and replicas follow. Every write to the emulated
cluster is a snapshot whose provisioned power (pods holding GPUs, terminating ones included, x GPUs x
their cap) is checked against the budget the planner was given.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from prometheus_client import generate_latest

from powerplanner.config import Config, config_from_mapping
from powerplanner.live.clock import FakeClock
from powerplanner.live.service import Service, build_service
from powerplanner.model.values import Reason, StepKind
from tests.fixtures.k8s import CAP_ANNOTATION, LABEL_DGD, LABEL_SUBTYPE, PODS, EmulatedCluster
from tests.integration.live.conftest import AgentEcho, FaultProxy, LivePrometheus

pytest.importorskip("powerplanner.planning.planner", reason="the planner core (issue 3) is not in this tree yet")

pytestmark = pytest.mark.integration

GPUS = 4
DEFAULT_LIMIT_WATTS = 700
BUDGET_WATTS = 16000.0
CUT_WATTS = 5000.0
TOKEN = "e2e-token"


def provisioned_watts(cluster: EmulatedCluster) -> float:
    """Pods hold their GPUs until they are gone (terminating included); a pod not yet annotated is counted at
    the cap its role's other pods carry (it gets it on the next cap tick), or the GPU default if none has one."""
    total = 0.0
    by_role: dict[str, list[int | None]] = {}
    wanted = cluster._resource_key(PODS)
    for (res, _ns, _name), obj in cluster.emulator.objects.items():
        if res != wanted or obj.deleted:
            continue
        labels = obj.get("metadata", {}).get("labels") or {}
        if labels.get(LABEL_DGD) != "llm":
            continue
        raw = (obj.get("metadata", {}).get("annotations") or {}).get(CAP_ANNOTATION)
        by_role.setdefault(labels.get(LABEL_SUBTYPE, ""), []).append(int(raw) if raw else None)
    for caps in by_role.values():
        known = [c for c in caps if c is not None]
        fallback = max(known) if known else DEFAULT_LIMIT_WATTS
        total += sum(GPUS * (c if c is not None else fallback) for c in caps)
    return total


def measure(cluster: EmulatedCluster) -> float:
    """:func:`provisioned_watts` taken on the emulator's loop (never racing a request)."""
    return float(cluster.call(lambda: provisioned_watts(cluster)))


@dataclass
class Snapshots:
    phase: str = "before"
    seen: dict[str, list[float]] = field(default_factory=dict)

    def __call__(self, cluster: EmulatedCluster) -> None:
        self.seen.setdefault(self.phase, []).append(provisioned_watts(cluster))


def make_config(prom_url: str) -> Config:
    return config_from_mapping({
        "budget": {"watts": BUDGET_WATTS, "reload_config": False,
                   "admin": {"enabled": True, "bind": "127.0.0.1:0", "token": TOKEN}},
        "planner": {"adjustment_interval_s": 30, "cap_interval_s": 5,
                    "prefill": {"min_replicas": 1, "max_replicas": 6},
                    "decode": {"min_replicas": 1, "max_replicas": 6}},
        "prometheus": {"url": prom_url, "window_s": 5, "model": "e2e", "dynamo_namespace": "dyn", "timeout_s": 2,
                       "retries": 1, "backoff_s": 0.05},
        "kubernetes": {"namespace": "default", "dgd_name": "llm"},
        "profile": {"name": "llama2-70b-h100-tp4"},
    })


@pytest.fixture
def service(live_prometheus: LivePrometheus, cluster: EmulatedCluster) -> Iterator[tuple[Service, FakeClock]]:
    cluster.add_dgd_v1alpha1(prefill_replicas=1, decode_replicas=1, gpus_per_replica=GPUS)
    cluster.add_scaling_adapter("llm", "VllmDecodeWorker", 1)
    cluster.reconcile(gpus=GPUS)
    clock = FakeClock()
    svc = build_service(make_config(live_prometheus.server.url), None, clock=clock,
                        api_client=cluster.api_client(), serve_metrics=False,
                        pod_watch_read_timeout_s=0.5)
    yield svc, clock
    svc.close()


def drive(live: LivePrometheus, requests: int) -> None:
    """``requests`` requests finish now (ISL 2000, OSL 200, TTFT 200 ms, ITL 30 ms), then Prometheus scrapes."""
    for _ in range(requests):
        live.frontend.serve("e2e", 2000, 200, 0.2, 0.03)
    live.server.wait_for_scrapes(2)


def pod_caps(cluster: EmulatedCluster, role: str) -> list[str | None]:
    return [(p["metadata"].get("annotations") or {}).get(CAP_ANNOTATION) for p in cluster.pods("llm", role)
            if not p["metadata"].get("deletionTimestamp")]


def acknowledge(live: LivePrometheus, agents: AgentEcho, cluster: EmulatedCluster) -> None:
    """The agents apply every annotation and Prometheus scrapes them: the planner sees its caps in force."""
    agents.sync(cluster)
    live.server.wait_for_scrapes(1)


def test_scale_up_then_budget_cut(live_prometheus: LivePrometheus, cluster: EmulatedCluster,
                                  service: tuple[Service, FakeClock], agent_echo: AgentEcho) -> None:
    svc, clock = service
    loop = svc.loop
    snaps = Snapshots()
    cluster.on_write.append(snaps)
    live_prometheus.frontend.touch("e2e")
    live_prometheus.server.wait_for_scrapes(1)

    # Light traffic: the first tick sizes the deployment and sets caps on every pod.
    drive(live_prometheus, 2)
    first = loop.tick()
    assert first.decision is not None and first.observation is not None and first.observation.source_ok
    assert all(c is not None for role in ("prefill", "decode") for c in pod_caps(cluster, role))

    # Traffic rises; on the next adjustment tick the planner scales up, within the budget.
    replicas_before = {r: len(cluster.pods("llm", r)) for r in ("prefill", "decode")}
    for _ in range(7):  # 35 s of fake time: one adjustment tick and cap ticks; the operator follows
        clock.advance(5)
        agent_echo.sync(cluster)
        drive(live_prometheus, 60)
        report = loop.tick()
        assert report.decision is not None
        assert report.decision.projected_provisioned_watts <= BUDGET_WATTS
        cluster.reconcile(gpus=GPUS, new_pods_ready=False)
    clock.advance(5)
    acknowledge(live_prometheus, agent_echo, cluster)
    loop.tick()  # newest pods get their caps on the next cap tick
    replicas_up = {r: len(cluster.pods("llm", r)) for r in ("prefill", "decode")}
    assert sum(replicas_up.values()) > sum(replicas_before.values()), (replicas_before, replicas_up)
    assert all(c is not None for role in ("prefill", "decode") for c in pod_caps(cluster, role))
    high = measure(cluster)
    assert CUT_WATTS < high <= BUDGET_WATTS

    # The budget is cut through the admin endpoint; the next cap tick lowers caps first, replicas follow.
    host, port = svc.admin_server.address if svc.admin_server else ("", 0)
    resp = httpx.put(f"http://{host}:{port}/budget", json={"watts": CUT_WATTS},
                     headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 200
    snaps.phase = "cutting"
    clock.advance(5)
    cut = loop.tick()
    assert cut.budget is not None and (cut.budget.watts, cut.budget.source) == (CUT_WATTS, "admin")
    assert cut.decision is not None and Reason.BUDGET_CUT in cut.decision.reasons
    kinds = [o.step.kind for o in cut.outcomes if o.outcome == "done"]
    assert kinds and kinds[0] is StepKind.SET_CAP  # caps drop first
    assert measure(cluster) < high
    for _ in range(6):  # the operator drains removed replicas; the planner keeps re-planning
        cluster.reconcile(gpus=GPUS)
        clock.advance(5)
        acknowledge(live_prometheus, agent_echo, cluster)
        loop.tick()
    cluster.reconcile(gpus=GPUS)
    snaps.phase = "after"
    clock.advance(5)
    acknowledge(live_prometheus, agent_echo, cluster)
    loop.tick()
    replicas_down = {r: len(cluster.pods("llm", r)) for r in ("prefill", "decode")}
    assert sum(replicas_down.values()) < sum(replicas_up.values()), (replicas_up, replicas_down)
    assert measure(cluster) <= CUT_WATTS

    # Every snapshot of the cluster: never above the budget before the cut; while above the new budget, power
    # only goes down (a cut cannot be instant: caps, then draining replicas); once drained, never above it.
    assert snaps.seen["before"] and max(snaps.seen["before"]) <= BUDGET_WATTS
    cutting = snaps.seen["cutting"]
    assert all(b <= a or b <= CUT_WATTS for a, b in itertools.pairwise(cutting)), cutting
    assert cutting[-1] <= CUT_WATTS
    assert max(snaps.seen.get("after", [0.0])) <= CUT_WATTS

    # GET /decision explains the last tick.
    body = httpx.get(f"http://{host}:{port}/decision", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert body["budget_watts"] == CUT_WATTS and body["decision"]["policy"] == "ours"


@pytest.fixture
def faulty_service(live_prometheus: LivePrometheus, cluster: EmulatedCluster,
                   fault_proxy: FaultProxy) -> Iterator[tuple[Service, FakeClock]]:
    cluster.add_dgd_v1alpha1(prefill_replicas=2, decode_replicas=2, gpus_per_replica=GPUS)
    cluster.reconcile(gpus=GPUS)
    clock = FakeClock()
    cfg = make_config(fault_proxy.url)
    cfg = cfg.model_copy(update={"prometheus": cfg.prometheus.model_copy(update={"timeout_s": 0.3, "retries": 1})})
    svc = build_service(cfg, None, clock=clock, api_client=cluster.api_client(), serve_metrics=False,
                        pod_watch_read_timeout_s=0.5)
    yield svc, clock
    svc.close()


def test_prometheus_faults_hold_within_bounds_and_recover(
    live_prometheus: LivePrometheus, cluster: EmulatedCluster, fault_proxy: FaultProxy,
    faulty_service: tuple[Service, FakeClock], caplog: pytest.LogCaptureFixture,
) -> None:
    svc, clock = faulty_service
    loop = svc.loop
    live_prometheus.frontend.touch("e2e")
    live_prometheus.server.wait_for_scrapes(1)
    drive(live_prometheus, 30)
    loop.tick()
    fault_proxy.delay_s = 0.6
    seen_ok: list[bool] = []
    for mode in ("down", "slow", "garbage", "error500", "nan", "empty", "ok"):
        fault_proxy.mode = mode
        for _ in range(2):  # spans an adjustment tick per mode pair: replicas could move if the loop let them
            clock.advance(15)
            report = loop.tick()
            d, obs = report.decision, report.observation
            assert d is not None and obs is not None
            seen_ok.append(obs.source_ok)
            for target in (d.prefill, d.decode):
                assert 1 <= target.replicas <= 6
            assert d.projected_provisioned_watts <= BUDGET_WATTS
            for role in ("prefill", "decode"):
                assert 1 <= len(cluster.pods("llm", role)) <= 6
        cluster.reconcile(gpus=GPUS)
    assert seen_ok[:8] == [False] * 8 and seen_ok[-1] is True  # nan/empty are "no data", not faults
    text = generate_latest(loop.telemetry.registry).decode()
    for kind in ("unreachable", "timeout", "garbage", "http"):
        assert f'powerplanner_errors_total{{kind="prometheus_{kind}"}}' in text, kind
    assert "powerplanner_metrics_source_up 1.0" in text
    reasons = [e["reason"] for e in cluster.list_objects("v1/events", "default")]
    assert "MetricsUnavailable" in reasons and "MetricsRecovered" in reasons
    logged = [r.getMessage() for r in caplog.records]
    assert any("metrics source failed" in m for m in logged) and any("recovered" in m for m in logged)


def test_idle_deployment_scales_to_minimum(live_prometheus: LivePrometheus, cluster: EmulatedCluster) -> None:
    """No requests at all: Prometheus gives rate 0 and NaN averages; the source delivers 0/None (never NaN)
    and the planner scales both roles to their minimum after ``idle_ticks_to_min`` adjustment ticks."""
    cluster.add_dgd_v1alpha1(prefill_replicas=3, decode_replicas=3, gpus_per_replica=GPUS)
    cluster.reconcile(gpus=GPUS)
    live_prometheus.frontend.touch("idle-e2e")
    live_prometheus.server.wait_for_scrapes(2)
    cfg = make_config(live_prometheus.server.url)
    cfg = cfg.model_copy(update={"prometheus": cfg.prometheus.model_copy(update={"model": "idle-e2e"})})
    clock = FakeClock()
    svc = build_service(cfg, None, clock=clock, api_client=cluster.api_client(), serve_metrics=False,
                        pod_watch_read_timeout_s=0.5)
    try:
        seen = []
        for _ in range(cfg.planner.idle_ticks_to_min + 2):
            report = svc.loop.tick()
            assert report.observation is not None and report.observation.source_ok
            assert report.observation.ttft_ms is None and report.observation.request_rate_per_s == 0.0
            seen.append(report.decision)
            cluster.reconcile(gpus=GPUS)
            clock.advance(cfg.planner.adjustment_interval_s)
        cluster.reconcile(gpus=GPUS)
    finally:
        svc.close()
    assert any(d is not None and Reason.IDLE_SCALE_TO_MIN in d.reasons for d in seen)
    assert len(cluster.pods("llm", "prefill")) == 1 and len(cluster.pods("llm", "decode")) == 1
