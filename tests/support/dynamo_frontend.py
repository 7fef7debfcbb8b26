"""What the live tests' Prometheus scrapes: Dynamo's frontend metrics (real ``prometheus_client`` series,
named and labelled as Dynamo names them) and the node agents' gauges, with :class:`AgentEcho` standing in for
agents that apply every cap at once.

The real Prometheus and the emulated cluster are in tests/fixtures/; the live tests' fixtures (conftest.py
there) start one Prometheus per session scraping one :class:`DynamoFrontend`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from powerplanner.contract import (
    AGENT_DRAW_WATTS,
    AGENT_GPU_LABELS,
    AGENT_LIMIT_APPLIED_WATTS,
    AGENT_LIMIT_REVISION,
    POWER_LIMIT_ANNOTATION,
    REVISION_ANNOTATION,
    parse_revision,
    power_annotation_watts,
)
from tests.fixtures.k8s import PODS, EmulatedCluster
from tests.fixtures.prometheus import PrometheusServer, RegistryServer

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TOKEN_BUCKETS = (16, 64, 256, 1024, 4096, 16384)


@dataclass
class DynamoFrontend:
    """Real prometheus_client metrics named and labelled like Dynamo's frontend, plus the agent's gauges."""

    registry: CollectorRegistry
    ttft: Histogram
    itl: Histogram
    isl: Histogram
    osl: Histogram
    duration: Histogram
    requests: Counter
    draw: Gauge
    limit: Gauge
    revision: Gauge

    @classmethod
    def create(cls) -> DynamoFrontend:
        r = CollectorRegistry()
        labels = ["model", "dynamo_namespace"]
        gpu_labels = list(AGENT_GPU_LABELS)  # gpu, uuid, pod_name, pod_namespace, container_name (contract.py)
        return cls(
            registry=r,
            ttft=Histogram("dynamo_frontend_time_to_first_token_seconds", "TTFT", labels, buckets=LATENCY_BUCKETS,
                           registry=r),
            itl=Histogram("dynamo_frontend_inter_token_latency_seconds", "ITL", labels, buckets=LATENCY_BUCKETS,
                          registry=r),
            isl=Histogram("dynamo_frontend_input_sequence_tokens", "ISL", labels, buckets=TOKEN_BUCKETS, registry=r),
            osl=Histogram("dynamo_frontend_output_sequence_tokens", "OSL", labels, buckets=TOKEN_BUCKETS, registry=r),
            duration=Histogram("dynamo_frontend_request_duration_seconds", "duration", labels,
                               buckets=LATENCY_BUCKETS, registry=r),
            requests=Counter("dynamo_frontend_requests", "requests", [*labels, "request_type", "status"],
                             registry=r),
            draw=Gauge(AGENT_DRAW_WATTS, "draw", gpu_labels, registry=r),
            limit=Gauge(AGENT_LIMIT_APPLIED_WATTS, "limit", gpu_labels, registry=r),
            revision=Gauge(AGENT_LIMIT_REVISION, "revision acted on", gpu_labels, registry=r),
        )

    def touch(self, model: str, namespace: str = "dyn") -> None:
        """Create the series at 0 (as a frontend does at start-up) so windows see them from the beginning."""
        for h in (self.ttft, self.itl, self.isl, self.osl, self.duration):
            h.labels(model, namespace)
        self.requests.labels(model, namespace, "chat", "success")

    def serve(self, model: str, isl: float, osl: float, ttft_s: float, itl_s: float, namespace: str = "dyn") -> None:
        """One finished request."""
        self.ttft.labels(model, namespace).observe(ttft_s)
        self.itl.labels(model, namespace).observe(itl_s)
        self.isl.labels(model, namespace).observe(isl)
        self.osl.labels(model, namespace).observe(osl)
        self.duration.labels(model, namespace).observe(ttft_s + itl_s * osl)
        self.requests.labels(model, namespace, "chat", "success").inc()


class AgentEcho:
    """Stands in for prompt node agents: each pod's cap annotation is applied at once and its revision
    acknowledged, in the agents' series (one GPU per pod). Without it the planner's feedback is blind and it
    never counts a cut as in force (live/ledger.py). ``clear()`` removes the series (the registry is shared)."""

    def __init__(self, frontend: DynamoFrontend, namespace: str = "default") -> None:
        self.frontend = frontend
        self.namespace = namespace
        self._labels: set[tuple[str, ...]] = set()

    def sync(self, k8s: EmulatedCluster) -> None:
        """Publish what the agents would after one pass over the cluster's pods (Prometheus scrapes it next)."""
        now: set[tuple[str, ...]] = set()
        for pod in k8s.list_objects(PODS, self.namespace):
            meta = pod["metadata"]
            annotations = meta.get("annotations") or {}
            watts = power_annotation_watts(annotations.get(POWER_LIMIT_ANNOTATION))
            if watts is None or meta.get("deletionTimestamp"):
                continue
            labels = ("0", f"GPU-echo-{meta['name']}", meta["name"], self.namespace, "main")
            self.frontend.limit.labels(*labels).set(watts)
            revision = parse_revision(annotations.get(REVISION_ANNOTATION))
            if revision is not None:
                self.frontend.revision.labels(*labels).set(revision)
            now.add(labels)
        for gone in self._labels - now:
            self._remove(gone)
        self._labels = now

    def _remove(self, labels: tuple[str, ...]) -> None:
        for gauge in (self.frontend.limit, self.frontend.revision):
            with contextlib.suppress(KeyError):
                gauge.remove(*labels)

    def clear(self) -> None:
        for labels in self._labels:
            self._remove(labels)
        self._labels = set()


@dataclass
class LivePrometheus:
    """The live tests' one Prometheus, the frontend metrics it scrapes and the HTTP target serving them."""

    frontend: DynamoFrontend
    target: RegistryServer
    server: PrometheusServer
