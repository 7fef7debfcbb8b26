"""May this step run now, given what the cluster shows? The step-execution rules of the live actuator and the
simulator, in one place (docs/planner.md, "Power-safe transitions").

A Decision's steps are ordered so that provisioned power never exceeds the budget if they run in order
(:mod:`powerplanner.planning.transitions`). Reality interferes, and each rule below keeps the promise anyway.
A step waits (and a later tick re-plans it from the state then in force) when

1. an earlier step of the tick failed (``EARLIER_FAILURE``): a later raise may rely on the cut that failed;
2. the DGD is not Ready (``DGD_NOT_READY``) and the step does not cut power: a rollout or a stuck reconcile
   may be holding replicas the view does not count yet;
3. a cap cut of this tick is not in force yet (``CUT_PENDING``) and the step does not cut power. The plan
   credits a cut at once, but a cap is only an annotation until each node's agent has set it, while a raise
   written after it can be applied first on another node. A cut is a cap below the role's counted cap (the
   worst case the plan counted as in force); while it waits, the cuts still run;
4. it is a ``wait_for_drain`` scale-up and replicas drain (``DRAINING``), including those a scale-down of this
   very tick started draining (they hold their GPUs until they are gone).

A step cuts power when it can only lower provisioned power: a cap below the counted cap (any cap when the
counted cap is unknown: the plan counts it at the GPU's maximum), or fewer replicas than the desired count.

After the steps, :func:`catch_up_roles` names the roles whose annotation is below the decision's target while
the plan already counts the role at or above that target (a cut the agents have not acknowledged, then
planned back up: no step, as the plan sees the higher cap in force). Writing the target there adds no power.

The live actuator (:mod:`powerplanner.live.actuation`) and the simulator (:mod:`powerplanner.sim.loop`) build a
:class:`ClusterView` from what they show and run their steps through :func:`run_steps`. The simulator models no
operator: its DGD is always Ready, so rule 2 never applies there. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

from powerplanner.model.roles import ROLES, Role
from powerplanner.model.values import Step, StepKind


class Outcome(StrEnum):
    """How a step ended; the values are the ``outcome`` label of ``powerplanner_steps_total``."""

    DONE = "done"
    SKIPPED = "skipped"  # a rule made it wait (see :class:`Wait`)
    FAILED = "failed"  # the cluster refused it
    DRY_RUN = "dry_run"  # allowed, not applied (live dry-run mode)
    NOT_RUN = "not_run"  # an earlier step failed


class Wait(StrEnum):
    """Why a step does not run now. The value is the outcome's detail (``DGD_NOT_READY`` adds the DGD's
    state, see :func:`wait_detail`)."""

    EARLIER_FAILURE = "an earlier step failed"
    DGD_NOT_READY = "DGD not Ready; only power cuts are applied"
    CUT_PENDING = "waiting for the agents to apply a lower cap first"
    DRAINING = "waiting for draining replicas to release their GPUs"


CATCH_UP = "annotation below the cap the plan already counts: written back (no power added)"
"""The detail of a step :func:`catch_up_roles` added."""


@dataclass(frozen=True)
class RoleView:
    """One role as the cluster shows it at the start of the tick."""

    desired_replicas: int  # what the replica count is set to (ready + starting)
    draining_replicas: int
    counted_cap_watts: float | None  # the cap the plan counted as in force (the worst case); None: unknown
    lowest_written_cap_watts: float | None = None  # lowest cap annotated on its live pods; None: one has none


@dataclass(frozen=True)
class ClusterView:
    """What the rules need of the cluster: each role, and whether the DGD is Ready."""

    roles: Mapping[Role, RoleView]
    ready: bool = True
    ready_detail: str = "Ready"

    def role(self, role: Role) -> RoleView:
        return self.roles[role]


@dataclass(frozen=True)
class StepOutcome:
    step: Step
    outcome: Outcome
    detail: str = ""
    pods_patched: int = 0
    changed: bool = False  # the cluster actually changed (the planner repeats unchanged caps every tick)
    wait: Wait | None = None  # why it was skipped or not run
    error_kind: str | None = None  # why a failed step failed (a kube.errors.KubeErrorKind; the loop counts by it)


@dataclass(frozen=True)
class TickProgress:
    """What the steps run so far this tick changed about the rules."""

    cut_pending: bool = False  # a cap cut ran: the agents have not applied it yet
    draining: bool = False  # replicas drain (seen in the view, or removed by a step of this tick)
    failed: bool = False  # a step failed: nothing else runs this tick

    @classmethod
    def start(cls, view: ClusterView) -> TickProgress:
        return cls(draining=any(rv.draining_replicas > 0 for rv in view.roles.values()))

    def after(self, step: Step, view: ClusterView, outcome: Outcome) -> TickProgress:
        """The progress once ``step`` ended with ``outcome`` (only a step that ran changes the cluster)."""
        if outcome == Outcome.FAILED:
            return replace(self, failed=True)
        if outcome != Outcome.DONE or not cuts_power(step, view):
            return self
        if step.kind is StepKind.SET_CAP:
            return replace(self, cut_pending=True)
        return replace(self, draining=True)  # the removed replicas hold their GPUs until they are gone


def cuts_power(step: Step, view: ClusterView) -> bool:
    """True when the step can only lower provisioned power: a lower cap, or fewer replicas."""
    rv = view.role(step.role)
    if step.kind is StepKind.SET_CAP:
        return rv.counted_cap_watts is None or step.value < rv.counted_cap_watts
    return int(step.value) < rv.desired_replicas


def verdict(step: Step, view: ClusterView, progress: TickProgress) -> Wait | None:
    """Why ``step`` must not run now, or None when it may (see the module docstring for the rules)."""
    if progress.failed:
        return Wait.EARLIER_FAILURE
    if not view.ready and not cuts_power(step, view):
        return Wait.DGD_NOT_READY
    if progress.cut_pending and not cuts_power(step, view):
        return Wait.CUT_PENDING
    if step.wait_for_drain and progress.draining:
        return Wait.DRAINING
    return None


def wait_detail(wait: Wait, view: ClusterView) -> str:
    if wait is Wait.DGD_NOT_READY:
        return f"DGD not Ready ({view.ready_detail}); only power cuts are applied"
    return wait.value


def run_steps(steps: Iterable[Step], view: ClusterView, act: Callable[[Step], StepOutcome]) -> list[StepOutcome]:
    """Run ``steps`` in order through the rules: ``act`` performs one allowed step (or reports a dry run or a
    failure) and returns its outcome; a waiting step is recorded as skipped (not run after a failure)."""
    progress = TickProgress.start(view)
    outcomes: list[StepOutcome] = []
    for step in steps:
        wait = verdict(step, view, progress)
        if wait is not None:
            outcome = Outcome.NOT_RUN if wait is Wait.EARLIER_FAILURE else Outcome.SKIPPED
            outcomes.append(StepOutcome(step, outcome, wait_detail(wait, view), wait=wait))
            continue
        done = act(step)
        outcomes.append(done)
        progress = progress.after(step, view, done.outcome)
    return outcomes


def catch_up_roles(
    written_targets: Mapping[Role, float], view: ClusterView, done: Iterable[StepOutcome]
) -> tuple[Role, ...]:
    """Roles whose target to write back although the plan has no cap step for them: a live pod's annotation is
    below the target and the target is no higher than the role's counted cap, so it adds no power and needs no
    acknowledgement. ``written_targets``: each role's target as the annotation would hold it. Only on a Ready
    DGD and after steps that all succeeded; never a role the plan gave a cap step."""
    done = tuple(done)
    if not view.ready or any(o.outcome == Outcome.FAILED for o in done):
        return ()
    planned = {o.step.role for o in done if o.step.kind is StepKind.SET_CAP}
    roles: list[Role] = []
    for role in ROLES:
        rv, target = view.role(role), written_targets.get(role)
        if role in planned or target is None or rv.counted_cap_watts is None or rv.lowest_written_cap_watts is None:
            continue
        if rv.lowest_written_cap_watts < target <= rv.counted_cap_watts:
            roles.append(role)
    return tuple(roles)
