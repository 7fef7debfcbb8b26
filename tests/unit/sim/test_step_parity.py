"""The live actuator and the simulator's executor run a decision's steps by the same rules (planning/execution.py).

Both are fed the same decision and the same cluster: replicas per role, draining decode replicas, the caps in
force (what the planner counted) and the annotations, lower where a cut is not in force yet. They must give the
same outcome for every step (done / skipped, with the same reason), write back the same catch-up caps, and leave
the same replica counts and annotations behind. The live side is the unit tests' ``FakeActuator``; the sim side
is a real :class:`~powerplanner.sim.cluster.Cluster` under :class:`~powerplanner.sim.loop.SimActuator`. Steps
without a live counterpart stay out: failures (the simulated cluster never refuses), a DGD that is not Ready
(the simulator models no operator) and caps outside the GPU's range (the sim clamps them as the agent would).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from powerplanner.live.actuation import catch_up_caps, execute
from powerplanner.model.roles import ROLES, Role
from powerplanner.model.values import Decision, Reason, RoleTarget, Step, StepKind
from powerplanner.planning.execution import CATCH_UP, Outcome, StepOutcome, Wait
from powerplanner.sim.cluster import DECODE, DRAINING, PREFILL, READY, STARTING, Cluster
from powerplanner.sim.loop import SimActuator
from powerplanner.sim.settings import SimSettings
from tests.support.live_fakes import FakeActuator
from tests.support.profiles import ClosedFormProfile

_INDEX = {Role.PREFILL: PREFILL, Role.DECODE: DECODE}
CAPS = [200, 250, 300, 400, 450, 700]

step_st = st.one_of(
    st.builds(Step, kind=st.just(StepKind.SET_CAP), role=st.sampled_from(ROLES),
              value=st.sampled_from(CAPS).map(float), provisioned_after_watts=st.just(0.0),
              wait_for_drain=st.just(False)),
    st.builds(Step, kind=st.just(StepKind.SCALE), role=st.sampled_from(ROLES),
              value=st.integers(min_value=0, max_value=6).map(float), provisioned_after_watts=st.just(0.0),
              wait_for_drain=st.booleans()),
)


def decision(steps: list[Step], targets: dict[Role, float]) -> Decision:
    return Decision(time_s=0.0, policy="fixed", prefill=RoleTarget(1, targets[Role.PREFILL]),
                    decode=RoleTarget(1, targets[Role.DECODE]), budget_watts=1e9, reasons=(Reason.SLA_SIZED,),
                    projected_provisioned_watts=1234.0, predicted_draw_watts=0.0, steps=tuple(steps))


def sim_cluster(replicas: dict[Role, int], in_force: dict[Role, int], annotated: dict[Role, int],
                draining: int) -> SimActuator:
    """A simulated cluster showing the same as the FakeActuator: ``draining`` decode replicas beyond the
    replicas, caps ``in_force`` with ``annotated`` commanded (a lower one lands ``cap_apply_s`` later)."""
    cluster = Cluster(ClosedFormProfile(), SimSettings(cap_apply_s=1.0), [], [], [],
                      (float(in_force[Role.PREFILL]), float(in_force[Role.DECODE])), None)
    for role in ROLES:
        for _ in range(replicas[role] + (draining if role is Role.DECODE else 0)):
            cluster.add_ready(_INDEX[role], 0.0)
    for inst in cluster.instances[DECODE]:
        inst.batch = 1  # work in flight: a removed decode replica drains instead of releasing its GPUs at once
    cluster.remove_replicas(DECODE, draining, 0.0)
    actuator = SimActuator(cluster, SimSettings(cap_apply_s=1.0))
    for role in ROLES:
        actuator.commanded_cap[_INDEX[role]] = float(annotated[role])
    return actuator


def run_both(steps: list[Step], replicas: dict[Role, int], in_force: dict[Role, int],
             annotated: dict[Role, int], draining: int, targets: dict[Role, float]
             ) -> tuple[list[StepOutcome], list[StepOutcome], FakeActuator, SimActuator]:
    """Run one decision on both sides the way each loop does: the steps, then the catch-up."""
    live = FakeActuator(replicas=dict(replicas), caps={r: annotated[r] for r in ROLES}, draining=draining)
    state = live.read_state()
    counted: dict[Role, float | None] = {r: float(in_force[r]) for r in ROLES}
    d = decision(steps, targets)
    live_out = execute(d.steps, state, live, counted)
    live_out += catch_up_caps({r: d.target(r).cap_watts for r in ROLES}, state, live, counted, live_out,
                              d.projected_provisioned_watts)
    sim = sim_cluster(replicas, in_force, annotated, draining)
    assert sim.view().ready  # the simulated DGD is always Ready
    sim_out = sim.execute(d, 0.0)
    return live_out, sim_out, live, sim


def summary(outcomes: list[StepOutcome]) -> list[tuple[Step, Outcome, Wait | None, str, bool]]:
    return [(o.step, o.outcome, o.wait, o.detail, o.changed) for o in outcomes]


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(step_st, max_size=8),
    replicas=st.fixed_dictionaries({r: st.integers(min_value=0, max_value=4) for r in ROLES}),
    in_force=st.fixed_dictionaries({r: st.sampled_from(CAPS) for r in ROLES}),
    lower=st.fixed_dictionaries({r: st.sampled_from([0, 50, 100]) for r in ROLES}),
    draining=st.integers(min_value=0, max_value=2),
    targets=st.fixed_dictionaries({r: st.sampled_from(CAPS).map(float) for r in ROLES}),
)
def test_same_decision_same_verdicts_and_outcomes(steps: list[Step], replicas: dict[Role, int],
                                                  in_force: dict[Role, int], lower: dict[Role, int], draining: int,
                                                  targets: dict[Role, float]) -> None:
    annotated = {r: max(200, in_force[r] - lower[r]) for r in ROLES}  # a cut not in force yet, or none
    live_out, sim_out, live, sim = run_both(steps, replicas, in_force, annotated, draining, targets)
    assert summary(sim_out) == summary(live_out)
    for role in ROLES:
        i = _INDEX[role]
        assert sim.cluster.counts[i][STARTING] + sim.cluster.counts[i][READY] == live.replicas[role]
        assert sim.commanded_cap[i] == live.caps[role]


def test_a_rebalance_waits_for_its_cut_on_both_sides() -> None:
    """decode 450 -> 300 W and prefill 300 -> 450 W in one tick: both run the cuts (the cap, the prefill
    scale-down) and leave the raise and the decode scale-up it pays for to a later tick."""
    steps = [Step(StepKind.SET_CAP, Role.DECODE, 300.0, 0.0), Step(StepKind.SET_CAP, Role.PREFILL, 450.0, 0.0),
             Step(StepKind.SCALE, Role.DECODE, 3.0, 0.0), Step(StepKind.SCALE, Role.PREFILL, 1.0, 0.0)]
    replicas, caps = {Role.PREFILL: 2, Role.DECODE: 2}, {Role.PREFILL: 300, Role.DECODE: 450}
    live_out, sim_out, _, _ = run_both(steps, replicas, caps, caps, 1, {r: float(caps[r]) for r in ROLES})
    assert summary(live_out) == summary(sim_out)
    assert [o.outcome for o in sim_out] == [Outcome.DONE, Outcome.SKIPPED, Outcome.SKIPPED, Outcome.DONE]
    assert [o.wait for o in sim_out] == [None, Wait.CUT_PENDING, Wait.CUT_PENDING, None]


def test_a_wait_for_drain_step_waits_for_this_ticks_scale_down_on_both_sides() -> None:
    """The sim releases an idle prefill replica at once, but the live actuator cannot see that: both wait."""
    steps = [Step(StepKind.SCALE, Role.PREFILL, 1.0, 0.0), Step(StepKind.SCALE, Role.DECODE, 3.0, 0.0, True)]
    replicas, caps = {Role.PREFILL: 2, Role.DECODE: 2}, dict.fromkeys(ROLES, 400)
    live_out, sim_out, _, sim = run_both(steps, replicas, caps, caps, 0, dict.fromkeys(ROLES, 400.0))
    assert sim.cluster.counts[PREFILL][DRAINING] == 0  # released at once: the sim could have run the scale-up
    assert [o.wait for o in live_out] == [o.wait for o in sim_out] == [None, Wait.DRAINING]


def test_catch_up_writes_the_same_cap_on_both_sides() -> None:
    """Decode cut to 300 W, not acknowledged, planned back to 450 W: no step, the catch-up writes 450 W."""
    replicas = {Role.PREFILL: 1, Role.DECODE: 2}
    in_force, annotated = dict.fromkeys(ROLES, 450), {Role.PREFILL: 450, Role.DECODE: 300}
    live_out, sim_out, live, sim = run_both([], replicas, in_force, annotated, 0, dict.fromkeys(ROLES, 450.0))
    assert summary(live_out) == summary(sim_out)
    assert [(o.step.role, o.step.value, o.detail) for o in sim_out] == [(Role.DECODE, 450.0, CATCH_UP)]
    assert live.caps[Role.DECODE] == 450 and sim.commanded_cap[DECODE] == 450.0
