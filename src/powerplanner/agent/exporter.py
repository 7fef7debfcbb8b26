"""The agent's Prometheus metrics, on its own :class:`CollectorRegistry`.

Per-GPU limits are exported from a snapshot the reconciler publishes after each pass, so a GPU's workload
labels change atomically when its holder changes (no stale series left behind). Power draw and energy are read
from the GPU backend at scrape time, so they are as fresh as the scrape.

Metric and label names come from :mod:`powerplanner.contract`, where the planner and ``verify`` read them. The
workload identity is in ``pod_name``, ``pod_namespace``, ``container_name``: labels no scraper sets, so the
Prometheus Operator's own ``pod``/``namespace``/``container`` target labels never rename them to ``exported_*``
(docs/operations.md, "Agent").
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from powerplanner import __version__
from powerplanner.agent.gpu import GpuBackend, GpuError
from powerplanner.contract import (
    AGENT_DRAW_WATTS,
    AGENT_ENERGY_JOULES,
    AGENT_GPU_LABELS,
    AGENT_LIMIT_APPLIED_WATTS,
    AGENT_LIMIT_DEFAULT_WATTS,
    AGENT_LIMIT_MAX_WATTS,
    AGENT_LIMIT_MIN_WATTS,
    AGENT_LIMIT_REQUESTED_WATTS,
    AGENT_LIMIT_REVISION,
)
from powerplanner.hostport import split_host_port

_LOG = logging.getLogger("powerplanner.agent.exporter")
GPU_LABELS = AGENT_GPU_LABELS  # gpu, uuid, then the workload: pod_name, pod_namespace, container_name


@dataclass(frozen=True)
class GpuSample:
    """What the reconciler knows about one GPU after a pass (watts)."""

    index: int
    uuid: str
    pod: str
    namespace: str
    container: str
    requested_watts: float | None
    applied_watts: float | None
    default_watts: float
    min_watts: float
    max_watts: float
    revision: int | None = None  # the planner's revision of the request acted on (its acknowledgement)

    def labels(self) -> list[str]:
        """Values in the order of :data:`GPU_LABELS`."""
        return [str(self.index), self.uuid, self.pod, self.namespace, self.container]


class _GpuCollector(Collector):
    def __init__(self, backend: GpuBackend, metrics: AgentMetrics) -> None:
        self._backend = backend
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        samples = self._metrics.samples()
        families = {
            key: GaugeMetricFamily(name, f"GPU power limit: {help_text}", labels=GPU_LABELS)
            for key, name, help_text in (
                ("requested", AGENT_LIMIT_REQUESTED_WATTS,
                 "the lowest valid request of the pods holding the GPU, before clamping"),
                ("applied", AGENT_LIMIT_APPLIED_WATTS, "the limit read back from the GPU after the last pass"),
                ("default", AGENT_LIMIT_DEFAULT_WATTS, "the driver's default limit"),
                ("min", AGENT_LIMIT_MIN_WATTS, "the lowest limit the driver accepts"),
                ("max", AGENT_LIMIT_MAX_WATTS, "the highest limit the driver accepts"),
            )
        }
        revision = GaugeMetricFamily(
            AGENT_LIMIT_REVISION,
            "The planner's revision of the power-limit annotation this GPU's last pass acted on.",
            labels=GPU_LABELS,
        )
        draw = GaugeMetricFamily(AGENT_DRAW_WATTS, "GPU power draw.", labels=GPU_LABELS)
        energy = CounterMetricFamily(AGENT_ENERGY_JOULES, "GPU energy since the driver loaded.", labels=GPU_LABELS)
        for sample in samples:
            labels = sample.labels()
            if sample.requested_watts is not None:
                families["requested"].add_metric(labels, sample.requested_watts)
            if sample.applied_watts is not None:
                families["applied"].add_metric(labels, sample.applied_watts)
            if sample.revision is not None:
                revision.add_metric(labels, float(sample.revision))
            families["default"].add_metric(labels, sample.default_watts)
            families["min"].add_metric(labels, sample.min_watts)
            families["max"].add_metric(labels, sample.max_watts)
            try:
                draw.add_metric(labels, self._backend.power_draw_watts(sample.uuid))
                energy.add_metric(labels, self._backend.energy_joules(sample.uuid))
            except GpuError as exc:
                _LOG.debug("no telemetry for GPU %s at scrape: %s", sample.uuid, exc)
        yield from families.values()
        yield revision
        yield draw
        yield energy


class AgentMetrics:
    """All agent metrics. Counters are labelled by a short ``reason``; see docs/operations.md ("Metrics")."""

    def __init__(self, backend: GpuBackend, registry: CollectorRegistry | None = None,
                 version: str = __version__) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.build_info = Gauge(
            "powerplanner_agent_build_info", "Always 1: the agent's version (its node is the scrape target's).",
            ["version"], registry=self.registry,
        )
        self.build_info.labels(version).set(1)
        self._lock = threading.Lock()
        self._samples: tuple[GpuSample, ...] = ()
        self.apply_failures = Counter(
            "powerplanner_agent_apply_failures",
            "Limit changes that failed, by reason (no_permission, not_supported, gpu_lost, invalid_argument, ...).",
            ["reason"],
            registry=self.registry,
        )
        self.clamps = Counter(
            "powerplanner_agent_clamps",
            "Requested limits clamped before applying, by reason (gpu_min, gpu_max, node_floor, node_ceiling).",
            ["reason"],
            registry=self.registry,
        )
        self.annotation_rejections = Counter(
            "powerplanner_agent_annotation_rejections",
            "Power-limit annotations refused, by reason (empty, not_integer, not_positive, too_large, too_long).",
            ["reason"],
            registry=self.registry,
        )
        self.mapping_failures = Counter(
            "powerplanner_agent_mapping_failures",
            "Pod->GPU lookups that failed, by reason (kubelet_timeout, kubelet_error).",
            ["reason"],
            registry=self.registry,
        )
        self.watch_restarts = Counter(
            "powerplanner_agent_watch_restarts",
            "Pod watch restarts, by reason (expired, http_<status>, connection, timeout).",
            ["reason"],
            registry=self.registry,
        )
        self.limit_changes = Counter(
            "powerplanner_agent_limit_changes",
            "Power limits set successfully, by action (cap, park, release, restore).",
            ["action"],
            registry=self.registry,
        )
        self.reconcile_seconds = Histogram(
            "powerplanner_agent_reconcile_duration_seconds",
            "Duration of one reconcile pass (pod->GPU mapping, planning and applying).",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
        self.registry.register(_GpuCollector(backend, self))

    def publish(self, samples: list[GpuSample]) -> None:
        with self._lock:
            self._samples = tuple(samples)

    def samples(self) -> tuple[GpuSample, ...]:
        with self._lock:
            return self._samples


def serve_metrics(metrics: AgentMetrics, bind: str) -> object:
    """Serve ``/metrics`` on ``host:port`` in a daemon thread; returns the server (``.shutdown()`` stops it)."""
    from prometheus_client import start_http_server

    host, port = split_host_port(bind)
    server, _thread = start_http_server(port, addr=host or "0.0.0.0", registry=metrics.registry)
    return server
