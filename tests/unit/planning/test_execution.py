"""The shared step-execution rules (planning/execution.py) keep the plan's promise when the cluster lags.

The property: ticks of plan -> execute through the rules -> agents and drains catching up (or not) never take
the worst-case provisioned power above the tick's budget (above what was already provisioned, after a budget
cut). The worst case counts every role at the higher of the cap in force and the cap annotated (an agent may
apply a raise at once and a cut late), and draining replicas until they are gone. Steps fail at random, and
the DGD may be not Ready.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from powerplanner.model.roles import ROLES, Role
from powerplanner.model.values import RoleState, RoleTarget, Step, StepKind
from powerplanner.planning.execution import (
    ClusterView,
    Outcome,
    RoleView,
    StepOutcome,
    TickProgress,
    Wait,
    catch_up_roles,
    cuts_power,
    run_steps,
    verdict,
)
from powerplanner.planning.transitions import plan_transition

MAX_CAP_W = 700.0  # an unknown cap counts at the GPU's maximum
CAPS = [200.0, 250.0, 300.0, 350.0, 450.0, 550.0, 700.0]
_EPS_W = 1e-6


@dataclass
class WorstCase:
    """The cluster as the worst case sees it: caps in force (None: not reported, at most the maximum) and
    annotated (an agent may apply a raise at once and a cut late)."""

    gpus: dict[Role, int]
    desired: dict[Role, int]
    draining: dict[Role, int]
    in_force: dict[Role, float | None]
    annotated: dict[Role, float | None]

    def counted(self, role: Role) -> float | None:
        """What the planner counts: the higher of the agents' report and the annotation; unknown (None, counted
        at the maximum) while the agents report nothing (live/observe.py's ``build_observation`` is tested apart)."""
        in_force, annotated = self.in_force[role], self.annotated[role]
        return None if in_force is None else max(in_force, annotated if annotated is not None else 0.0)

    def provisioned(self) -> float:
        """Worst case: each role at its counted cap (the maximum when unknown), draining replicas included."""
        total = 0.0
        for r in ROLES:
            cap = self.counted(r)
            total += (self.desired[r] + self.draining[r]) * self.gpus[r] * (cap if cap is not None else MAX_CAP_W)
        return total

    def view(self, ready: bool) -> ClusterView:
        return ClusterView({r: RoleView(self.desired[r], self.draining[r], self.counted(r),
                                        self.annotated[r] if self.desired[r] > 0 else None) for r in ROLES},
                           ready, "Ready" if ready else "state=pending")

    def observed(self) -> dict[Role, RoleState]:
        return {r: RoleState(self.desired[r], 0, self.draining[r], self.counted(r), None, self.gpus[r]) for r in ROLES}

    def apply(self, step: Step) -> None:
        if step.kind is StepKind.SET_CAP:
            self.annotated[step.role] = step.value  # the agents apply it later, or not
            return
        replicas = int(step.value)
        if replicas < self.desired[step.role]:
            self.draining[step.role] += self.desired[step.role] - replicas
        self.desired[step.role] = replicas


role_ints = st.fixed_dictionaries({r: st.integers(min_value=0, max_value=5) for r in ROLES})
role_caps = st.fixed_dictionaries({r: st.sampled_from([None, *CAPS]) for r in ROLES})


def run_tick(cluster: WorstCase, data: st.DataObject) -> None:
    """Plan for a drawn budget and target, run the steps through the rules (one may fail), then the catch-up;
    check the worst case after every change."""
    start = cluster.provisioned()
    budget = data.draw(st.floats(min_value=0.0, max_value=2.0)) * max(start, 1000.0)
    limit = max(budget, start) + _EPS_W  # after a budget cut: nothing rises, caps and replicas go down first
    targets = {r: RoleTarget(data.draw(st.integers(0, 6)), data.draw(st.sampled_from(CAPS))) for r in ROLES}
    steps = plan_transition(cluster.observed(), targets, cluster.gpus, budget, None, MAX_CAP_W)
    view = cluster.view(ready=data.draw(st.booleans()))
    fail_at = data.draw(st.integers(min_value=0, max_value=len(steps) + 1))
    ran: list[Step] = []

    def act(step: Step) -> StepOutcome:
        ran.append(step)
        if len(ran) == fail_at:
            return StepOutcome(step, Outcome.FAILED, "server: injected")
        before = cluster.provisioned()
        cluster.apply(step)
        assert cluster.provisioned() <= limit, (step, steps)
        assert start <= budget or cluster.provisioned() <= before + _EPS_W
        return StepOutcome(step, Outcome.DONE)

    done = run_steps(steps, view, act)
    for role in catch_up_roles({r: targets[r].cap_watts for r in ROLES}, view, done):
        cluster.apply(Step(StepKind.SET_CAP, role, targets[role].cap_watts, 0.0))
        assert cluster.provisioned() <= limit


@settings(max_examples=300, deadline=None)
@given(
    gpus=st.fixed_dictionaries({r: st.sampled_from([1, 2, 4, 8]) for r in ROLES}),
    desired=role_ints,
    draining=st.fixed_dictionaries({r: st.integers(min_value=0, max_value=2) for r in ROLES}),
    in_force=role_caps,
    data=st.data(),
)
def test_executed_steps_never_take_power_above_the_budget(gpus: dict[Role, int], desired: dict[Role, int],
                                                         draining: dict[Role, int], in_force: dict[Role, float | None],
                                                         data: st.DataObject) -> None:
    cluster = WorstCase(gpus, dict(desired), dict(draining), dict(in_force), dict(in_force))
    for _ in range(3):
        run_tick(cluster, data)
        # between ticks: some agents apply their annotation, some draining replicas are gone
        for role in ROLES:
            if data.draw(st.booleans()):
                cluster.in_force[role] = cluster.annotated[role]
            cluster.draining[role] -= data.draw(st.integers(min_value=0, max_value=cluster.draining[role]))


def view_of(desired: int = 2, draining: int = 0, cap: float | None = 400.0, ready: bool = True) -> ClusterView:
    return ClusterView(dict.fromkeys(ROLES, RoleView(desired, draining, cap, cap)), ready, "state=pending")


def test_each_rule_names_its_reason() -> None:
    raise_cap, cut = Step(StepKind.SET_CAP, Role.PREFILL, 450.0, 0.0), Step(StepKind.SET_CAP, Role.DECODE, 300.0, 0.0)
    grow = Step(StepKind.SCALE, Role.PREFILL, 3.0, 0.0, wait_for_drain=True)
    view = view_of()
    assert verdict(raise_cap, view, TickProgress()) is None
    assert verdict(raise_cap, view, TickProgress(failed=True)) is Wait.EARLIER_FAILURE
    assert verdict(raise_cap, view_of(ready=False), TickProgress()) is Wait.DGD_NOT_READY
    assert verdict(cut, view_of(ready=False), TickProgress()) is None
    assert verdict(raise_cap, view, TickProgress(cut_pending=True)) is Wait.CUT_PENDING
    assert verdict(cut, view, TickProgress(cut_pending=True)) is None
    assert verdict(grow, view, TickProgress(draining=True)) is Wait.DRAINING
    assert TickProgress.start(view_of(draining=1)).draining


def test_an_unknown_cap_is_always_a_cut_and_progress_follows_what_ran() -> None:
    view = view_of(cap=None)
    write = Step(StepKind.SET_CAP, Role.DECODE, 700.0, 0.0)
    shrink = Step(StepKind.SCALE, Role.DECODE, 1.0, 0.0)
    assert cuts_power(write, view) and cuts_power(shrink, view)
    assert TickProgress().after(write, view, Outcome.DONE) == TickProgress(cut_pending=True)
    assert TickProgress().after(shrink, view, Outcome.DONE) == TickProgress(draining=True)
    assert TickProgress().after(write, view, Outcome.DRY_RUN) == TickProgress()  # a dry run changes nothing
    assert TickProgress().after(write, view, Outcome.FAILED) == TickProgress(failed=True)
