"""The checks of `powerplanner verify`, in the order a user would fix things.

Each check reads, decides and explains; none writes anything. Later checks reuse what earlier ones found
(the DGD, its worker pods) and are skipped, not failed twice, when what they need is missing. The checks live
by what they check: :mod:`~powerplanner.verify.kubernetes_checks`, :mod:`~powerplanner.verify.prometheus_checks`
and :mod:`~powerplanner.verify.loop_checks` (what the planner and the agents did); their shared state is in
:mod:`~powerplanner.verify.state`.
"""

from __future__ import annotations

from collections.abc import Callable

from powerplanner.live.prometheus import PrometheusClient
from powerplanner.verify.cluster import ClusterReader
from powerplanner.verify.kubernetes_checks import check_agents, check_api, check_dgd, check_rbac
from powerplanner.verify.loop_checks import check_annotations, check_applied_limits, check_budget, check_planner
from powerplanner.verify.prometheus_checks import check_agent_series, check_frontend_metrics, check_prometheus
from powerplanner.verify.result import CheckResult, Report
from powerplanner.verify.state import VerifySettings, VerifyState

CHECK_NAMES = (
    "kubernetes-api", "rbac", "dgd", "prometheus", "frontend-metrics", "planner", "agents", "agent-series",
    "annotations", "applied-limits", "budget",
)

CHECKS: tuple[Callable[[VerifyState], CheckResult], ...] = (
    check_api, check_rbac, check_dgd, check_prometheus, check_frontend_metrics, check_planner, check_agents,
    check_agent_series, check_annotations, check_applied_limits, check_budget,
)
"""The checks in the order of :data:`CHECK_NAMES`: each may use what the ones before it found."""


class Verifier:
    """Runs the checks against one cluster and one Prometheus; both readers are injected."""

    def __init__(self, settings: VerifySettings, cluster: ClusterReader, prometheus: PrometheusClient | None) -> None:
        self.settings = settings
        self.cluster = cluster
        self.prometheus = prometheus

    def run(self) -> Report:
        state = VerifyState(self.settings, self.cluster, self.prometheus)
        return Report(tuple(check(state) for check in CHECKS))
