"""The checks of `powerplanner verify`, in the order a user would fix things.

Each check reads, decides and explains; none writes anything. Later checks reuse what earlier ones found
(the DGD, its worker pods) and are skipped, not failed twice, when what they need is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from powerplanner import contract
from powerplanner.live.feedback import diagnose_agent_series, diagnosis_query
from powerplanner.live.prometheus import DYNAMO_FRONTEND, VLLM_FRONTEND, PrometheusClient, PrometheusError, Sample
from powerplanner.verify.cluster import DGD_GROUP, DGD_PLURAL, ClusterError, ClusterReader
from powerplanner.verify.result import CheckResult, Report, failed, passed, skipped
from powerplanner.verify.workloads import (
    CAP_ANNOTATION,
    LABEL_DGD,
    LABEL_SUBTYPE,
    cap_annotation,
    dgd_is_ready,
    dgd_roles,
    is_gpu_node,
    labels,
    name_of,
    pod_gpus,
    pod_is_ready,
    pod_is_terminating,
    worker_pods,
)

# Metric names of the planner's /metrics (powerplanner.live) and the node agent's (powerplanner.agent).
PLANNER_BUDGET_METRIC = "powerplanner_budget_watts"
PLANNER_LAST_TICK_METRIC = "powerplanner_last_tick_timestamp_seconds"  # the planner's clock: only its changes count
AGENT_REQUESTED_METRIC = contract.AGENT_LIMIT_REQUESTED_WATTS
AGENT_APPLIED_METRIC = contract.AGENT_LIMIT_APPLIED_WATTS
AGENT_POD_LABEL = contract.AGENT_POD_LABEL  # the workload labels of the agents' series (never pod/namespace)
AGENT_NAMESPACE_LABEL = contract.AGENT_NAMESPACE_LABEL

# The planner's rights (deploy/helm/powerplanner/templates/rbac.yaml): (verb, group, resource, subresource).
PLANNER_ACCESS: tuple[tuple[str, str, str, str], ...] = (
    *((v, DGD_GROUP, DGD_PLURAL, "") for v in ("get", "list", "watch", "patch")),
    *((v, DGD_GROUP, "dynamographdeploymentscalingadapters", "") for v in ("get", "list", "watch", "patch")),
    *((v, DGD_GROUP, "dynamographdeploymentscalingadapters", "scale") for v in ("get", "patch", "update")),
    *((v, "", "pods", "") for v in ("get", "list", "watch", "patch")),
    ("create", "", "events", ""),
)


def planner_access(budget_configmap: str) -> tuple[tuple[str, str, str, str, str], ...]:
    """Every right the planner needs as (verb, group, resource, subresource, name): PLANNER_ACCESS in the DGD's
    namespace, plus its admin budget's ConfigMap (live/budget_store.py), which the chart grants by name."""
    return (
        *((verb, group, resource, sub, "") for verb, group, resource, sub in PLANNER_ACCESS),
        ("create", "", "configmaps", "", ""),
        *((verb, "", "configmaps", "", budget_configmap) for verb in ("get", "patch")),
    )

CHECK_NAMES = (
    "kubernetes-api", "rbac", "dgd", "prometheus", "frontend-metrics", "planner", "agents", "agent-series",
    "annotations", "applied-limits", "budget",
)


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


def _selector_text(selector: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in selector.items())


def _matches(obj: Mapping[str, Any], selector: Mapping[str, str]) -> bool:
    return selector.items() <= labels(obj).items()


_T = TypeVar("_T")


def _probe(name: str, call: Callable[[], _T], summary: Callable[[_T], str], cannot: str, fix: str) -> CheckResult:
    """Ask a peer (the API server, Prometheus) one thing: pass with ``summary`` of its answer, or fail with
    ``cannot`` and ``fix``, with the peer's own error as the detail (the first check of each peer)."""
    try:
        answer = call()
    except (ClusterError, PrometheusError) as exc:
        return failed(name, cannot, fix, (exc.message,))
    return passed(name, summary(answer))


class Verifier:
    """Runs the checks against one cluster and one Prometheus; both readers are injected."""

    def __init__(self, settings: VerifySettings, cluster: ClusterReader, prometheus: PrometheusClient | None) -> None:
        self.s = settings
        self.cluster = cluster
        self.prometheus = prometheus
        self._api_ok = False
        self._prom_ok = False
        self._dgd: dict[str, Any] | None = None
        self._workers: dict[str, list[Mapping[str, Any]]] | None = None
        self._planner_budget_watts: float | None = None
        self._agent_series_pods: set[str] | None = None  # pods the agent-series check found series for

    def run(self) -> Report:
        steps: Sequence[Callable[[], CheckResult]] = (
            self.check_api, self.check_rbac, self.check_dgd, self.check_prometheus, self.check_frontend_metrics,
            self.check_planner, self.check_agents, self.check_agent_series, self.check_annotations,
            self.check_applied_limits, self.check_budget,
        )
        return Report(tuple(step() for step in steps))

    # -- Kubernetes ------------------------------------------------------------------------------
    def check_api(self) -> CheckResult:
        host = self.cluster.host
        result = _probe("kubernetes-api", self.cluster.server_version,
                        lambda version: f"reachable at {host} (server {version})",
                        f"cannot reach the Kubernetes API at {host}",
                        "check your kubeconfig (--kubeconfig or KUBECONFIG) and that the API server is reachable "
                        "from here")
        self._api_ok = result.passed
        return result

    def check_rbac(self) -> CheckResult:
        name = "rbac"
        if not self._api_ok:
            return skipped(name, "kubernetes-api")
        denied: list[str] = []
        errors: list[str] = []
        access = planner_access(self.s.budget_configmap)
        for verb, group, resource, sub, object_name in access:
            what = f"{verb} {resource}{'/' + sub if sub else ''}{'.' + group if group else ''}"
            what += f" {object_name}" if object_name else ""
            try:
                allowed, reason = self.cluster.may(verb, group, resource, self.s.namespace, sub, object_name)
            except ClusterError as exc:
                errors.append(f"{what}: {exc.message}")
                continue
            if not allowed:
                denied.append(f"{what} in {self.s.namespace}: denied{' (' + reason + ')' if reason else ''}")
        if errors:
            return failed(name, "SelfSubjectAccessReview failed", "the API must accept SelfSubjectAccessReviews "
                          "(authorization.k8s.io/v1); check the API server's authorization mode", tuple(errors))
        if denied:
            return failed(name, f"{len(denied)} of {len(access)} rights the planner needs are missing",
                          "install the chart with rbac.create=true (Role <release>-powerplanner-planner in namespace "
                          f"{self.s.namespace}); run verify as the planner (--as system:serviceaccount:<release "
                          "namespace>:<release>-powerplanner-planner) to check its ServiceAccount", tuple(denied))
        return passed(name, f"all {len(access)} rights the planner needs are granted in {self.s.namespace}")

    def check_dgd(self) -> CheckResult:
        name = "dgd"
        if not self._api_ok:
            return skipped(name, "kubernetes-api")
        ref = f"{self.s.namespace}/{self.s.dgd_name}"
        try:
            dgd = self.cluster.get_dgd(self.s.namespace, self.s.dgd_name)
        except ClusterError as exc:
            return failed(name, f"cannot read DynamoGraphDeployment {ref}",
                          "grant get on dynamographdeployments.nvidia.com, and check that the Dynamo CRDs are "
                          "installed", (exc.message,))
        if dgd is None:
            return failed(name, f"DynamoGraphDeployment {ref} not found",
                          "pass the right --namespace and --dgd (kubectl get dynamographdeployments -A), or set "
                          "kubernetes.namespace/dgd_name in the config")
        roles = dgd_roles(dgd, self.s.prefill_service, self.s.decode_service)
        if roles.problems:
            return failed(name, f"{ref} does not have exactly one prefill and one decode service",
                          "mark the workers with subComponentType: prefill / decode (or type: in v1beta1), or set "
                          "kubernetes.prefill_service / decode_service in the config", roles.problems)
        self._dgd = dgd
        try:
            pods = self.cluster.list_pods(self.s.namespace, f"{LABEL_DGD}={self.s.dgd_name}")
            self._workers = worker_pods(pods, self.s.dgd_name)
        except ClusterError:
            self._workers = None
        ready = "Ready" if dgd_is_ready(dgd) else "not Ready (the planner will only cut power until it is)"
        return passed(name, f"{ref} ({dgd.get('apiVersion')}): prefill={roles.prefill[0]}, "
                      f"decode={roles.decode[0]}, {ready}")

    # -- Prometheus ------------------------------------------------------------------------------
    def _query(self, promql: str) -> list[Sample]:
        assert self.prometheus is not None
        return self.prometheus.query(promql)

    def check_prometheus(self) -> CheckResult:
        name = "prometheus"
        if self.prometheus is None:
            return failed(name, "no Prometheus to check", "pass --prometheus URL or a --config with prometheus.url")
        url = self.prometheus.url
        result = _probe(name, lambda: self._query("vector(1)"), lambda _: f"answers queries at {url}",
                        f"cannot query Prometheus at {url}",
                        "check the URL (--prometheus / prometheus.url) and that Prometheus is running and reachable "
                        "from here (kubectl port-forward when outside the cluster)")
        self._prom_ok = result.passed
        return result

    def check_frontend_metrics(self) -> CheckResult:
        name = "frontend-metrics"
        if not self._prom_ok:
            return skipped(name, "prometheus")
        names = VLLM_FRONTEND if self.s.frontend == "vllm" else DYNAMO_FRONTEND
        wanted: dict[str, str | None] = {names.model_label: self.s.model}
        if names.namespace_label is not None:
            wanted[names.namespace_label] = self.s.dynamo_namespace
        series = [names.requests_total] + [f"{m}_count" for m in (names.ttft_seconds, names.itl_seconds,
                                                                    names.input_tokens, names.output_tokens)]
        problems: list[str] = []
        seen_models: set[str] = set()
        for metric in series:
            try:
                samples = self._query(f'{{__name__="{metric}"}}')
            except PrometheusError as exc:
                problems.append(f"{metric}: {exc.message}")
                continue
            if not samples:
                problems.append(f"{metric}: no series")
                continue
            missing = sorted({label for s in samples for label in wanted if label not in s.labels})
            if missing:
                problems.append(f"{metric}: series lack the label(s) {', '.join(missing)}")
                continue
            matching = [s for s in samples if all(v is None or s.labels.get(k) == v for k, v in wanted.items())]
            if not matching:
                have = sorted({",".join(f"{k}={s.labels.get(k)}" for k in wanted) for s in samples})[:5]
                problems.append(f"{metric}: no series with {_selector_text({k: v for k, v in wanted.items() if v})}"
                                f" (have: {'; '.join(have)})")
            seen_models |= {s.labels.get(names.model_label, "") for s in matching}
        if problems:
            return failed(name, "the frontend metrics the planner reads are missing or mislabelled",
                          "make Prometheus scrape the Dynamo frontend (a PodMonitor on the frontend pods) and set "
                          "prometheus.model / dynamo_namespace to the label values it exports", tuple(problems))
        return passed(name, f"{len(series)} frontend series present with labels {', '.join(wanted)} "
                      f"(models: {', '.join(sorted(seen_models))})")

    # -- the planner and the agents ---------------------------------------------------------------
    def check_planner(self) -> CheckResult:
        name = "planner"
        details: list[str] = []
        problems: list[str] = []
        if self._api_ok:
            try:
                pods = [p for p in self.cluster.list_pods(None, _selector_text(self.s.planner_selector))
                        if _matches(p, self.s.planner_selector) and not pod_is_terminating(p)]
            except ClusterError as exc:
                pods = []
                problems.append(exc.message)
            ready = [p for p in pods if pod_is_ready(p)]
            if not ready:
                problems.append(f"no Ready planner pod ({_selector_text(self.s.planner_selector)}); "
                                f"found {len(pods)} not ready")
            else:
                details.append("planner pod(s) ready: " + ", ".join(name_of(p) for p in ready))
        else:
            problems.append("Kubernetes API unreachable: planner pod not checked")
        if self._prom_ok:
            try:
                ages = self._query(f"time() - timestamp({PLANNER_BUDGET_METRIC})")
                budgets = self._query(PLANNER_BUDGET_METRIC)
            except PrometheusError as exc:
                ages, budgets = [], []
                problems.append(exc.message)
            fresh = [s.value for s in ages if s.value is not None]
            if not fresh:
                problems.append(f"no {PLANNER_BUDGET_METRIC} in Prometheus: the planner's /metrics is not scraped")
            elif min(fresh) > self.s.max_age_s:
                problems.append(f"planner metrics are stale: newest sample is {min(fresh):.0f} s old "
                                f"(limit {self.s.max_age_s:.0f} s)")
            else:
                details.append(f"planner metrics fresh (newest sample {min(fresh):.1f} s old)")
            try:
                # "and" keeps only series still exported now (not those of a planner pod that went away).
                window = f"{max(1, round(self.s.max_age_s))}s"
                ticks = self._query(f"changes({PLANNER_LAST_TICK_METRIC}[{window}]) and {PLANNER_LAST_TICK_METRIC}")
            except PrometheusError:
                ticks = []
            if ticks:
                if max((t.value or 0.0) for t in ticks) < 1:
                    problems.append(f"the planner has not ticked in the last {self.s.max_age_s:.0f} s "
                                    f"({PLANNER_LAST_TICK_METRIC} unchanged)")
                else:
                    details.append(f"the planner ticked in the last {self.s.max_age_s:.0f} s")
            values = [s.value for s in budgets if s.value is not None]
            if values:
                self._planner_budget_watts = min(values)
                details.append(f"planner's effective budget: {self._planner_budget_watts:.0f} W")
        else:
            problems.append("Prometheus unavailable: planner metrics not checked")
        if problems:
            return failed(name, "the planner is not running or its metrics are not fresh",
                          "kubectl describe/logs the planner Deployment; make Prometheus scrape it "
                          "(metrics.podMonitor.enabled or the prometheus.io annotations)", tuple(problems + details))
        return passed(name, "running, metrics fresh", tuple(details))

    def check_agents(self) -> CheckResult:
        name = "agents"
        if not self._api_ok:
            return skipped(name, "kubernetes-api")
        try:
            nodes = [n for n in self.cluster.list_nodes() if is_gpu_node(n, self.s.resource_name)]
            pods = [p for p in self.cluster.list_pods(None, _selector_text(self.s.agent_selector))
                    if _matches(p, self.s.agent_selector) and not pod_is_terminating(p)]
        except ClusterError as exc:
            return failed(name, "cannot list nodes and agent pods",
                          "run verify as an identity that may list nodes and pods cluster-wide", (exc.message,))
        if not nodes:
            return failed(name, "no GPU nodes found",
                          f"label GPU nodes {self._gpu_label_hint()} (GPU feature discovery) or install the NVIDIA "
                          "device plugin so nodes advertise the GPU resource")
        ready_on = {str((p.get("spec") or {}).get("nodeName")) for p in pods if pod_is_ready(p)}
        missing = [name_of(n) for n in nodes if name_of(n) not in ready_on]
        if missing:
            return failed(name, f"{len(missing)} of {len(nodes)} GPU nodes have no ready agent",
                          "check the agent DaemonSet's nodeSelector/affinity/tolerations (agent.* values) and "
                          "kubectl describe the agent pods on those nodes", tuple(f"no ready agent on {m}"
                                                                                  for m in missing))
        return passed(name, f"a ready agent on each of the {len(nodes)} GPU nodes")

    def check_agent_series(self) -> CheckResult:
        """The planner's feedback path: every Ready worker pod has agent series under the contract's labels
        (pod_name, pod_namespace). When not, name why (live/feedback.py: the planner logs the same cause)."""
        name = "agent-series"
        if not self._prom_ok:
            return skipped(name, "prometheus")
        try:
            samples = self._query(diagnosis_query())
        except PrometheusError as exc:
            return failed(name, "cannot read the agents' series", "check Prometheus", (exc.message,))
        workers = None
        if self._workers is not None:
            workers = sorted(name_of(p) for pods in self._workers.values() for p in pods
                             if pod_is_ready(p) and not pod_is_terminating(p))
        found = diagnose_agent_series([s.labels for s in samples], self.s.namespace, workers)
        self._agent_series_pods = set(found.attributed)
        if found.ok:
            return passed(name, found.cause)
        seen = sorted(samples, key=lambda s: -(s.value or 0.0))[:5]
        details = [f"worker pods without agent series: {', '.join(found.missing)}"] if found.missing else []
        details += [f"agent series with {_selector_text(s.labels) or 'no workload labels'}: {s.value or 0:.0f}"
                    for s in seen]
        return failed(name, found.cause, found.fix, tuple(details))

    def _gpu_label_hint(self) -> str:
        return "nvidia.com/gpu.present=true"

    # -- what the loop did -----------------------------------------------------------------------
    def check_annotations(self) -> CheckResult:
        name = "annotations"
        if self._workers is None:
            return skipped(name, "dgd")
        problems: list[str] = []
        caps: dict[str, set[int]] = {}
        count = 0
        for role, pods in self._workers.items():
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
            return failed(name, f"no worker pods of {self.s.dgd_name} in {self.s.namespace}",
                          f"worker pods must carry the labels {LABEL_DGD} and {LABEL_SUBTYPE} "
                          "(the Dynamo operator sets them); check that the DGD's workers are running")
        if problems:
            return failed(name, f"{len(problems)} of {count} worker pods lack a valid {CAP_ANNOTATION}",
                          "the planner writes the annotation on each cap tick: check its logs and that it may patch "
                          "pods (rbac check); pods that started recently get it on the next cap tick", tuple(problems))
        summary = ", ".join(f"{role} {sorted(v)} W" for role, v in sorted(caps.items()))
        return passed(name, f"all {count} worker pods carry a per-GPU power limit ({summary})")

    def _agent_series(self, metric: str) -> dict[tuple[str, str], Sample]:
        out: dict[tuple[str, str], Sample] = {}
        for sample in self._query(metric):
            key = (sample.labels.get("instance", ""), sample.labels.get("uuid") or sample.labels.get("gpu", ""))
            out[key] = sample
        return out

    def _worker_names(self) -> set[str] | None:
        if self._workers is None:
            return None
        return {name_of(p) for pods in self._workers.values() for p in pods}

    def check_applied_limits(self) -> CheckResult:
        name = "applied-limits"
        if not self._prom_ok:
            return skipped(name, "prometheus")
        if self._agent_series_pods is not None and not self._agent_series_pods:
            return skipped(name, "agent-series")
        try:
            requested = self._agent_series(AGENT_REQUESTED_METRIC)
            applied = self._agent_series(AGENT_APPLIED_METRIC)
        except PrometheusError as exc:
            return failed(name, "cannot read the agents' metrics", "check Prometheus", (exc.message,))
        workers = self._worker_names()
        ours = {k: s for k, s in requested.items() if s.labels.get(AGENT_NAMESPACE_LABEL) == self.s.namespace
                and s.labels.get(AGENT_POD_LABEL) and (workers is None or s.labels.get(AGENT_POD_LABEL) in workers)}
        if not ours:
            return failed(name, f"no agent metrics for the worker GPUs of {self.s.dgd_name}",
                          "make Prometheus scrape the agents (metrics.podMonitor.enabled or the prometheus.io "
                          "annotations) and check that the agents map pods to GPUs (kubelet PodResources socket)",
                          (f"{len(requested)} GPU series of {AGENT_REQUESTED_METRIC} in total",))
        problems: list[str] = []
        for key, req in sorted(ours.items()):
            got = applied.get(key)
            where = f"{key[0]} gpu {req.labels.get('gpu', '?')} (pod {req.labels.get(AGENT_POD_LABEL)})"
            if got is None or got.value is None:
                problems.append(f"{where}: no applied limit")
            elif req.value is None or abs(got.value - req.value) > self.s.tolerance_watts:
                problems.append(f"{where}: requested {req.value} W, applied {got.value:.0f} W")
        if problems:
            return failed(name, f"{len(problems)} of {len(ours)} GPUs do not run at the requested limit",
                          "read the agent's logs on that node: a limit outside the GPU's range is clamped, and NVML "
                          "errors (no permission: the agent needs root and CAP_SYS_ADMIN or privileged) are counted "
                          "in its failure metric", tuple(problems))
        return passed(name, f"applied == requested on all {len(ours)} worker GPUs (±{self.s.tolerance_watts:g} W)")

    def check_budget(self) -> CheckResult:
        name = "budget"
        if self._workers is None:
            return skipped(name, "dgd")
        budgets = {k: v for k, v in (("configured", self.s.budget_watts), ("planner", self._planner_budget_watts))
                   if v is not None}
        if not budgets:
            return failed(name, "no budget to compare with",
                          "pass --config (budget.watts) or --budget WATTS, or make the planner's metrics available")
        budget = min(budgets.values())
        provisioned = 0.0
        unknown: list[str] = []
        for role, pods in self._workers.items():
            for pod in pods:
                watts, _why = cap_annotation(pod)
                gpus = pod_gpus(pod, self.s.resource_name)
                if watts is None:
                    unknown.append(f"{role} pod {name_of(pod)} ({gpus} GPUs) has no power limit annotation")
                else:
                    provisioned += watts * gpus
        details = [f"budget {budget:.0f} W (" + ", ".join(f"{k} {v:.0f} W" for k, v in budgets.items()) + ")",
                   f"provisioned {provisioned:.0f} W = sum over worker pods of GPUs x annotated limit"]
        applied_sum: float | None = None
        if self._prom_ok:
            try:
                applied = self._agent_series(AGENT_APPLIED_METRIC)
            except PrometheusError:
                applied = {}
            workers = self._worker_names() or set()
            applied_sum = sum(s.value or 0.0 for s in applied.values()
                              if s.labels.get(AGENT_NAMESPACE_LABEL) == self.s.namespace
                              and s.labels.get(AGENT_POD_LABEL) in workers)
            details.append(f"sum of applied limits on the worker GPUs (agents) {applied_sum:.0f} W")
        over = self.s.tolerance_watts + budget
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
