"""Turning a Decision's ordered steps into cluster changes, safely.

The rules that decide whether a step may run now (stop after a failure; on a DGD that is not Ready only power
cuts; after a cap cut of this tick, power-adding steps wait until the agents have applied it; ``wait_for_drain``
steps wait while replicas drain) are shared with the simulator in :mod:`powerplanner.planning.execution`. This
module shows them the cluster as the live planner sees it and performs the steps they allow.

A role's counted cap is the highest of the agents' report, the annotation and what the agents have not
acknowledged (see ``observe.build_observation``): the worst case the plan counted. The price of waiting for a cut
is one cap tick or more (until Prometheus has scraped the agents) of delay on a rebalance.

The other side of that worst case: after a cut the agents have not acknowledged, the role still counts at
its older, higher cap, so a plan back up to that cap has no step (the planner sees it in force) while the
annotation stays at the cut. :func:`catch_up_caps` writes such a role's target: it is no higher than what the
plan already counts, so it adds no power and needs no acknowledgement. Without it a planner whose feedback is
blind (live/feedback.py) would leave that role at the cut for good.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from powerplanner import contract
from powerplanner.kube.errors import KubernetesError
from powerplanner.live.cluster_view import Actuator, ClusterState
from powerplanner.model.roles import ROLES, Role
from powerplanner.model.values import Step, StepKind
from powerplanner.planning.execution import (
    CATCH_UP,
    ClusterView,
    Outcome,
    RoleView,
    StepOutcome,
    Wait,
    catch_up_roles,
    run_steps,
)

__all__ = ["CATCH_UP", "WAITING_FOR_CUT", "Outcome", "StepOutcome", "catch_up_caps", "cluster_view", "execute"]

log = logging.getLogger(__name__)

WAITING_FOR_CUT = Wait.CUT_PENDING.value
_DRY_RUN = "dry run: not applied"


def cluster_view(state: ClusterState, current_caps: Mapping[Role, float | None]) -> ClusterView:
    """The rules' view of the cluster: the DGD's replica counts and readiness, the caps the plan counted
    (``current_caps``) and the lowest cap annotated on each role's live pods."""
    roles = {}
    for role in ROLES:
        rc = state.role(role)
        written = [p.cap_watts for p in rc.pods if not p.terminating]
        lowest = None if not written or None in written else float(min(w for w in written if w is not None))
        roles[role] = RoleView(rc.spec_replicas, rc.draining_replicas, current_caps.get(role), lowest)
    return ClusterView(roles, state.ready, state.ready_detail)


def _failed(step: Step, exc: KubernetesError) -> StepOutcome:
    return StepOutcome(step, Outcome.FAILED, f"{exc.kind}: {exc.message}", error_kind=exc.kind)


def execute(
    steps: tuple[Step, ...],
    state: ClusterState,
    actuator: Actuator,
    current_caps: Mapping[Role, float | None],
    dry_run: bool = False,
) -> list[StepOutcome]:
    """Run ``steps`` in order, each as the shared rules allow (planning/execution.py)."""
    view = cluster_view(state, current_caps)
    desired = {role: view.role(role).desired_replicas for role in ROLES}  # as this tick's steps leave them

    def act(step: Step) -> StepOutcome:
        if dry_run:
            return StepOutcome(step, Outcome.DRY_RUN, _DRY_RUN)
        try:
            if step.kind is StepKind.SET_CAP:
                patched = actuator.set_cap(step.role, step.value)
                return StepOutcome(step, Outcome.DONE, pods_patched=patched, changed=patched > 0)
            replicas = int(step.value)
            actuator.scale(step.role, replicas)
            changed, desired[step.role] = replicas != desired[step.role], replicas
            return StepOutcome(step, Outcome.DONE, changed=changed)
        except KubernetesError as exc:
            log.error("step %s %s=%g failed: %s", step.kind.value, step.role.value, step.value, exc.message)
            return _failed(step, exc)

    return run_steps(steps, view, act)


def catch_up_caps(
    targets: Mapping[Role, float],
    state: ClusterState,
    actuator: Actuator,
    current_caps: Mapping[Role, float | None],
    done: Sequence[StepOutcome],
    provisioned_watts: float = 0.0,
    dry_run: bool = False,
) -> list[StepOutcome]:
    """Write ``targets[role]`` on the roles :func:`~powerplanner.planning.execution.catch_up_roles` names (the
    annotation below the target, the target no higher than the role's counted cap, no cap step planned), on a
    Ready DGD after steps that all succeeded. Stops at the first failure."""
    written: dict[Role, float] = {}
    for role, target in targets.items():
        try:
            written[role] = float(contract.format_power_annotation(target))  # as the annotation holds it
        except ValueError:
            continue
    outcomes: list[StepOutcome] = []
    for role in catch_up_roles(written, cluster_view(state, current_caps), done):
        step = Step(StepKind.SET_CAP, role, targets[role], provisioned_watts)
        if dry_run:
            outcomes.append(StepOutcome(step, Outcome.DRY_RUN, _DRY_RUN))
            continue
        try:
            patched = actuator.set_cap(role, targets[role])
        except KubernetesError as exc:
            log.error("catch-up cap %s=%g failed: %s", role.value, targets[role], exc.message)
            outcomes.append(_failed(step, exc))
            break
        outcomes.append(StepOutcome(step, Outcome.DONE, CATCH_UP, pods_patched=patched, changed=patched > 0))
    return outcomes
