"""The Kubernetes checks of `powerplanner verify`: the API answers, the planner has its rights, the DGD is there
with one prefill and one decode service, and every GPU node runs a ready agent.

They read through :class:`~powerplanner.verify.cluster.ClusterReader` only (plus one SelfSubjectAccessReview per
right) and record the DGD and its worker pods for the checks after them (:mod:`powerplanner.verify.state`).
"""

from __future__ import annotations

from powerplanner.kube.dgd import DGD_GROUP, DGD_PLURAL, dgd_ready, read_roles
from powerplanner.kube.errors import KubernetesError
from powerplanner.model.roles import Role
from powerplanner.verify.result import CheckResult, failed, passed, skipped
from powerplanner.verify.state import VerifyState, matches, probe, selector_text
from powerplanner.verify.workloads import (
    LABEL_DGD,
    is_gpu_node,
    name_of,
    pod_is_ready,
    pod_is_terminating,
    worker_pods,
)

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


GPU_NODE_LABEL = "nvidia.com/gpu.present=true"
"""The label GPU feature discovery puts on GPU nodes, named in the fix when no GPU node is found."""


def check_api(state: VerifyState) -> CheckResult:
    host = state.cluster.host
    result = probe("kubernetes-api", state.cluster.server_version,
                   lambda version: f"reachable at {host} (server {version})",
                   f"cannot reach the Kubernetes API at {host}",
                   "check your kubeconfig (--kubeconfig or KUBECONFIG) and that the API server is reachable "
                   "from here")
    state.api_ok = result.passed
    return result


def check_rbac(state: VerifyState) -> CheckResult:
    name = "rbac"
    if not state.api_ok:
        return skipped(name, "kubernetes-api")
    denied: list[str] = []
    errors: list[str] = []
    access = planner_access(state.settings.budget_configmap)
    for verb, group, resource, sub, object_name in access:
        what = f"{verb} {resource}{'/' + sub if sub else ''}{'.' + group if group else ''}"
        what += f" {object_name}" if object_name else ""
        try:
            allowed, reason = state.cluster.may(verb, group, resource, state.settings.namespace, sub, object_name)
        except KubernetesError as exc:
            errors.append(f"{what}: {exc.message}")
            continue
        if not allowed:
            denied.append(f"{what} in {state.settings.namespace}: denied{' (' + reason + ')' if reason else ''}")
    if errors:
        return failed(name, "SelfSubjectAccessReview failed", "the API must accept SelfSubjectAccessReviews "
                      "(authorization.k8s.io/v1); check the API server's authorization mode", tuple(errors))
    if denied:
        return failed(name, f"{len(denied)} of {len(access)} rights the planner needs are missing",
                      "install the chart with rbac.create=true (Role <release>-powerplanner-planner in namespace "
                      f"{state.settings.namespace}); run verify as the planner (--as system:serviceaccount:<release "
                      "namespace>:<release>-powerplanner-planner) to check its ServiceAccount", tuple(denied))
    return passed(name, f"all {len(access)} rights the planner needs are granted in {state.settings.namespace}")


def check_dgd(state: VerifyState) -> CheckResult:
    name = "dgd"
    if not state.api_ok:
        return skipped(name, "kubernetes-api")
    ref = f"{state.settings.namespace}/{state.settings.dgd_name}"
    try:
        dgd = state.cluster.get_dgd(state.settings.namespace, state.settings.dgd_name)
    except KubernetesError as exc:
        return failed(name, f"cannot read DynamoGraphDeployment {ref}",
                      "grant get on dynamographdeployments.nvidia.com, and check that the Dynamo CRDs are "
                      "installed", (exc.message,))
    if dgd is None:
        return failed(name, f"DynamoGraphDeployment {ref} not found",
                      "pass the right --namespace and --dgd (kubectl get dynamographdeployments -A), or set "
                      "kubernetes.namespace/dgd_name in the config")
    roles = read_roles(dgd, {Role.PREFILL: state.settings.prefill_service, Role.DECODE: state.settings.decode_service})
    if roles.problems:
        return failed(name, f"{ref} does not have exactly one prefill and one decode service",
                      "mark the workers with subComponentType: prefill / decode (or type: in v1beta1), or set "
                      "kubernetes.prefill_service / decode_service in the config", roles.problems)
    state.dgd = dgd
    try:
        pods = state.cluster.list_pods(state.settings.namespace, f"{LABEL_DGD}={state.settings.dgd_name}")
        state.workers = worker_pods(pods, state.settings.dgd_name)
    except KubernetesError:
        state.workers = None
    is_ready, why = dgd_ready(dgd)
    ready = "Ready" if is_ready else f"not Ready: {why} (the planner will only cut power until it is)"
    return passed(name, f"{ref} ({dgd.get('apiVersion')}): prefill={roles.name(Role.PREFILL)}, "
                  f"decode={roles.name(Role.DECODE)}, {ready}")


def check_agents(state: VerifyState) -> CheckResult:
    name = "agents"
    if not state.api_ok:
        return skipped(name, "kubernetes-api")
    try:
        nodes = [n for n in state.cluster.list_nodes() if is_gpu_node(n, state.settings.resource_name)]
        pods = [p for p in state.cluster.list_pods(None, selector_text(state.settings.agent_selector))
                if matches(p, state.settings.agent_selector) and not pod_is_terminating(p)]
    except KubernetesError as exc:
        return failed(name, "cannot list nodes and agent pods",
                      "run verify as an identity that may list nodes and pods cluster-wide", (exc.message,))
    if not nodes:
        return failed(name, "no GPU nodes found",
                      f"label GPU nodes {GPU_NODE_LABEL} (GPU feature discovery) or install the NVIDIA "
                      "device plugin so nodes advertise the GPU resource")
    ready_on = {str((p.get("spec") or {}).get("nodeName")) for p in pods if pod_is_ready(p)}
    missing = [name_of(n) for n in nodes if name_of(n) not in ready_on]
    if missing:
        return failed(name, f"{len(missing)} of {len(nodes)} GPU nodes have no ready agent",
                      "check the agent DaemonSet's nodeSelector/affinity/tolerations (agent.* values) and "
                      "kubectl describe the agent pods on those nodes", tuple(f"no ready agent on {m}"
                                                                              for m in missing))
    return passed(name, f"a ready agent on each of the {len(nodes)} GPU nodes")
