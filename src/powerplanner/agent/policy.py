"""What limit each GPU should have: the pure core of the agent (no I/O, no clock).

The target of a GPU is the power-limit annotation of the pod that holds it, validated (a positive integer of
watts) and clamped to the GPU's ``[min, max]`` and the node policy; with several pods on one GPU, the lowest;
a GPU no managed pod holds goes to the park limit while parking is on (the default), else back to its original
limit. docs/internals.md ("agent/: the node power agent") and docs/install.md ("What holds the budget") say why.

Choices made here, and why:

- A pod is *managed* when it is in an allowed namespace (an empty list allows none) and carries the DGD label
  (``nvidia.com/dynamo-graph-deployment-name``): only the deployment's workers may ask for caps. A pod that is
  not managed never sets a limit, whatever it asks (a tenant's ``"1"`` on a time-sliced GPU must not drop a
  co-located worker), but the GPU it holds still counts as busy, so it is not parked under someone else's
  workload: such a GPU is released (back to its original limit).
- With parking on, the agent fails closed: a managed worker without a valid cap yet (a new replica the planner
  has not annotated, or one whose annotation was removed) and a pod the kubelet reports before the pod watch has
  delivered it (the watch lags, or the agent's API access fails) keep their GPUs at the park limit
  (``park_watts``, else the GPU's minimum: below any cap) until a valid annotation arrives, with no time limit.
  The planner already counts a new replica at its role's cap, so the park limit keeps the node under the
  budget; the cost is that a worker nobody annotates stays at the park limit.
- With parking off, the same GPUs wait at the park limit for at most ``new_pod_grace_s`` (a worker by its
  creation time, an undelivered pod since it was first reported), then go back to their original limit: no
  annotation means "no cap wanted".
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
    "EMPTY_NAMESPACES_LINE",
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

# Logged at start-up when no namespace is allowed: the agent then honours no cap (it still parks free GPUs).
EMPTY_NAMESPACES_LINE = (
    "agent.allowed_namespaces is empty: no pod's cap is honoured; set it to the DGD's namespaces"
)


@dataclass(frozen=True)
class AgentPolicy:
    """Node policy: who may ask for caps, the node-wide range, and parking of idle GPUs.

    The defaults are the config's (``agent.*`` in docs/configuration.md): parking on, no namespace allowed.
    """

    allowed_namespaces: frozenset[str] = frozenset()  # empty: no namespace (no pod's cap is honoured)
    floor_watts: float | None = None
    ceiling_watts: float | None = None
    park: bool = True
    park_watts: float | None = None  # None: each GPU's minimum
    new_pod_grace_s: float = 0.0  # parking off: how long a worker without a cap waits at the park limit

    def allows(self, namespace: str) -> bool:
        return namespace in self.allowed_namespaces

    def manages(self, pod: PodInfo) -> bool:
        """Whether ``pod`` may set a limit: a Dynamo worker (DGD label) in an allowed namespace."""
        return pod.dgd_worker and self.allows(pod.namespace)


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
    ``hold``: leave the current limit. ``holder`` is the pod whose request won (else the first managed holder,
    else the first holder), for labels.
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
    # One function on purpose (about 60 lines): per GPU, the holders' requests and the fallbacks (cap, hold, park,
    # release) are one decision table, read in the order the module docstring states it.
    by_gpu: dict[str, list[Holding]] = {}
    for holding in holdings:
        by_gpu.setdefault(holding.gpu_uuid, []).append(holding)
    rejections: dict[tuple[str, str], Rejection] = {}
    plans: dict[str, GpuPlan] = {}
    for gpu in gpus:
        holders = sorted(set(by_gpu.get(gpu.uuid, [])), key=lambda h: (h.namespace, h.pod, h.container))
        requests: list[tuple[int, Holding, int | None]] = []
        refused = False
        awaited = False  # a managed worker (or a pod not delivered yet) holds it and has no cap yet
        managed: list[Holding] = []  # holders that may set its limit (named in the plan and the metrics)
        for holder in holders:
            if not policy.allows(holder.namespace):
                continue  # not managed: never sets a limit (the GPU is busy, so it is not parked either)
            pod = pods.get((holder.namespace, holder.pod))
            if pod is None:  # the kubelet reports it before the watch did: maybe a new worker
                since = (unseen_since_s or {}).get((holder.namespace, holder.pod), now_s)
                managed.append(holder)
                awaited = awaited or policy.park or _within_grace(since, policy, now_s)
                continue
            if not policy.manages(pod):
                continue  # no DGD label: not the deployment's worker, its annotation is not read
            managed.append(holder)
            if pod.annotation is None:
                awaited = awaited or policy.park or _within_grace(pod.created_s, policy, now_s)
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
            plans[gpu.uuid] = GpuPlan(gpu.uuid, "hold", holder=managed[0])
        elif awaited:
            target, clamps = clamp_watts(_park_watts(gpu, policy), gpu, policy)
            plans[gpu.uuid] = GpuPlan(gpu.uuid, "park", target, holder=managed[0], clamps=clamps)
        elif holders:
            plans[gpu.uuid] = GpuPlan(gpu.uuid, "release", holder=(managed or holders)[0])
        elif policy.park:
            target, clamps = clamp_watts(_park_watts(gpu, policy), gpu, policy)
            plans[gpu.uuid] = GpuPlan(gpu.uuid, "park", target, clamps=clamps)
        else:
            plans[gpu.uuid] = GpuPlan(gpu.uuid, "release")
    return plans, list(rejections.values())


def _park_watts(gpu: GpuInfo, policy: AgentPolicy) -> float:
    return policy.park_watts if policy.park_watts is not None else gpu.min_limit_watts


def _within_grace(since_s: float | None, policy: AgentPolicy, now_s: float | None) -> bool:
    if now_s is None or since_s is None or policy.new_pod_grace_s <= 0:
        return False
    return now_s - since_s < policy.new_pod_grace_s
