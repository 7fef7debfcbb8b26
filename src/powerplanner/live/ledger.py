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
"""

from __future__ import annotations

from collections.abc import Mapping

from powerplanner.live.kubernetes import ClusterState
from powerplanner.model.roles import ROLES, Role


class CapLedger:
    """Per pod, the highest cap annotated since its agent last acknowledged the current one."""

    def __init__(self) -> None:
        self._highest_watts: dict[str, float] = {}
        self._agents_seen = False

    @property
    def active(self) -> bool:
        """Some agent has reported a revision: the feedback path has worked at least once."""
        return self._agents_seen

    def update(
        self, state: ClusterState, revision_by_pod: Mapping[str, tuple[float, float]]
    ) -> dict[Role, float | None]:
        """Record this tick's annotations and acknowledgements (``revision_by_pod``: the lowest and highest
        revision the agents acted on over each pod's GPUs, as last scraped). Returns, per role, the highest
        cap one of its pods (draining ones included) may still apply; None when no pod of the role has one."""
        self._agents_seen = self._agents_seen or bool(revision_by_pod)
        seen: set[str] = set()
        highest: dict[Role, float | None] = {}
        for role in ROLES:
            values: list[float] = []
            for pod in state.role(role).pods:
                seen.add(pod.name)
                if pod.cap_watts is not None:
                    cap = float(pod.cap_watts)
                    acked = revision_by_pod.get(pod.name)
                    if pod.cap_revision is not None and acked is not None and acked[0] == acked[1] == pod.cap_revision:
                        self._highest_watts[pod.name] = cap
                    else:
                        self._highest_watts[pod.name] = max(self._highest_watts.get(pod.name, cap), cap)
                if pod.name in self._highest_watts:
                    values.append(self._highest_watts[pod.name])
            highest[role] = max(values) if values else None
        for name in [n for n in self._highest_watts if n not in seen]:
            del self._highest_watts[name]  # the pod is gone, and its GPUs with it
        return highest
