"""The PromQL the planner sends: metric and label names of each frontend flavour and power source, and the
query builders (pure, no I/O). Windowed averages as Dynamo's SLA planner computes them
(``increase(X_sum[W]) / increase(X_count[W])``); see docs/planner.md ("One tick") and live/prometheus.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from powerplanner import contract


@dataclass(frozen=True)
class FrontendMetricNames:
    """Metric and label names of one frontend flavour."""

    ttft_seconds: str
    itl_seconds: str
    input_tokens: str
    output_tokens: str
    requests_total: str
    model_label: str
    namespace_label: str | None


# Dynamo's frontend (lib/runtime prometheus_names: frontend_service), labels model and dynamo_namespace.
DYNAMO_FRONTEND = FrontendMetricNames(
    ttft_seconds="dynamo_frontend_time_to_first_token_seconds",
    itl_seconds="dynamo_frontend_inter_token_latency_seconds",
    input_tokens="dynamo_frontend_input_sequence_tokens",
    output_tokens="dynamo_frontend_output_sequence_tokens",
    requests_total="dynamo_frontend_requests_total",
    model_label="model",
    namespace_label="dynamo_namespace",
)

# vLLM's own server metrics (vllm/v1/metrics/loggers.py), label model_name; no namespace label.
VLLM_FRONTEND = FrontendMetricNames(
    ttft_seconds="vllm:time_to_first_token_seconds",
    itl_seconds="vllm:inter_token_latency_seconds",
    input_tokens="vllm:request_prompt_tokens",
    output_tokens="vllm:request_generation_tokens",
    requests_total="vllm:request_success_total",
    model_label="model_name",
    namespace_label=None,
)


@dataclass(frozen=True)
class WorkerMetricNames:
    """Per-worker bottleneck gauges (docs/planner.md, "Which role is short"), attributed to roles by pod."""

    waiting_requests: str
    kv_usage: str  # 0..1
    pod_label: str = "pod"
    namespace_label: str = "namespace"


# vLLM's worker gauges (vllm/v1/metrics/loggers.py; Dynamo's vLLM workers export them on their system port):
# requests queued in the scheduler (at a decode worker: waiting for KV room) and KV-cache usage, 1 = full.
# ``vllm:kv_cache_usage_perc`` replaced ``vllm:gpu_cache_usage_perc``; Dynamo's own is
# ``dynamo_component_kvstats_gpu_cache_usage_percent`` (lib/runtime prometheus_names: kvstats).
VLLM_WORKER = WorkerMetricNames(waiting_requests="vllm:num_requests_waiting", kv_usage="vllm:kv_cache_usage_perc")


def worker_queries(names: WorkerMetricNames, namespace: str) -> tuple[str, str]:
    """``(waiting, kv usage)`` by pod in one Kubernetes namespace: summed waiting requests, highest KV usage."""
    sel = selector({names.namespace_label: namespace})
    return (f"sum by ({names.pod_label}) ({names.waiting_requests}{sel})",
            f"max by ({names.pod_label}) ({names.kv_usage}{sel})")


@dataclass(frozen=True)
class PowerMetricNames:
    """Per-GPU power series and the labels that name the workload holding each GPU."""

    draw_watts: str
    applied_limit_watts: str | None
    limit_revision: str | None = None  # the annotation revision the agent has acted on (see live/ledger.py)
    pod_label: str = "pod"
    namespace_label: str = "namespace"


# Our agent labels the workload with names no scraper sets (pod_name, pod_namespace: see contract.py), so the
# Prometheus Operator's own pod/namespace target labels can never hide them (docs/install.md, "Monitoring").
AGENT_POWER = PowerMetricNames(
    draw_watts=contract.AGENT_DRAW_WATTS,
    applied_limit_watts=contract.AGENT_LIMIT_APPLIED_WATTS,
    limit_revision=contract.AGENT_LIMIT_REVISION,
    pod_label=contract.AGENT_POD_LABEL,
    namespace_label=contract.AGENT_NAMESPACE_LABEL,
)
# dcgm-exporter: DCGM_FI_DEV_POWER_USAGE (W); the enforced limit is DCGM_FI_DEV_POWER_MGMT_LIMIT when exported.
# Its pod mapping (DCGM_EXPORTER_KUBERNETES) labels the workload pod/namespace; scrape it with honorLabels.
DCGM_POWER = PowerMetricNames(draw_watts="DCGM_FI_DEV_POWER_USAGE", applied_limit_watts="DCGM_FI_DEV_POWER_MGMT_LIMIT")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def selector(labels: Mapping[str, str | None]) -> str:
    """``{a="x",b="y"}`` for the labels that have a value; empty string when none do."""
    parts = [f'{k}="{_escape(v)}"' for k, v in labels.items() if v is not None]
    return "{" + ",".join(parts) + "}" if parts else ""


def range_literal(window_s: float) -> str:
    """A PromQL range for ``window_s`` seconds (milliseconds when not a whole number of seconds)."""
    if window_s <= 0:
        raise ValueError("window must be positive")
    ms = round(window_s * 1000)
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def average_query(metric: str, sel: str, window_s: float) -> str:
    """Request-weighted window average of a histogram: NaN (-> None) when no request ended in the window."""
    w = range_literal(window_s)
    return f"sum(increase({metric}_sum{sel}[{w}])) / sum(increase({metric}_count{sel}[{w}]))"


def quantile_query(metric: str, sel: str, window_s: float, q: float) -> str:
    """The ``q`` quantile of a histogram over the window (NaN -> None when no request ended in it)."""
    w = range_literal(window_s)
    return f"histogram_quantile({q:g}, sum by (le) (increase({metric}_bucket{sel}[{w}])))"


def rate_query(counter: str, sel: str, window_s: float) -> str:
    """Requests per second over the window."""
    return f"sum(increase({counter}{sel}[{range_literal(window_s)}])) / {window_s:g}"


@dataclass(frozen=True)
class FrontendQueries:
    """The queries of one tick's load and latency observation."""

    request_rate: str
    isl: str
    osl: str
    ttft: str
    itl: str
    isl_p90: str  # the prompt-length p90 from the frontend's ISL histogram (decode's KV packing margin)


def frontend_queries(
    names: FrontendMetricNames, window_s: float, model: str | None, dynamo_namespace: str | None
) -> FrontendQueries:
    labels: dict[str, str | None] = {names.model_label: model}
    if names.namespace_label is not None:
        labels[names.namespace_label] = dynamo_namespace
    sel = selector(labels)
    return FrontendQueries(
        request_rate=rate_query(names.requests_total, sel, window_s),
        isl=average_query(names.input_tokens, sel, window_s),
        osl=average_query(names.output_tokens, sel, window_s),
        ttft=average_query(names.ttft_seconds, sel, window_s),
        itl=average_query(names.itl_seconds, sel, window_s),
        isl_p90=quantile_query(names.input_tokens, sel, window_s, 0.9),
    )


def holders_query(names: PowerMetricNames = AGENT_POWER) -> str:
    """Every GPU the agents report, by uuid and holder (all namespaces: a GPU a gone pod held may have gone to
    a pod of another namespace, and a parked one has none)."""
    return f"count by (uuid, {names.pod_label}, {names.namespace_label}) ({names.applied_limit_watts})"


def per_pod_query(metric: str, namespace: str, how: str, names: PowerMetricNames = AGENT_POWER) -> str:
    """``sum``/``max``/``min`` by pod of a per-GPU series in one Kubernetes namespace, with the pod and
    namespace labels of ``names`` (``sum by (pod_name) (X{pod_namespace="ns"})`` for our agent)."""
    return f"{how} by ({names.pod_label}) ({metric}{selector({names.namespace_label: namespace})})"


