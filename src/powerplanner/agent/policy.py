"""What limit each GPU should have: the pure core of the agent (no I/O, no clock).

DESIGN.md section 7: the target of a GPU is the power-limit annotation of the pod that holds it,
validated (a positive integer of watts) and clamped to the GPU's ``[min, max]`` and the node policy;
with several pods on one GPU, the lowest; a GPU no managed pod holds goes back to its original limit,
or to the park limit when parking is on.

Choices made here, and why:

- Only pods in an allowed namespace are *managed*. A pod outside them never changes a limit, but the GPU it
  holds still counts as busy, so it is not parked under someone else's workload.
- A pod that holds a GPU without asking for a cap releases it (back to its original limit): no annotation
  means "no cap wanted". Except for a *new* Dynamo worker (a pod with the DGD label, younger than
  ``new_pod_grace_s``): the planner annotates new replicas within a second of their creation, but the
  kubelet may hand them their GPUs first, and the planner already counts them at their role's cap. The GPU's
  current limit may be higher than that cap (its default, when parking is off, or a previous pod's cap), so
  the GPU waits at the park limit (``park_watts``, else its minimum: below any cap) until the annotation
  arrives or the grace ends. Other pods without an annotation are released at once: the planner will never
  annotate them. A pod the kubelet reports before the pod watch has delivered it (rare: the watch sees a pod
  when it is bound, the kubelet assigns devices later; ``unseen_since_s`` says since when) may be such a
  worker, so its GPUs wait at the park limit too, for at most the grace.
- A refused annotation (not a positive integer, out of range) makes its GPU *hold* its current limit: a
  typo must neither raise the power (budget safety) nor lower it (SLA safety). Another pod's valid request
  on the same GPU still wins.
- Clamping order: node floor/ceiling first, then the GPU's own constraints, which the driver enforces anyway.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from powerplanner.agent.gpu import GpuInfo
from powerplanner.contract import (
    DGD_LABEL,
    MAX_ANNOTATION_CHARS,
    MAX_REQUEST_WATTS,
    POWER_LIMIT_ANNOTATION,
    REVISION_ANNOTATION,
    AnnotationError,
    parse_power_annotation,
    parse_revision,
)

__all__ = [
    "DGD_LABEL",
    "MAX_ANNOTATION_CHARS",
    "MAX_REQUEST_WATTS",
    "POWER_LIMIT_ANNOTATION",
    "REVISION_ANNOTATION",
    "AgentPolicy",
    "AnnotationError",
    "GpuPlan",
    "Holding",
    "PodInfo",
    "Rejection",
    "clamp_watts",
    "parse_power_annotation",
    "parse_revision",
    "plan_limits",
]

@dataclass(frozen=True)
class AgentPolicy:
    """Node policy: who may ask for caps, the node-wide range, and parking of idle GPUs."""

    allowed_namespaces: frozenset[str] = frozenset()  # empty: every namespace
    floor_watts: float | None = None
    ceiling_watts: float | None = None
    park: bool = False
    park_watts: float | None = None  # None: each GPU's minimum
    new_pod_grace_s: float = 0.0  # a new worker without an annotation waits at the park limit this long

    def allows(self, namespace: str) -> bool:
        return not self.allowed_namespaces or namespace in self.allowed_namespaces


@dataclass(frozen=True)
class PodInfo:
    """What the agent knows about a pod on its node (from the Kubernetes watch)."""

    namespace: str
    name: str
    uid: str = ""
    annotation: str | None = None  # raw value of the power-limit annotation, None when absent
    revision: int | None = None  # the planner's revision of that annotation, when a valid positive integer
    containers: tuple[tuple[str, str], ...] = ()  # (container name, container id without runtime prefix)
    created_s: float | None = None  # metadata.creationTimestamp as Unix seconds, when known
    dgd_worker: bool = False  # labelled with a DynamoGraphDeployment: a replica the planner will annotate

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


@dataclass(frozen=True)
class Holding:
    """A container of a pod holds (part of) a physical GPU."""

    gpu_uuid: str
    namespace: str
    pod: str
    container: str = ""


Action = Literal["cap", "park", "release", "hold"]


@dataclass(frozen=True)
class GpuPlan:
    """The decision for one GPU.

    ``cap``/``park``: set ``target_watts``. ``release``: back to the original limit (if the agent changed it).
    ``hold``: leave the current limit. ``holder`` is the pod whose request won (or the first holder), for labels.
    """

    uuid: str
    action: Action
    target_watts: float | None = None
    requested_watts: int | None = None
    holder: Holding | None = None
    clamps: tuple[str, ...] = ()
    revision: int | None = None  # the winning pod's annotation revision (what the agent acknowledges)


@dataclass(frozen=True)
class Rejection:
    """A refused annotation: the pod, the metric reason and the log line."""

    namespace: str
    pod: str
    uid: str
    raw: str
    reason: str
    message: str


def clamp_watts(watts: float, gpu: GpuInfo, policy: AgentPolicy) -> tuple[float, tuple[str, ...]]:
    """Clamp into the node policy, then into the GPU's constraints; return the value and the reasons."""
    reasons: list[str] = []
    value = float(watts)
    bounds = (
        ("node_ceiling", policy.ceiling_watts, min),
        ("node_floor", policy.floor_watts, max),
        ("gpu_max", gpu.max_limit_watts, min),
        ("gpu_min", gpu.min_limit_watts, max),
    )
    for reason, bound, pick in bounds:
        if bound is not None and pick(value, bound) != value:
            value = float(bound)
            reasons.append(reason)
    return value, tuple(reasons)


def plan_limits(
    gpus: Iterable[GpuInfo],
    pods: Mapping[tuple[str, str], PodInfo],
    holdings: Iterable[Holding],
    policy: AgentPolicy,
    now_s: float | None = None,
    unseen_since_s: Mapping[tuple[str, str], float] | None = None,
) -> tuple[dict[str, GpuPlan], list[Rejection]]:
    """Decide every GPU's limit. Pure: same inputs, same plan. ``now_s`` (Unix seconds) dates new pods;
    ``unseen_since_s``: when each holder the pod watch has not delivered was first reported (default: now)."""
    by_gpu: dict[str, list[Holding]] = {}
    for holding in holdings:
        by_gpu.setdefault(holding.gpu_uuid, []).append(holding)
    rejections: dict[tuple[str, str], Rejection] = {}
    plans: dict[str, GpuPlan] = {}
    for gpu in gpus:
        holders = sorted(set(by_gpu.get(gpu.uuid, [])), key=lambda h: (h.namespace, h.pod, h.container))
        requests: list[tuple[int, Holding, int | None]] = []
        refused = False
        awaited = False  # a new worker (or a pod not delivered yet) holds it and its annotation has not arrived
        for holder in holders:
            if not policy.allows(holder.namespace):
                continue
            pod = pods.get((holder.namespace, holder.pod))
            if pod is None:  # the kubelet reports it before the watch did: as new as a pod can be
                since = (unseen_since_s or {}).get((holder.namespace, holder.pod), now_s)
                awaited = awaited or _within_grace(since, policy, now_s)
                continue
            if pod.annotation is None:
                awaited = awaited or _is_new(pod, policy, now_s)
                continue
            try:
                watts = parse_power_annotation(pod.annotation, f"pod {pod.namespace}/{pod.name}")
                requests.append((watts, holder, pod.revision))
            except AnnotationError as exc:
                refused = True
                rejections.setdefault(
                    pod.key, Rejection(pod.namespace, pod.name, pod.uid, pod.annotation, exc.reason, exc.lines[0])
                )
        if requests:
            watts, winner, revision = min(requests, key=lambda r: (r[0], r[1].namespace, r[1].pod, r[1].container))
            target, clamps = clamp_watts(watts, gpu, policy)
            plans[gpu.uuid] = GpuPlan(gpu.uuid, "cap", target, watts, winner, clamps, revision)
        elif refused:
            plans[gpu.uuid] = GpuPlan(gpu.uuid, "hold", holder=holders[0])
        elif awaited:
            target, clamps = clamp_watts(_park_watts(gpu, policy), gpu, policy)
            plans[gpu.uuid] = GpuPlan(gpu.uuid, "park", target, holder=holders[0], clamps=clamps)
        elif holders:
            plans[gpu.uuid] = GpuPlan(gpu.uuid, "release", holder=holders[0])
        elif policy.park:
            target, clamps = clamp_watts(_park_watts(gpu, policy), gpu, policy)
            plans[gpu.uuid] = GpuPlan(gpu.uuid, "park", target, clamps=clamps)
        else:
            plans[gpu.uuid] = GpuPlan(gpu.uuid, "release")
    return plans, list(rejections.values())


def _park_watts(gpu: GpuInfo, policy: AgentPolicy) -> float:
    return policy.park_watts if policy.park_watts is not None else gpu.min_limit_watts


def _is_new(pod: PodInfo, policy: AgentPolicy, now_s: float | None) -> bool:
    return pod.dgd_worker and _within_grace(pod.created_s, policy, now_s)


def _within_grace(since_s: float | None, policy: AgentPolicy, now_s: float | None) -> bool:
    if now_s is None or since_s is None or policy.new_pod_grace_s <= 0:
        return False
    return now_s - since_s < policy.new_pod_grace_s
