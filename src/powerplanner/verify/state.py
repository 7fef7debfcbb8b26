"""What the checks of `powerplanner verify` share: the settings, the two readers, and what earlier checks found.

Each check is a function of one :class:`VerifyState`: it reads the cluster or Prometheus through the injected
readers, may record what it found (the DGD, its worker pods, the planner's budget) for the checks after it, and
returns a :class:`~powerplanner.verify.result.CheckResult`; a check whose input an earlier one could not get
is skipped, not failed twice (docs/operations.md, "powerplanner verify").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from powerplanner.kube.errors import KubernetesError
from powerplanner.live.prometheus import PrometheusClient, PrometheusError, Sample
from powerplanner.verify.cluster import ClusterReader
from powerplanner.verify.result import CheckResult, failed, passed
from powerplanner.verify.workloads import labels, name_of


@dataclass(frozen=True)
class VerifySettings:
    """What to verify. Built by the CLI from its flags and, when given, the config file."""

    namespace: str
    dgd_name: str
    prometheus_url: str | None = None
    frontend: Literal["dynamo", "vllm"] = "dynamo"
    model: str | None = None
    dynamo_namespace: str | None = None
    budget_watts: float | None = None
    prefill_service: str | None = None
    decode_service: str | None = None
    resource_name: str = "nvidia.com/gpu"
    budget_configmap: str = "powerplanner-budget"  # budget.admin.state_configmap
    max_age_s: float = 120.0
    tolerance_watts: float = 1.0
    planner_selector: Mapping[str, str] = field(
        default_factory=lambda: {"app.kubernetes.io/name": "powerplanner", "app.kubernetes.io/component": "planner"}
    )
    agent_selector: Mapping[str, str] = field(
        default_factory=lambda: {"app.kubernetes.io/name": "powerplanner", "app.kubernetes.io/component": "agent"}
    )


def selector_text(selector: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in selector.items())


def matches(obj: Mapping[str, Any], selector: Mapping[str, str]) -> bool:
    return selector.items() <= labels(obj).items()


_T = TypeVar("_T")


def probe(name: str, call: Callable[[], _T], summary: Callable[[_T], str], cannot: str, fix: str) -> CheckResult:
    """Ask a peer (the API server, Prometheus) one thing: pass with ``summary`` of its answer, or fail with
    ``cannot`` and ``fix``, with the peer's own error as the detail (the first check of each peer)."""
    try:
        answer = call()
    except (KubernetesError, PrometheusError) as exc:
        known_fix = exc.fix if isinstance(exc, PrometheusError) else None  # credentials or TLS: the exact setting
        return failed(name, cannot, known_fix or fix, (exc.message,))
    return passed(name, summary(answer))



@dataclass
class VerifyState:
    """One run's peers and findings. Mutable on purpose: the checks run in order and each later check reads
    what the earlier ones recorded (``api_ok`` and ``prom_ok``: the peer answered; ``dgd`` and ``workers``: the
    deployment and its worker pods by role; ``planner_budget_watts``; ``agent_series_pods``)."""

    settings: VerifySettings
    cluster: ClusterReader
    prometheus: PrometheusClient | None
    api_ok: bool = False
    prom_ok: bool = False
    dgd: dict[str, Any] | None = None
    workers: dict[str, list[Mapping[str, Any]]] | None = None
    planner_budget_watts: float | None = None
    agent_series_pods: set[str] | None = None  # pods the agent-series check found series for

    def query(self, promql: str) -> list[Sample]:
        assert self.prometheus is not None
        return self.prometheus.query(promql)

    def agent_series(self, metric: str) -> dict[tuple[str, str], Sample]:
        out: dict[tuple[str, str], Sample] = {}
        for sample in self.query(metric):
            key = (sample.labels.get("instance", ""), sample.labels.get("uuid") or sample.labels.get("gpu", ""))
            out[key] = sample
        return out

    def worker_names(self) -> set[str] | None:
        if self.workers is None:
            return None
        return {name_of(p) for pods in self.workers.values() for p in pods}
