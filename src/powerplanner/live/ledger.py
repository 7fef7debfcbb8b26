"""Caps written to pods that their agents may still apply.

A node's agent applies a pod's cap annotations in the order its watch delivers them. One that lags by more
than a cap tick (its watch fell behind, it is restarting) can still apply a cap the planner has since
replaced: prefill raised at one tick and cut back at the next, the agent applies the raise after the plan
already counted prefill at the cut. So a pod is counted at the highest cap it has been annotated with since
its agent last acknowledged its current annotation.

The acknowledgement is a revision, not the cap itself: the actuator writes
``powerplanner.dev/gpu-power-limit-revision`` (+1 each time) in the same patch as each cap, and the agent
exports the revision it acted on per GPU (``powerplanner_agent_gpu_power_limit_revision``, pod label).
Once every GPU of the pod reports the pod's current revision, the agent has processed everything written
before it, and what it applied is in its ``applied`` report. Matching the cap value instead would be
fooled by a write that returns to an earlier value (557 -> 700 -> 557 W: a lagging agent still shows the
first 557 and has the 700 ahead of it; hypothesis found exactly that).

Without that metric (a power source other than our agent) nothing could ever be acknowledged, so the loop
does not keep a ledger and counts the current annotation and the reported limit only. With it, "no series"
is never an acknowledgement: while the agents' series do not reach the planner (none is scraped yet, or the
monitor relabels them: live/feedback.py says so after ``planner.blind_ticks`` ticks), every pod counts at the
highest cap annotated since its agent last acknowledged one. The price is that power moved between roles
(a cut on one, a raise on the other) waits for the acknowledgement; a raise the budget allows on its own does
not. See docs/operations.md ("The planner's feedback is blind").

A pod that is gone does not take its power with it at once: its GPUs keep its limit until its node's agent
parks them (or applies a new holder's cap), and while that agent is down (a rollout step, a crash loop) nobody
does. A new pod that gets them starts at the old pod's limit, above its own cap when power moved to a role
capped lower. So a gone pod whose GPUs the agents have reported (their per-GPU series name the holder of each
``uuid``) is still counted, as a draining replica of its role at its highest cap, until an agent reports every
one of those GPUs with another holder or none: positive evidence of a pass after the pod left (a down agent's
series go stale; that is never a release). Scale-ups that wait for draining replicas wait for it too. A pod
whose GPUs were never reported (gone before its agent's first scrape, or the feedback is blind) cannot be
followed and is released when it is gone. See docs/operations.md ("The budget, path by path").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Set
from dataclasses import dataclass

from powerplanner.live.cluster_view import ClusterState
from powerplanner.model.roles import ROLES, Role

Holder = tuple[str, str]
"""(namespace, pod) of a GPU's holder as an agent reports it; ("", "") when none (parked or free)."""


@dataclass(frozen=True)
class GoneHolder:
    """A pod no longer in the API whose GPUs no agent has reported released yet."""

    role: Role
    cap_watts: float  # the highest cap annotated since its agent's last acknowledgement
    gpus: frozenset[str]  # the uuids its agent reported it holding


class CapLedger:
    """Per pod, the highest cap annotated since its agent last acknowledged the current one; and the gone pods
    whose GPUs may still be at their limit."""

    def __init__(self) -> None:
        self._highest_watts: dict[str, float] = {}
        self._agents_seen = False
        self._held: dict[str, tuple[Role, frozenset[str]]] = {}  # live pod -> its role, the uuids it was seen on
        self._gone: dict[str, GoneHolder] = {}

    @property
    def active(self) -> bool:
        """Some agent has reported a revision: the feedback path has worked at least once."""
        return self._agents_seen

    @property
    def gone_holders(self) -> Mapping[str, GoneHolder]:
        """Gone pods still counted, by name."""
        return dict(self._gone)

    def update(
        self, state: ClusterState, revision_by_pod: Mapping[str, tuple[float, float]],
        holders_by_gpu: Mapping[str, Set[Holder]] | None = None,
    ) -> dict[Role, float | None]:
        """Record this tick's annotations and acknowledgements (``revision_by_pod``: the lowest and highest
        revision the agents acted on over each pod's GPUs, as last scraped) and the holders the agents report
        per GPU uuid (``holders_by_gpu``; None when this read could not tell: nothing is released). Returns, per
        role, the highest cap one of its pods (draining and gone ones included) may still apply; None when no
        pod of the role has one."""
        self._agents_seen = self._agents_seen or bool(revision_by_pod)
        seen: set[str] = set()
        highest: dict[Role, float | None] = {}
        for role in ROLES:
            values: list[float] = []
            for pod in state.role(role).pods:
                seen.add(pod.name)
                again = self._gone.pop(pod.name, None)  # the same name again: it may hold the same GPUs
                if again is not None:
                    self._highest_watts[pod.name] = max(self._highest_watts.get(pod.name, 0.0), again.cap_watts)
                if pod.cap_watts is not None:
                    cap = float(pod.cap_watts)
                    acked = revision_by_pod.get(pod.name)
                    if pod.cap_revision is not None and acked is not None and acked[0] == acked[1] == pod.cap_revision:
                        self._highest_watts[pod.name] = cap
                    else:
                        self._highest_watts[pod.name] = max(self._highest_watts.get(pod.name, cap), cap)
                if pod.name in self._highest_watts:
                    values.append(self._highest_watts[pod.name])
                gpus = self._held.get(pod.name, (role, frozenset()))[1]
                if holders_by_gpu is not None:
                    me = (state.namespace, pod.name)
                    gpus = gpus | {uuid for uuid, who in holders_by_gpu.items() if me in who}
                self._held[pod.name] = (role, gpus)
            highest[role] = max(values) if values else None
        for name in [n for n in self._held if n not in seen]:
            gone_role, gone_gpus = self._held.pop(name)
            last_watts = self._highest_watts.get(name)
            if last_watts is not None and gone_gpus:
                self._gone[name] = GoneHolder(gone_role, last_watts, gone_gpus)
        for name in [n for n in self._highest_watts if n not in seen]:
            del self._highest_watts[name]  # the pod is gone; its GPUs are followed in _gone when they were seen
        if holders_by_gpu is not None:
            for name, gone in list(self._gone.items()):
                me = (state.namespace, name)
                if all(uuid in holders_by_gpu and me not in holders_by_gpu[uuid] for uuid in gone.gpus):
                    del self._gone[name]  # an agent has passed over each of its GPUs since it left
        for gone in self._gone.values():
            now = highest[gone.role]
            highest[gone.role] = gone.cap_watts if now is None else max(now, gone.cap_watts)
        return highest

    def counted_state(self, state: ClusterState) -> ClusterState:
        """``state`` with each gone pod still counted as a draining replica of its role: the plan counts its
        power, and a scale-up that waits for draining replicas waits for its GPUs' release."""
        extra = {role: sum(1 for g in self._gone.values() if g.role is role) for role in ROLES}
        if not any(extra.values()):
            return state
        roles = {role: dataclasses.replace(rc, draining_replicas=rc.draining_replicas + extra.get(role, 0))
                 for role, rc in state.roles.items()}
        return dataclasses.replace(state, roles=roles)
