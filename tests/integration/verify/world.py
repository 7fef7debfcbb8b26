"""A small, healthy installation for `powerplanner verify` to check, and the knobs to break it.

Kubernetes: H4's kmock emulator (tests/fixtures/k8s.py) with two additions made here:
- SelfSubjectAccessReview: kmock has no authorizer (a POST would only be stored, and a second one would
  conflict because the review has no name). :class:`AuthzEmulator` answers
  ``POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`` itself, before kmock's storage, from a
  deny-list the test controls (``cluster.denied``: (verb, group, resource, subresource) tuples), setting
  ``status.allowed`` as a real API server does.
- Nodes (cluster-scoped ``v1/nodes``) are registered so ``list_node`` works.
Prometheus: the real server scraping one ``prometheus_client`` registry whose collector yields whatever
families the test sets (:class:`SwitchableCollector`), so a test can remove, relabel or age a series.
:class:`World` holds both for one test (the fixtures that build it are in conftest.py).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from powerplanner.cli import main
from powerplanner.contract import (
    AGENT_CONTAINER_LABEL,
    AGENT_LIMIT_APPLIED_WATTS,
    AGENT_LIMIT_REQUESTED_WATTS,
    AGENT_LIMIT_REVISION,
    AGENT_NAMESPACE_LABEL,
    AGENT_POD_LABEL,
)
from powerplanner.verify import Report, Status
from powerplanner.verify.setup import build_verifier
from tests.fixtures.k8s import PODS, EmulatedCluster, FaultyKubernetesEmulator
from tests.fixtures.prometheus import PrometheusServer
from tests.support.kubeconfig import write_kubeconfig

NODES = "v1/nodes"
SSAR_PATH = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
NS = "dynamo"
AGENT_NS = "powerplanner"
DGD = "llm"
MODEL = "llama-70b"
BUDGET_WATTS = 2000.0


@attrs.define(kw_only=True)
class AuthzEmulator(FaultyKubernetesEmulator):
    """The fault-injecting emulator plus an authorizer for SelfSubjectAccessReviews."""

    denied: set[tuple[str, str, str, str]] = attrs.field(factory=set)
    reviews: list[dict[str, Any]] = attrs.field(factory=list)

    async def _handle(self, request: Any) -> Any:
        method = str(request.method.value if hasattr(request.method, "value") else request.method).upper()
        if method == "POST" and str(request.url.path).rstrip("/") == SSAR_PATH:
            review = dict(request.data or {})
            attrs_ = (review.get("spec") or {}).get("resourceAttributes") or {}
            key = (attrs_.get("verb", ""), attrs_.get("group", ""), attrs_.get("resource", ""),
                   attrs_.get("subresource", ""))
            allowed = key not in self.denied
            self.reviews.append(review)
            review["status"] = {"allowed": allowed, **({} if allowed else {"reason": "denied by the test's policy"})}
            return aiohttp.web.json_response(review, status=201)
        return await super()._handle(request)


class AuthzCluster(EmulatedCluster):
    """:class:`EmulatedCluster` serving :class:`AuthzEmulator` (same start-up, one more resource)."""

    emulator: AuthzEmulator

    emulator_class = AuthzEmulator
    extra_resources = (NODES,)

    def deny(self, verb: str, group: str, resource: str, subresource: str = "") -> None:
        self.call(lambda: self.emulator.denied.add((verb, group, resource, subresource)))

    def write_kubeconfig(self, path: Path) -> str:
        return str(write_kubeconfig(path, self.url))


class SwitchableCollector(Collector):
    """Yields the families its source makes at each scrape; the test swaps the source under a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._source: Callable[[], Iterable[Metric]] = list

    def set(self, source: Callable[[], Iterable[Metric]]) -> None:
        """``source`` is called at every scrape (so a value can change from one scrape to the next)."""
        with self._lock:
            self._source = source

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            yield from list(self._source())


@dataclass
class Gpu:
    node: str
    index: int
    pod: str
    requested_watts: float
    applied_watts: float

    @property
    def uuid(self) -> str:
        return f"GPU-{self.node}-{self.index:04d}"


@dataclass
class MetricsState:
    """What the scraped exporters say. Fields are the knobs the failure tests turn."""

    model: str = MODEL
    frontend_labels: dict[str, str] = field(default_factory=lambda: {"model": MODEL, "dynamo_namespace": "dynamo"})
    frontend: bool = True
    planner_budget_watts: float | None = 2000.0
    planner_timestamp_offset_s: float = 0.0  # >0: the planner's samples carry a timestamp this far in the past
    planner_labels: dict[str, str] = field(default_factory=dict)  # a new series (Prometheus refuses old samples
    # in a series that already has newer ones)
    gpus: list[Gpu] = field(default_factory=list)
    planner_ticking: bool = True  # False: the last-tick gauge never changes (a hung loop)
    # The agents' workload labels as Prometheus stores them: the contract's, or what a relabelling monitor
    # leaves (exported_pod_name, ...), or an old agent's (pod, namespace)
    agent_pod_label: str = AGENT_POD_LABEL
    agent_namespace_label: str = AGENT_NAMESPACE_LABEL

    def families(self) -> list[Metric]:
        out: list[Metric] = []
        if self.frontend:
            names = list(self.frontend_labels)
            values = list(self.frontend_labels.values())
            requests = CounterMetricFamily("dynamo_frontend_requests", "requests", labels=names)
            requests.add_metric(values, 120.0)
            out.append(requests)
            for metric in ("time_to_first_token_seconds", "inter_token_latency_seconds", "input_sequence_tokens",
                           "output_sequence_tokens"):
                hist = HistogramMetricFamily(f"dynamo_frontend_{metric}", metric, labels=names)
                hist.add_metric(values, buckets=[("1.0", 100.0), ("+Inf", 120.0)], sum_value=60.0)
                out.append(hist)
        if self.planner_budget_watts is not None:
            budget = GaugeMetricFamily("powerplanner_budget_watts", "effective budget",
                                       labels=list(self.planner_labels))
            timestamp = time.time() - self.planner_timestamp_offset_s if self.planner_timestamp_offset_s else None
            budget.add_metric(list(self.planner_labels.values()), self.planner_budget_watts, timestamp=timestamp)
            out.append(budget)
            last_tick = GaugeMetricFamily("powerplanner_last_tick_timestamp_seconds", "planner clock at last tick",
                                          labels=["series"])
            if self.planner_ticking:
                last_tick.add_metric(["ticking"], time.monotonic())  # a new value at every scrape
            else:
                last_tick.add_metric(["hung"], 42.0)
            out.append(last_tick)
        labels = ["gpu", "uuid", self.agent_pod_label, self.agent_namespace_label, AGENT_CONTAINER_LABEL]
        requested = GaugeMetricFamily(AGENT_LIMIT_REQUESTED_WATTS, "requested", labels=labels)
        applied = GaugeMetricFamily(AGENT_LIMIT_APPLIED_WATTS, "applied", labels=labels)
        revision = GaugeMetricFamily(AGENT_LIMIT_REVISION, "revision acted on", labels=labels)
        for gpu in self.gpus:
            values = [str(gpu.index), gpu.uuid, gpu.pod, NS, "main"]
            requested.add_metric(values, gpu.requested_watts)
            applied.add_metric(values, gpu.applied_watts)
            revision.add_metric(values, 1.0)
        out += [requested, applied, revision]
        return out


def seed_healthy_cluster(cluster: AuthzCluster) -> MetricsState:
    """A Ready v1alpha1 DGD (1 prefill x 2 GPUs at 300 W, 2 decode x 2 GPUs at 250 W = 1600 W), two GPU nodes
    each with a ready agent, a ready planner pod; returns the matching healthy metrics."""
    cluster.add_dgd_v1alpha1(name=DGD, namespace=NS, prefill_replicas=1, decode_replicas=2, gpus_per_replica=2)
    placement = {"llm-prefill-0": ("node-a", 300), "llm-decode-0": ("node-a", 250), "llm-decode-1": ("node-b", 250)}
    state = MetricsState()
    used: dict[str, int] = {}
    for pod, (node, cap) in placement.items():
        role = "prefill" if "prefill" in pod else "decode"
        cluster.add_pod(pod, DGD, role, namespace=NS, cap_watts=cap, gpus=2)
        cluster.patch(PODS, NS, pod, {"spec": {"nodeName": node}})
        for _ in range(2):
            index = used.get(node, 0)
            used[node] = index + 1
            state.gpus.append(Gpu(node, index, pod, cap, cap))
    for node in ("node-a", "node-b"):
        cluster.put(NODES, {"apiVersion": "v1", "kind": "Node",
                            "metadata": {"name": node, "labels": {"nvidia.com/gpu.present": "true"}},
                            "status": {"allocatable": {"nvidia.com/gpu": "4"}, "capacity": {"nvidia.com/gpu": "4"}}})
        add_component_pod(cluster, f"pp-powerplanner-agent-{node}", "agent", node)
    cluster.put(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "cpu-node"},
                        "status": {"allocatable": {"cpu": "8"}}})
    add_component_pod(cluster, "pp-powerplanner-planner-0", "planner", "cpu-node")
    return state


def add_component_pod(cluster: AuthzCluster, name: str, component: str, node: str, ready: bool = True) -> None:
    cluster.put(PODS, {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": AGENT_NS,
                     "labels": {"app.kubernetes.io/name": "powerplanner", "app.kubernetes.io/component": component}},
        "spec": {"nodeName": node, "containers": [{"name": component}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    })


def registry_for(collector: SwitchableCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


@dataclass
class World:
    """One verify test's installation: the cluster, the metrics Prometheus scrapes, and how to run `verify`
    against both (as a library call or from the command line)."""

    cluster: AuthzCluster
    state: MetricsState
    collector: SwitchableCollector
    prometheus: PrometheusServer
    kubeconfig: str

    def publish(self) -> None:
        """Expose ``state`` and wait until Prometheus has scraped it (twice: one full scrape after the swap)."""
        self.collector.set(self.state.families)
        self.prometheus.wait_for_scrapes(2)
        for _ in range(5):  # a scrape that timed out on a busy machine (up == 0) marks every series stale
            if self.prometheus.query_value("min(up)") == 1.0:
                return
            self.prometheus.wait_for_scrapes(1)
        raise AssertionError("Prometheus could not scrape the test exporter")

    def verify(self, **overrides: Any) -> Report:
        args: dict[str, Any] = dict(
            namespace=NS, dgd=DGD, config_path=None, prometheus_url=self.prometheus.url,
            kubeconfig=self.kubeconfig, context=None, as_user=None, budget_watts=BUDGET_WATTS, max_age_s=120.0,
        )
        args.update(overrides)
        return build_verifier(**args).run()

    def cli(self, *extra: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
        code = main(["verify", "--namespace", NS, "--dgd", DGD, "--prometheus", self.prometheus.url,
                     "--kubeconfig", self.kubeconfig, "--budget-watts", str(BUDGET_WATTS), *extra])
        return code, capsys.readouterr().out


def statuses(report: Report) -> dict[str, Status]:
    return {c.name: c.status for c in report.checks}


def only_failing(report: Report) -> set[str]:
    return {c.name for c in report.checks if c.status is Status.FAIL}


def as_json(text: str) -> dict[str, Any]:
    return dict(json.loads(text))
