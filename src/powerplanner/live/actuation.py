"""Turning a Decision's ordered steps into cluster changes, safely.

The planner orders steps so provisioned power never exceeds the budget if they run in order. This module
keeps that promise when reality interferes: it stops at the first failed step (a later raise may rely on
an earlier cut), skips a ``wait_for_drain`` step while replicas are still draining (including ones this
very tick started draining), and on a DGD that is not Ready performs only steps that cut power.

A lower cap is only an annotation until each node's agent has set it, while a raise written after it can
be applied first on another node. The plan credits a cap cut at once, so every step after a cut that adds
power waits until the cut is in force: while a role's observed cap (the highest of the agents' report, the
annotation and what the agents have not acknowledged, see ``loop.build_observation``) is above a cut step's
value, the tick runs the cut and the other cuts, and leaves the rest to a later tick. The price is one cap
tick or more (until Prometheus has scraped the agents) of delay on a rebalance.

The other side of that worst case: after a cut the agents have not acknowledged, the role still counts at
its older, higher cap, so a plan back up to that cap has no step (the planner sees it in force) while the
annotation stays at the cut. :func:`catch_up_caps` writes such a role's target: it is no higher than what the
plan already counts, so it adds no power and needs no acknowledgement. Without it a planner whose feedback is
blind (live/feedback.py) would leave that role at the cut for good.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from powerplanner import contract
from powerplanner.live.kubernetes import Actuator, ClusterState, KubernetesError
from powerplanner.model.roles import ROLES, Role
from powerplanner.model.values import Step, StepKind

log = logging.getLogger(__name__)

WAITING_FOR_CUT = "waiting for the agents to apply a lower cap first"
CATCH_UP = "annotation below the cap the plan already counts: written back (no power added)"


@dataclass(frozen=True)
class StepOutcome:
    step: Step
    outcome: str  # done, skipped, failed, dry_run, not_run
    detail: str = ""
    pods_patched: int = 0
    changed: bool = False  # the cluster actually changed (the planner repeats unchanged caps every tick)


def cuts_power(step: Step, state: ClusterState, current_caps: Mapping[Role, float | None]) -> bool:
    """True when the step can only lower provisioned power: a lower cap, or fewer replicas."""
    if step.kind is StepKind.SET_CAP:
        current = current_caps.get(step.role)
        return current is None or step.value < current
    return int(step.value) < state.role(step.role).spec_replicas


def skip_reason(step: Step, state: ClusterState, current_caps: Mapping[Role, float | None],
                draining_now: bool, cut_pending: bool = False) -> str | None:
    """Why a step must not run now, or None. ``cut_pending``: an earlier step lowered a cap that is not in
    force yet."""
    if not state.ready and not cuts_power(step, state, current_caps):
        return f"DGD not Ready ({state.ready_detail}); only power cuts are applied"
    if cut_pending and not cuts_power(step, state, current_caps):
        return WAITING_FOR_CUT
    if step.wait_for_drain and draining_now:
        return "waiting for draining replicas to release their GPUs"
    return None


def execute(
    steps: tuple[Step, ...],
    state: ClusterState,
    actuator: Actuator,
    current_caps: Mapping[Role, float | None],
    dry_run: bool = False,
) -> list[StepOutcome]:
    """Run ``steps`` in order; see the module docstring for the rules."""
    outcomes: list[StepOutcome] = []
    draining_now = any(rc.draining_replicas > 0 for rc in state.roles.values())
    failed = False
    cut_pending = False
    for step in steps:
        if failed:
            outcomes.append(StepOutcome(step, "not_run", "an earlier step failed"))
            continue
        reason = skip_reason(step, state, current_caps, draining_now, cut_pending)
        if reason is not None:
            outcomes.append(StepOutcome(step, "skipped", reason))
            continue
        if dry_run:
            outcomes.append(StepOutcome(step, "dry_run", "dry run: not applied"))
            continue
        try:
            if step.kind is StepKind.SET_CAP:
                patched = actuator.set_cap(step.role, step.value)
                cut_pending = cut_pending or cuts_power(step, state, current_caps)
                outcomes.append(StepOutcome(step, "done", pods_patched=patched, changed=patched > 0))
            else:
                replicas = int(step.value)
                actuator.scale(step.role, replicas)
                current = state.role(step.role).spec_replicas
                if replicas < current:
                    draining_now = True  # the removed replicas hold their GPUs until they are gone
                outcomes.append(StepOutcome(step, "done", changed=replicas != current))
        except KubernetesError as exc:
            log.error("step %s %s=%g failed: %s", step.kind.value, step.role.value, step.value, exc.message)
            outcomes.append(StepOutcome(step, "failed", f"{exc.kind}: {exc.message}"))
            failed = True
    return outcomes


def catch_up_caps(
    targets: Mapping[Role, float],
    state: ClusterState,
    actuator: Actuator,
    current_caps: Mapping[Role, float | None],
    done: list[StepOutcome],
    provisioned_watts: float = 0.0,
    dry_run: bool = False,
) -> list[StepOutcome]:
    """Write ``targets[role]`` on a role the plan gave no cap step when a live pod's annotation is below it
    and it is no higher than the role's counted cap (``current_caps``, the worst case the plan counted). Runs
    only on a Ready DGD and after steps that all succeeded."""
    if not state.ready or any(o.outcome == "failed" for o in done):
        return []
    planned = {o.step.role for o in done if o.step.kind is StepKind.SET_CAP}
    outcomes: list[StepOutcome] = []
    for role in ROLES:
        target, counted = targets.get(role), current_caps.get(role)
        written = [p.cap_watts for p in state.role(role).pods if not p.terminating]
        if role in planned or target is None or counted is None or not written or None in written:
            continue
        try:
            target_watts = int(contract.format_power_annotation(target))
        except ValueError:
            continue
        if not min(w for w in written if w is not None) < target_watts <= counted:
            continue
        step = Step(StepKind.SET_CAP, role, target, provisioned_watts)
        if dry_run:
            outcomes.append(StepOutcome(step, "dry_run", "dry run: not applied"))
            continue
        try:
            patched = actuator.set_cap(role, target)
        except KubernetesError as exc:
            log.error("catch-up cap %s=%g failed: %s", role.value, target, exc.message)
            outcomes.append(StepOutcome(step, "failed", f"{exc.kind}: {exc.message}"))
            break
        outcomes.append(StepOutcome(step, "done", CATCH_UP, pods_patched=patched, changed=patched > 0))
    return outcomes
