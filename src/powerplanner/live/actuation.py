"""Turning a Decision's ordered steps into cluster changes, safely.

The planner orders steps so provisioned power never exceeds the budget if they run in order. This module
keeps that promise when reality interferes: it stops at the first failed step (a later raise may rely on
an earlier cut), skips a ``wait_for_drain`` step while replicas are still draining (including ones this
very tick started draining), and on a DGD that is not Ready performs only steps that cut power.

A lower cap is only an annotation until each node's agent has set it, while a raise written after it can
be applied first on another node. So once this tick has written a lower cap, every later step that adds
power waits: the next tick re-plans it with the lowered role counted at the higher of the agents' report
and its annotation (see ``loop.build_observation``), so the raise only uses power that is free even if the
cut has not landed yet. The price is one cap tick of delay on a rebalance.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from powerplanner.live.kubernetes import Actuator, ClusterState, KubernetesError
from powerplanner.model.roles import Role
from powerplanner.model.values import Step, StepKind

log = logging.getLogger(__name__)


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
                draining_now: bool, cut_written: bool = False) -> str | None:
    """Why a step must not run now, or None. ``cut_written``: this tick has written a lower cap."""
    if not state.ready and not cuts_power(step, state, current_caps):
        return f"DGD not Ready ({state.ready_detail}); only power cuts are applied"
    if cut_written and not cuts_power(step, state, current_caps):
        return "waiting for the agents to apply the lower caps written this tick"
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
    cut_written = False
    for step in steps:
        if failed:
            outcomes.append(StepOutcome(step, "not_run", "an earlier step failed"))
            continue
        reason = skip_reason(step, state, current_caps, draining_now, cut_written)
        if reason is not None:
            outcomes.append(StepOutcome(step, "skipped", reason))
            continue
        if dry_run:
            outcomes.append(StepOutcome(step, "dry_run", "dry run: not applied"))
            continue
        try:
            if step.kind is StepKind.SET_CAP:
                patched = actuator.set_cap(step.role, step.value)
                cut_written = cut_written or (patched > 0 and cuts_power(step, state, current_caps))
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
