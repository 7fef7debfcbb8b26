"""Transition plans: order, worst-case accounting of draining/starting replicas, waiting for drains."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from powerplanner.model.roles import ROLES, Role
from powerplanner.model.values import RoleState, RoleTarget, Step, StepKind
from powerplanner.planning.transitions import current_provisioned_watts, plan_transition

G = {Role.PREFILL: 4, Role.DECODE: 4}


def _plan(current: dict[Role, RoleState], target: dict[Role, RoleTarget], budget: float | None,
          pool: int | None = None) -> tuple[Step, ...]:
    return plan_transition(current, target, G, budget, pool, 700.0)


def test_lower_caps_and_remove_before_raising_and_adding() -> None:
    current = {Role.PREFILL: RoleState(1, applied_cap_watts=300.0), Role.DECODE: RoleState(4, applied_cap_watts=600.0)}
    target = {Role.PREFILL: RoleTarget(3, 500.0), Role.DECODE: RoleTarget(2, 300.0)}
    steps = _plan(current, target, budget=20_000.0)
    kinds = [(s.kind, s.role) for s in steps]
    assert kinds[0] == (StepKind.SET_CAP, Role.DECODE)
    assert kinds.index((StepKind.SCALE, Role.DECODE)) < kinds.index((StepKind.SET_CAP, Role.PREFILL))
    assert kinds[-1] == (StepKind.SCALE, Role.PREFILL)
    assert all(s.provisioned_after_watts <= 20_000.0 for s in steps)


def test_scale_up_waits_for_draining_replicas_when_power_is_short() -> None:
    # 1 prefill + 4 decode at 500 W = 10 kW; budget 10 kW; swap to 4 prefill + 1 decode
    current = {Role.PREFILL: RoleState(1, applied_cap_watts=500.0), Role.DECODE: RoleState(4, applied_cap_watts=500.0)}
    target = {Role.PREFILL: RoleTarget(4, 500.0), Role.DECODE: RoleTarget(1, 500.0)}
    steps = _plan(current, target, budget=10_000.0)
    assert steps[0] == Step(StepKind.SCALE, Role.DECODE, 1, 10_000.0)
    assert steps[1].kind is StepKind.SCALE and steps[1].role is Role.PREFILL
    assert steps[1].wait_for_drain and steps[1].value == 4
    assert steps[1].provisioned_after_watts == 10_000.0  # counted after the three decode replicas are gone


def test_deferred_scale_up_proceeds_once_drained() -> None:
    target = {Role.PREFILL: RoleTarget(4, 500.0), Role.DECODE: RoleTarget(1, 500.0)}
    still = {Role.PREFILL: RoleState(1, applied_cap_watts=500.0),
             Role.DECODE: RoleState(1, draining_replicas=3, applied_cap_watts=500.0)}
    assert all(s.wait_for_drain for s in _plan(still, target, 10_000.0))
    gone = {Role.PREFILL: RoleState(1, applied_cap_watts=500.0), Role.DECODE: RoleState(1, applied_cap_watts=500.0)}
    steps = _plan(gone, target, 10_000.0)
    assert steps == (Step(StepKind.SCALE, Role.PREFILL, 4, 10_000.0),)


def test_cap_raise_is_partial_while_draining_holds_power() -> None:
    current = {Role.PREFILL: RoleState(2, draining_replicas=1, applied_cap_watts=300.0),
               Role.DECODE: RoleState(1, applied_cap_watts=300.0)}
    target = {Role.PREFILL: RoleTarget(2, 600.0), Role.DECODE: RoleTarget(1, 300.0)}
    steps = _plan(current, target, budget=6_000.0)
    assert len(steps) == 1 and steps[0].kind is StepKind.SET_CAP
    assert 300.0 < steps[0].value < 600.0
    assert steps[0].provisioned_after_watts <= 6_000.0


def test_starting_replicas_count_at_their_cap() -> None:
    current = {Role.PREFILL: RoleState(1, starting_replicas=2, applied_cap_watts=500.0),
               Role.DECODE: RoleState(1, applied_cap_watts=500.0)}
    assert current_provisioned_watts(current, G, 700.0) == (3 + 1) * 4 * 500.0


def test_unknown_cap_counts_at_the_maximum_and_gets_written() -> None:
    current = {Role.PREFILL: RoleState(1), Role.DECODE: RoleState(1)}
    target = {Role.PREFILL: RoleTarget(1, 700.0), Role.DECODE: RoleTarget(1, 300.0)}
    steps = _plan(current, target, budget=10_000.0)
    assert {(s.kind, s.role, s.value) for s in steps} == {
        (StepKind.SET_CAP, Role.PREFILL, 700.0),
        (StepKind.SET_CAP, Role.DECODE, 300.0),
    }


def test_gpu_pool_limits_scale_up() -> None:
    current = {Role.PREFILL: RoleState(1, applied_cap_watts=300.0), Role.DECODE: RoleState(1, applied_cap_watts=300.0)}
    target = {Role.PREFILL: RoleTarget(5, 300.0), Role.DECODE: RoleTarget(1, 300.0)}
    steps = _plan(current, target, budget=1e9, pool=16)
    assert steps == (Step(StepKind.SCALE, Role.PREFILL, 3, 4 * 4 * 300.0),)


def test_without_a_budget_the_order_is_kept_and_nothing_waits() -> None:
    current = {Role.PREFILL: RoleState(1, applied_cap_watts=700.0), Role.DECODE: RoleState(4, applied_cap_watts=700.0)}
    target = {Role.PREFILL: RoleTarget(4, 700.0), Role.DECODE: RoleTarget(1, 700.0)}
    steps = _plan(current, target, budget=None)
    assert [s.role for s in steps] == [Role.DECODE, Role.PREFILL]
    assert not any(s.wait_for_drain for s in steps)


states = st.builds(
    RoleState,
    ready_replicas=st.integers(0, 12),
    starting_replicas=st.integers(0, 3),
    draining_replicas=st.integers(0, 3),
    applied_cap_watts=st.one_of(st.none(), st.integers(200, 700).map(float)),
)
targets = st.builds(RoleTarget, replicas=st.integers(0, 12), cap_watts=st.integers(200, 700).map(float))


@settings(max_examples=300, deadline=None)
@given(cp=states, cd=states, tp=targets, td=targets, budget=st.floats(1000, 80_000),
       pool=st.one_of(st.none(), st.integers(0, 120)))
def test_no_step_exceeds_the_budget_or_raises_power_above_it(cp: RoleState, cd: RoleState, tp: RoleTarget,
                                                               td: RoleTarget, budget: float, pool: int | None) -> None:
    current = {Role.PREFILL: cp, Role.DECODE: cd}
    target = {Role.PREFILL: tp, Role.DECODE: td}
    start = current_provisioned_watts(current, G, 700.0)
    steps = _plan(current, target, budget, pool)
    previous = start
    for s in steps:
        if s.wait_for_drain:
            assert s.provisioned_after_watts <= budget + 1e-6
            continue
        assert s.provisioned_after_watts <= max(budget, previous) + 1e-6
        previous = s.provisioned_after_watts
    # waiting steps come last
    waits = [s.wait_for_drain for s in steps]
    assert waits == sorted(waits)
    # caps never leave [current, target] and a scale step never overshoots the target
    for s in steps:
        if s.kind is StepKind.SCALE:
            lo = min(target[s.role].replicas, current[s.role].desired_replicas)
            hi = max(target[s.role].replicas, current[s.role].desired_replicas)
            assert lo <= s.value <= hi


@settings(max_examples=200, deadline=None)
@given(cp=states, cd=states, tp=targets, td=targets)
def test_with_room_and_nothing_draining_the_plan_reaches_the_target(cp: RoleState, cd: RoleState, tp: RoleTarget,
                                                                     td: RoleTarget) -> None:
    current = {Role.PREFILL: RoleState(cp.ready_replicas, cp.starting_replicas, 0, cp.applied_cap_watts),
               Role.DECODE: RoleState(cd.ready_replicas, cd.starting_replicas, 0, cd.applied_cap_watts)}
    target = {Role.PREFILL: tp, Role.DECODE: td}
    steps = _plan(current, target, budget=1e9)
    final = {r: (current[r].desired_replicas, current[r].applied_cap_watts) for r in ROLES}
    for s in steps:
        rep, cap = final[s.role]
        final[s.role] = (int(s.value), cap) if s.kind is StepKind.SCALE else (rep, s.value)
    for r in ROLES:
        assert final[r][0] == target[r].replicas
        if final[r][1] is not None or target[r].cap_watts < 700.0:
            assert final[r][1] == target[r].cap_watts
