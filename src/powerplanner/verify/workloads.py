"""Pure readings of Kubernetes objects for ``verify``: worker pods, their cap annotations, GPU nodes.

Plain dicts in (as the API returns them), plain values out, no I/O, so every rule is unit-testable. The
DynamoGraphDeployment itself (its prefill and decode services, Ready) is read by :mod:`powerplanner.kube.dgd`,
the planner's own rules, so that ``verify`` passes a DGD exactly when the planner can manage it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from powerplanner import contract

LABEL_DGD = contract.DGD_LABEL
LABEL_SUBTYPE = contract.SUB_COMPONENT_LABEL
CAP_ANNOTATION = contract.POWER_LIMIT_ANNOTATION
GPU_PRESENT_LABEL = "nvidia.com/gpu.present"


def labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def pod_is_ready(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") != "Running":
        return False
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def pod_is_terminating(pod: Mapping[str, Any]) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def pod_gpus(pod: Mapping[str, Any], resource_name: str = "nvidia.com/gpu") -> int:
    """GPUs a pod holds: the sum of its containers' limits (requests when no limit) of the GPU resource."""
    total = 0
    for container in (pod.get("spec") or {}).get("containers") or []:
        resources = container.get("resources") or {}
        raw = (resources.get("limits") or {}).get(resource_name) or (resources.get("requests") or {}).get(resource_name)
        try:
            total += int(str(raw)) if raw is not None else 0
        except ValueError:
            continue
    return total


def worker_pods(pods: Sequence[Mapping[str, Any]], dgd_name: str) -> dict[str, list[Mapping[str, Any]]]:
    """Worker pods of a DGD by role (filtered here: the API may ignore the label selector)."""
    out: dict[str, list[Mapping[str, Any]]] = {"prefill": [], "decode": []}
    for pod in pods:
        pod_labels = labels(pod)
        role = pod_labels.get(LABEL_SUBTYPE)
        if pod_labels.get(LABEL_DGD) == dgd_name and role in out:
            out[role].append(pod)
    return out


def cap_annotation(pod: Mapping[str, Any]) -> tuple[int | None, str | None]:
    """The pod's per-GPU power limit annotation as (watts, None), or (None, why it is unusable), read with the
    agent's own parser (contract.parse_power_annotation): what verify accepts is what the agent applies."""
    raw = ((pod.get("metadata") or {}).get("annotations") or {}).get(CAP_ANNOTATION)
    if raw is None:
        return None, "no annotation"
    try:
        return contract.parse_power_annotation(str(raw), where="refused by the agent"), None
    except contract.AnnotationError as exc:
        return None, str(exc)


def is_gpu_node(node: Mapping[str, Any], resource_name: str = "nvidia.com/gpu") -> bool:
    """A node that offers GPUs: the GPU resource in its capacity/allocatable, or GPU feature discovery's label."""
    if labels(node).get(GPU_PRESENT_LABEL) == "true":
        return True
    status = node.get("status") or {}
    for key in ("allocatable", "capacity"):
        raw = (status.get(key) or {}).get(resource_name)
        try:
            if raw is not None and int(str(raw)) > 0:
                return True
        except ValueError:
            continue
    return False


def name_of(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", "?"))
