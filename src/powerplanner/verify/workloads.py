"""Pure readings of Kubernetes objects: the roles of a DynamoGraphDeployment, worker pods, GPU nodes.

Plain dicts in (as the API returns them), plain values out, no I/O, so every rule is unit-testable.
Matches DESIGN.md section 2: exactly one service per ``subComponentType``; fallback names when it is absent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from powerplanner import contract

LABEL_DGD = contract.DGD_LABEL
LABEL_SUBTYPE = contract.SUB_COMPONENT_LABEL
CAP_ANNOTATION = contract.POWER_LIMIT_ANNOTATION
GPU_PRESENT_LABEL = "nvidia.com/gpu.present"

FALLBACK_NAMES: Mapping[str, str] = {
    "VllmPrefillWorker": "prefill",
    "VllmDecodeWorker": "decode",
    "prefill": "prefill",
    "decode": "decode",
    "TRTLLMPrefillWorker": "prefill",
    "TRTLLMDecodeWorker": "decode",
}


@dataclass(frozen=True)
class DgdRoles:
    """Service names found per role; a valid DGD has exactly one of each."""

    prefill: tuple[str, ...]
    decode: tuple[str, ...]

    @property
    def problems(self) -> tuple[str, ...]:
        out = []
        for role, names in (("prefill", self.prefill), ("decode", self.decode)):
            if len(names) != 1:
                found = ", ".join(names) if names else "none"
                out.append(f"{len(names)} {role} services (found: {found}); exactly one is needed")
        return tuple(out)


def dgd_roles(dgd: Mapping[str, Any], prefill_override: str | None = None,
              decode_override: str | None = None) -> DgdRoles:
    """Which services are prefill and decode: ``subComponentType`` (v1alpha1) or ``type`` (v1beta1), else the
    conventional names; an override from the config wins for its role."""
    spec = dgd.get("spec") or {}
    typed: dict[str, str] = {}
    if isinstance(spec.get("components"), list):
        for comp in spec["components"]:
            name = str(comp.get("name", ""))
            role = str(comp.get("type") or comp.get("subComponentType") or FALLBACK_NAMES.get(name, ""))
            typed[name] = role
    else:
        for name, svc in (spec.get("services") or {}).items():
            role = str((svc or {}).get("subComponentType") or FALLBACK_NAMES.get(name, ""))
            typed[name] = role
    prefill = tuple(n for n, r in typed.items() if r == "prefill")
    decode = tuple(n for n, r in typed.items() if r == "decode")
    if prefill_override:
        prefill = (prefill_override,) if prefill_override in typed else ()
    if decode_override:
        decode = (decode_override,) if decode_override in typed else ()
    return DgdRoles(prefill=prefill, decode=decode)


def dgd_is_ready(dgd: Mapping[str, Any]) -> bool:
    status = dgd.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return str(status.get("state", "")).lower() == "successful"


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
