"""The planner's feedback through a real Prometheus with the Prometheus Operator's PodMonitor relabelling.

The Operator generates, for a PodMonitor, a scrape job with ``honor_labels: false`` whose relabel rules attach
the target's ``namespace``, ``pod`` and ``container`` (from ``__meta_kubernetes_*``, here set on static
targets with the same rules). An exposed label that clashes with a target label is renamed ``exported_<name>``:
an agent that labels workloads ``pod``/``namespace`` is then attributed to its own pod, and the planner's
per-pod queries find nothing. The contract's labels (``pod_name``, ``pod_namespace``, ``container_name``) clash
with nothing. Two agents are scraped by the same job: one exporting the contract's labels (workers in
namespace ``dyn``), one the old ones (workers in ``legacy``). The first is attributed pod by pod; the second
would have blinded the old queries, and the planner now says so after ``planner.blind_ticks`` ticks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Gauge

from powerplanner import contract
from powerplanner.config import PrometheusConfig, config_from_mapping
from powerplanner.live.clock import FakeClock
from powerplanner.live.prometheus import PrometheusClient, PrometheusMetricsSource
from powerplanner.live.service import build_service
from powerplanner.model.roles import Role
from tests.fixtures.k8s import EVENTS, EmulatedCluster
from tests.fixtures.prometheus import (
    PrometheusServer,
    RegistryServer,
    find_prometheus_binary,
    serve_registry,
    start_prometheus,
)

pytestmark = pytest.mark.integration

AGENT_NS = "powerplanner"
BLIND_TICKS = 3
# (pod, GPU index, applied W, acted-on revision) of each worker GPU; decode-0's second GPU lags a revision
WORKER_GPUS = (("llm-prefill-0", 0, 300.0, 4), ("llm-prefill-0", 1, 300.0, 4), ("llm-decode-0", 2, 250.0, 7),
               ("llm-decode-0", 3, 250.0, 6), ("llm-decode-1", 4, 260.0, 2))
PODS = {Role.PREFILL: ["llm-prefill-0"], Role.DECODE: ["llm-decode-0", "llm-decode-1"]}
OLD_LABELS = ("gpu", "uuid", "pod", "namespace", "container")  # the agent's workload labels before the contract


def operator_job(agent_pod: str, node: str, target: str) -> list[str]:
    """The scrape job the Prometheus Operator generates for a PodMonitor (its relabel rules, in its order),
    for one agent pod; the Kubernetes service discovery's meta labels are given as static target labels."""
    return [
        f"  - job_name: podMonitor/{AGENT_NS}/pp-powerplanner-agent/0/{node}",
        "    honor_labels: false",
        "    honor_timestamps: true",
        "    static_configs:",
        f"      - targets: ['{target}']",
        "        labels:",
        f"          __meta_kubernetes_namespace: {AGENT_NS}",
        f"          __meta_kubernetes_pod_name: {agent_pod}",
        "          __meta_kubernetes_pod_container_name: agent",
        f"          __meta_kubernetes_pod_node_name: {node}",
        "    relabel_configs:",
        "      - source_labels: [job]",
        "        target_label: __tmp_prometheus_job_name",
        "      - source_labels: [__meta_kubernetes_namespace]",
        "        target_label: namespace",
        "      - source_labels: [__meta_kubernetes_pod_container_name]",
        "        target_label: container",
        "      - source_labels: [__meta_kubernetes_pod_name]",
        "        target_label: pod",
        "      - target_label: job",
        f"        replacement: {AGENT_NS}/pp-powerplanner-agent",
        "      - target_label: endpoint",
        "        replacement: metrics",
    ]


def agent_registry(labels: tuple[str, ...], namespace: str) -> CollectorRegistry:
    """What one node agent exposes: draw, applied limit and revision per worker GPU, plus a GPU no pod holds."""
    registry = CollectorRegistry()
    draw = Gauge(contract.AGENT_DRAW_WATTS, "draw", list(labels), registry=registry)
    applied = Gauge(contract.AGENT_LIMIT_APPLIED_WATTS, "applied", list(labels), registry=registry)
    revision = Gauge(contract.AGENT_LIMIT_REVISION, "revision", list(labels), registry=registry)
    for pod, gpu, watts, rev in WORKER_GPUS:
        values = (str(gpu), f"GPU-{gpu:04d}", pod, namespace, "main")
        draw.labels(*values).set(watts - 50)
        applied.labels(*values).set(watts)
        revision.labels(*values).set(rev)
    applied.labels("7", "GPU-0007", "", "", "").set(200.0)  # parked, no pod
    return registry


@dataclass
class OperatorPrometheus:
    server: PrometheusServer
    agents: list[RegistryServer]


@pytest.fixture(scope="module")
def operator_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorPrometheus]:
    if find_prometheus_binary() is None:
        pytest.skip("prometheus binary not installed (Debian package `prometheus`; `make prometheus` installs it)")
    new = serve_registry(agent_registry(contract.AGENT_GPU_LABELS, "dyn"))
    old = serve_registry(agent_registry(OLD_LABELS, "legacy"))
    jobs = operator_job("pp-powerplanner-agent-a1b2c", "node-a", new.target)
    jobs += operator_job("pp-powerplanner-agent-d3e4f", "node-b", old.target)
    workdir: Path = tmp_path_factory.mktemp("operator-prometheus")
    server = start_prometheus(workdir, [], scrape_interval_s=0.5, extra_scrape_configs=jobs)
    try:
        server.targets = (new.target, old.target)
        server.wait_for_scrapes(2)
        yield OperatorPrometheus(server, [new, old])
    finally:
        server.stop()
        new.stop()
        old.stop()


def source(url: str, namespace: str) -> PrometheusMetricsSource:
    cfg = PrometheusConfig(url=url, timeout_s=2.0, retries=1, backoff_s=0.01)
    return PrometheusMetricsSource(PrometheusClient.from_config(cfg), cfg, namespace)


def test_the_relabelling_is_the_operators(operator_prometheus: OperatorPrometheus) -> None:
    """The emulation does what the Operator does: target labels attached, clashing exposed labels renamed."""
    prom = operator_prometheus.server
    ours = prom.query(f'{contract.AGENT_LIMIT_APPLIED_WATTS}{{{contract.AGENT_POD_LABEL}="llm-prefill-0"}}')
    assert len(ours) == 2
    for series in ours:
        labels = series["metric"]
        assert (labels["pod"], labels["namespace"], labels["container"]) == ("pp-powerplanner-agent-a1b2c",
                                                                             AGENT_NS, "agent")
        assert labels[contract.AGENT_NAMESPACE_LABEL] == "dyn" and "exported_pod" not in labels
    renamed = prom.query(f'{contract.AGENT_LIMIT_APPLIED_WATTS}{{exported_pod="llm-prefill-0"}}')
    assert len(renamed) == 2
    assert {s["metric"]["exported_namespace"] for s in renamed} == {"legacy"}
    assert {s["metric"]["pod"] for s in renamed} == {"pp-powerplanner-agent-d3e4f"}


def test_contract_labels_attribute_limits_and_revisions_to_the_right_pods(
    operator_prometheus: OperatorPrometheus,
) -> None:
    reading = source(operator_prometheus.server.url, "dyn").read(60.0, PODS)
    assert reading.source_ok, reading.source_error
    assert reading.applied_cap_watts == {Role.PREFILL: 300.0, Role.DECODE: 260.0}
    assert reading.draw_watts == {Role.PREFILL: 500.0, Role.DECODE: 610.0}  # applied - 50 W per GPU
    assert reading.revision_by_pod == {"llm-prefill-0": (4.0, 4.0), "llm-decode-0": (6.0, 7.0),
                                       "llm-decode-1": (2.0, 2.0)}
    assert reading.series_pods == frozenset({"llm-prefill-0", "llm-decode-0", "llm-decode-1"})


def test_the_old_labels_blind_the_old_queries_and_the_new_ones_alike(operator_prometheus: OperatorPrometheus) -> None:
    """The planner's queries before the contract (``max by (pod) (X{namespace=...})``) saw the agent's own pod
    where the workers should be; the contract's queries see no series for the workers: no acknowledgement."""
    prom = operator_prometheus.server
    old_query = f'max by (pod) ({contract.AGENT_LIMIT_REVISION}{{namespace="legacy"}})'
    assert prom.query(old_query) == []
    in_agent_ns = prom.query(f'max by (pod) ({contract.AGENT_LIMIT_REVISION}{{namespace="{AGENT_NS}"}})')
    assert {s["metric"].get("pod") for s in in_agent_ns} == {"pp-powerplanner-agent-a1b2c",
                                                             "pp-powerplanner-agent-d3e4f"}
    reading = source(prom.url, "legacy").read(60.0, PODS)
    assert reading.source_ok
    assert reading.revision_by_pod == {} and reading.series_pods == frozenset()
    assert reading.applied_cap_watts == {Role.PREFILL: None, Role.DECODE: None}


def run_planner(prom_url: str, namespace: str, ticks: int) -> tuple[list[float | None], list[dict[str, object]]]:
    """The real planner over an emulated DGD in ``namespace`` whose worker pods are the exported ones; returns
    the feedback gauge after each tick and the Events it wrote."""
    with EmulatedCluster() as cluster:
        cluster.add_dgd_v1alpha1(name="llm", namespace=namespace, prefill_replicas=1, decode_replicas=2)
        for pods in PODS.values():
            for pod in pods:
                cluster.add_pod(pod, "llm", "prefill" if "prefill" in pod else "decode", namespace=namespace,
                                cap_watts=300)
        cfg = config_from_mapping({
            "budget": {"watts": 8000, "reload_config": False},
            "planner": {"cap_interval_s": 5, "adjustment_interval_s": 30, "blind_ticks": BLIND_TICKS},
            "prometheus": {"url": prom_url, "window_s": 30, "timeout_s": 2, "retries": 1, "backoff_s": 0.01},
            "kubernetes": {"namespace": namespace, "dgd_name": "llm"},
        })
        clock = FakeClock()
        service = build_service(cfg, None, clock=clock, api_client=cluster.api_client(), serve_metrics=False,
                                watch_pods=False)
        try:
            gauge: list[float | None] = []
            for _ in range(ticks):
                service.loop.tick()
                gauge.append(service.loop.telemetry.registry.get_sample_value("powerplanner_feedback_blind"))
                clock.advance(5)
        finally:
            service.close()
        return gauge, cluster.list_objects(EVENTS, namespace)


def test_the_planner_detects_the_blind_feedback_and_names_the_cause(operator_prometheus: OperatorPrometheus) -> None:
    gauge, events = run_planner(operator_prometheus.server.url, "legacy", BLIND_TICKS + 2)
    assert gauge == [0.0] * (BLIND_TICKS - 1) + [1.0] * 3
    blind = [e for e in events if e["reason"] == "FeedbackBlind"]
    assert len(blind) == 1 and blind[0]["type"] == "Warning"  # once per episode
    message = str(blind[0]["message"])
    assert "for 3 of 3 Ready worker pod(s)" in message
    assert "agent series carry exported_pod / lack pod_name" in message and "honorLabels: true" in message


def test_with_the_contract_labels_the_planner_is_not_blind(operator_prometheus: OperatorPrometheus) -> None:
    gauge, events = run_planner(operator_prometheus.server.url, "dyn", BLIND_TICKS + 1)
    assert gauge == [0.0] * (BLIND_TICKS + 1)
    assert not [e for e in events if e["reason"] == "FeedbackBlind"]
