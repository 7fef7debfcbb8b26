"""What the loop did, checked by `powerplanner verify`: the planner runs and ticks, every worker pod carries its
per-GPU limit, the agents applied what was requested, and the provisioned power is within the budget.

These read both peers: the pods' annotations through the cluster, the planner's and the agents' metrics
through Prometheus (:mod:`powerplanner.verify.state`).
"""

from __future__ import annotations

from powerplanner import contract
from powerplanner.kube.errors import KubernetesError
from powerplanner.live.prometheus import PrometheusError
from powerplanner.verify.result import CheckResult, failed, passed, skipped
from powerplanner.verify.state import VerifyState, matches, selector_text
from powerplanner.verify.workloads import (
    CAP_ANNOTATION,
    LABEL_DGD,
    LABEL_SUBTYPE,
    cap_annotation,
    name_of,
    pod_gpus,
    pod_is_ready,
    pod_is_terminating,
)

# Metric names of the planner's /metrics (powerplanner.live) and the node agent's (powerplanner.agent).
PLANNER_BUDGET_METRIC = "powerplanner_budget_watts"
PLANNER_LAST_TICK_METRIC = "powerplanner_last_tick_timestamp_seconds"  # the planner's clock: only its changes count
AGENT_REQUESTED_METRIC = contract.AGENT_LIMIT_REQUESTED_WATTS
AGENT_APPLIED_METRIC = contract.AGENT_LIMIT_APPLIED_WATTS
AGENT_POD_LABEL = contract.AGENT_POD_LABEL  # the workload labels of the agents' series (never pod/namespace)
AGENT_NAMESPACE_LABEL = contract.AGENT_NAMESPACE_LABEL


def check_planner(state: VerifyState) -> CheckResult:
    name = "planner"
    details: list[str] = []
    problems: list[str] = []
    if state.api_ok:
        try:
            pods = [p for p in state.cluster.list_pods(None, selector_text(state.settings.planner_selector))
                    if matches(p, state.settings.planner_selector) and not pod_is_terminating(p)]
        except KubernetesError as exc:
            pods = []
            problems.append(exc.message)
        ready = [p for p in pods if pod_is_ready(p)]
        if not ready:
            problems.append(f"no Ready planner pod ({selector_text(state.settings.planner_selector)}); "
                            f"found {len(pods)} not ready")
        else:
            details.append("planner pod(s) ready: " + ", ".join(name_of(p) for p in ready))
    else:
        problems.append("Kubernetes API unreachable: planner pod not checked")
    if state.prom_ok:
        try:
            ages = state.query(f"time() - timestamp({PLANNER_BUDGET_METRIC})")
            budgets = state.query(PLANNER_BUDGET_METRIC)
        except PrometheusError as exc:
            ages, budgets = [], []
            problems.append(exc.message)
        fresh = [s.value for s in ages if s.value is not None]
        if not fresh:
            problems.append(f"no {PLANNER_BUDGET_METRIC} in Prometheus: the planner's /metrics is not scraped")
        elif min(fresh) > state.settings.max_age_s:
            problems.append(f"planner metrics are stale: newest sample is {min(fresh):.0f} s old "
                            f"(limit {state.settings.max_age_s:.0f} s)")
        else:
            details.append(f"planner metrics fresh (newest sample {min(fresh):.1f} s old)")
        try:
            # "and" keeps only series still exported now (not those of a planner pod that went away).
            window = f"{max(1, round(state.settings.max_age_s))}s"
            ticks = state.query(f"changes({PLANNER_LAST_TICK_METRIC}[{window}]) and {PLANNER_LAST_TICK_METRIC}")
        except PrometheusError:
            ticks = []
        if ticks:
            if max((t.value or 0.0) for t in ticks) < 1:
                problems.append(f"the planner has not ticked in the last {state.settings.max_age_s:.0f} s "
                                f"({PLANNER_LAST_TICK_METRIC} unchanged)")
            else:
                details.append(f"the planner ticked in the last {state.settings.max_age_s:.0f} s")
        values = [s.value for s in budgets if s.value is not None]
        if values:
            state.planner_budget_watts = min(values)
            details.append(f"planner's effective budget: {state.planner_budget_watts:.0f} W")
    else:
        problems.append("Prometheus unavailable: planner metrics not checked")
    if problems:
        return failed(name, "the planner is not running or its metrics are not fresh",
                      "kubectl describe/logs the planner Deployment; make Prometheus scrape it "
                      "(metrics.podMonitor.enabled or the prometheus.io annotations)", tuple(problems + details))
    return passed(name, "running, metrics fresh", tuple(details))


def check_annotations(state: VerifyState) -> CheckResult:
    name = "annotations"
    if state.workers is None:
        return skipped(name, "dgd")
    problems: list[str] = []
    caps: dict[str, set[int]] = {}
    count = 0
    for role, pods in state.workers.items():
        for pod in pods:
            if pod_is_terminating(pod):
                continue
            count += 1
            watts, why = cap_annotation(pod)
            if watts is None:
                problems.append(f"{role} pod {name_of(pod)}: {why}")
            else:
                caps.setdefault(role, set()).add(watts)
    if count == 0:
        return failed(name, f"no worker pods of {state.settings.dgd_name} in {state.settings.namespace}",
                      f"worker pods must carry the labels {LABEL_DGD} and {LABEL_SUBTYPE} "
                      "(the Dynamo operator sets them); check that the DGD's workers are running")
    if problems:
        return failed(name, f"{len(problems)} of {count} worker pods lack a valid {CAP_ANNOTATION}",
                      "the planner writes the annotation on each cap tick: check its logs and that it may patch "
                      "pods (rbac check); pods that started recently get it on the next cap tick", tuple(problems))
    summary = ", ".join(f"{role} {sorted(v)} W" for role, v in sorted(caps.items()))
    return passed(name, f"all {count} worker pods carry a per-GPU power limit ({summary})")


def check_applied_limits(state: VerifyState) -> CheckResult:
    name = "applied-limits"
    if not state.prom_ok:
        return skipped(name, "prometheus")
    if state.agent_series_pods is not None and not state.agent_series_pods:
        return skipped(name, "agent-series")
    try:
        requested = state.agent_series(AGENT_REQUESTED_METRIC)
        applied = state.agent_series(AGENT_APPLIED_METRIC)
    except PrometheusError as exc:
        return failed(name, "cannot read the agents' metrics", "check Prometheus", (exc.line,))
    workers = state.worker_names()
    ours = {k: s for k, s in requested.items() if s.labels.get(AGENT_NAMESPACE_LABEL) == state.settings.namespace
            and s.labels.get(AGENT_POD_LABEL) and (workers is None or s.labels.get(AGENT_POD_LABEL) in workers)}
    if not ours:
        return failed(name, f"no agent metrics for the worker GPUs of {state.settings.dgd_name}",
                      "make Prometheus scrape the agents (metrics.podMonitor.enabled or the prometheus.io "
                      "annotations) and check that the agents map pods to GPUs (kubelet PodResources socket)",
                      (f"{len(requested)} GPU series of {AGENT_REQUESTED_METRIC} in total",))
    problems: list[str] = []
    for key, req in sorted(ours.items()):
        got = applied.get(key)
        where = f"{key[0]} gpu {req.labels.get('gpu', '?')} (pod {req.labels.get(AGENT_POD_LABEL)})"
        if got is None or got.value is None:
            problems.append(f"{where}: no applied limit")
        elif req.value is None or abs(got.value - req.value) > state.settings.tolerance_watts:
            problems.append(f"{where}: requested {req.value} W, applied {got.value:.0f} W")
    if problems:
        return failed(name, f"{len(problems)} of {len(ours)} GPUs do not run at the requested limit",
                      "read the agent's logs on that node: a limit outside the GPU's range is clamped, and NVML "
                      "errors (no permission: the agent needs root and CAP_SYS_ADMIN or privileged) are counted "
                      "in its failure metric", tuple(problems))
    return passed(name, f"applied == requested on all {len(ours)} worker GPUs (±{state.settings.tolerance_watts:g} W)")


def check_budget(state: VerifyState) -> CheckResult:
    name = "budget"
    if state.workers is None:
        return skipped(name, "dgd")
    budgets = {k: v for k, v in (("configured", state.settings.budget_watts), ("planner", state.planner_budget_watts))
               if v is not None}
    if not budgets:
        return failed(name, "no budget to compare with",
                      "pass --config (budget.watts) or --budget WATTS, or make the planner's metrics available")
    budget = min(budgets.values())
    provisioned = 0.0
    unknown: list[str] = []
    for role, pods in state.workers.items():
        for pod in pods:
            watts, _why = cap_annotation(pod)
            gpus = pod_gpus(pod, state.settings.resource_name)
            if watts is None:
                unknown.append(f"{role} pod {name_of(pod)} ({gpus} GPUs) has no power limit annotation")
            else:
                provisioned += watts * gpus
    details = [f"budget {budget:.0f} W (" + ", ".join(f"{k} {v:.0f} W" for k, v in budgets.items()) + ")",
               f"provisioned {provisioned:.0f} W = sum over worker pods of GPUs x annotated limit"]
    applied_sum: float | None = None
    if state.prom_ok:
        try:
            applied = state.agent_series(AGENT_APPLIED_METRIC)
        except PrometheusError:
            applied = {}
        workers = state.worker_names() or set()
        applied_sum = sum(s.value or 0.0 for s in applied.values()
                          if s.labels.get(AGENT_NAMESPACE_LABEL) == state.settings.namespace
                          and s.labels.get(AGENT_POD_LABEL) in workers)
        details.append(f"sum of applied limits on the worker GPUs (agents) {applied_sum:.0f} W")
    over = state.settings.tolerance_watts + budget
    fix_over = ("the planner lowers caps within one cap tick of a budget change: check its logs and decision "
                "reasons; replicas pinned by min_replicas at a cap floor may not fit the budget at all")
    if provisioned > over:
        return failed(name, f"provisioned {provisioned:.0f} W is over the budget {budget:.0f} W", fix_over,
                      tuple(unknown + details))
    if applied_sum is not None and applied_sum > over:
        return failed(name, f"applied limits sum to {applied_sum:.0f} W, over the budget {budget:.0f} W",
                      fix_over + "; the agents apply what the annotations ask (applied-limits check)",
                      tuple(unknown + details))
    if unknown:
        return failed(name, "provisioned power cannot be bounded by the budget",
                      "every worker pod needs the annotation (annotations check) and every GPU the applied "
                      "limit (applied-limits check)", tuple(unknown + details))
    return passed(name, f"provisioned {provisioned:.0f} W <= budget {budget:.0f} W", tuple(details))
