"""Properties of step execution (hypothesis): on a DGD that is not Ready only power cuts run; nothing runs
after a failure; a wait-for-drain step never runs while replicas drain; once a lower cap is written, no
later step of the tick adds power (the agents have not applied the cut yet)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from powerplanner.live.actuation import StepOutcome, catch_up_caps, cuts_power, execute
from powerplanner.model.roles import ROLES, Role
from powerplanner.model.values import Step, StepKind
from tests.unit.live.fakes import FakeActuator

steps_st = st.lists(
    st.builds(
        Step,
        kind=st.sampled_from(list(StepKind)),
        role=st.sampled_from(list(ROLES)),
        value=st.integers(min_value=0, max_value=8).map(float) | st.sampled_from([200.0, 300.0, 450.0, 700.0]),
        provisioned_after_watts=st.just(0.0),
        wait_for_drain=st.booleans(),
    ),
    max_size=8,
)


@settings(max_examples=150, deadline=None)
@given(
    steps=steps_st,
    ready=st.booleans(),
    draining=st.integers(min_value=0, max_value=2),
    replicas=st.integers(min_value=0, max_value=6),
    cap=st.sampled_from([None, 250, 400, 700]),
    fail=st.sampled_from([set(), {"scale"}, {"set_cap"}]),
)
def test_execution_rules(steps: list[Step], ready: bool, draining: int, replicas: int, cap: int | None,
                         fail: set[str]) -> None:
    act = FakeActuator(replicas=dict.fromkeys(ROLES, replicas), caps=dict.fromkeys(ROLES, cap), ready=ready,
                       draining=draining, fail_on=set(fail))
    state = act.read_state()
    current_caps: dict[Role, float | None] = {r: None if cap is None else float(cap) for r in ROLES}
    outcomes = execute(tuple(steps), state, act, current_caps)
    assert [o.step for o in outcomes] == steps
    failed_at = next((i for i, o in enumerate(outcomes) if o.outcome == "failed"), None)
    if failed_at is not None:
        assert all(o.outcome == "not_run" for o in outcomes[failed_at + 1:])
    cut_pending = False
    for o in outcomes:
        if o.outcome == "done" and not ready:
            assert cuts_power(o.step, state, current_caps)
        if o.outcome == "done" and cut_pending:
            assert cuts_power(o.step, state, current_caps)
        if o.outcome == "done" and o.step.kind is StepKind.SET_CAP:
            cut_pending = cut_pending or cuts_power(o.step, state, current_caps)
        if o.outcome == "done" and o.step.wait_for_drain:
            assert draining == 0
    assert len(act.calls) == sum(1 for o in outcomes if o.outcome == "done")


def test_a_raise_waits_until_the_cut_before_it_is_in_force() -> None:
    """The rebalance the whole-loop test caught: decode 333 -> 300 W and prefill 333 -> 366 W in one tick.
    Written together, a node's agent raised prefill before another node's agent had lowered decode."""
    act = FakeActuator(replicas=dict.fromkeys(ROLES, 3), caps=dict.fromkeys(ROLES, 333))
    steps = (Step(StepKind.SET_CAP, Role.DECODE, 300.0, 0.0), Step(StepKind.SET_CAP, Role.PREFILL, 366.0, 0.0),
             Step(StepKind.SCALE, Role.DECODE, 4.0, 0.0))
    caps: dict[Role, float | None] = dict.fromkeys(ROLES, 333.0)
    first = execute(steps, act.read_state(), act, caps)
    assert [o.outcome for o in first] == ["done", "skipped", "skipped"]
    assert first[1].detail == "waiting for the agents to apply a lower cap first"
    assert act.calls == [("set_cap", Role.DECODE, 300.0)]
    # Next tick, the agents still report decode at 333 W: the annotation is there, the cut is not.
    second = execute(steps, act.read_state(), act, caps)
    assert [o.outcome for o in second] == ["done", "skipped", "skipped"]
    # Once they report 300 W, the re-planned raise runs (the plan no longer needs a cut).
    caps[Role.DECODE] = 300.0
    third = execute(steps[1:], act.read_state(), act, caps)
    assert [o.outcome for o in third] == ["done", "done"]
    assert act.calls[2:] == [("set_cap", Role.PREFILL, 366.0), ("scale", Role.DECODE, 4)]


@settings(max_examples=200, deadline=None)
@given(
    annotated=st.sampled_from([None, 200, 250, 300, 400]),
    counted=st.sampled_from([None, 200.0, 250.0, 300.0, 400.0, 700.0]),
    target=st.sampled_from([150.0, 250.0, 266.7, 300.0, 450.0]),
    ready=st.booleans(),
    planned=st.booleans(),
)
def test_catch_up_writes_only_up_to_the_counted_cap(annotated: int | None, counted: float | None, target: float,
                                                    ready: bool, planned: bool) -> None:
    """The catch-up never writes above what the plan already counts, never on a role the plan capped, never on
    a DGD that is not Ready; it writes whenever an annotation is below a target the count covers."""
    act = FakeActuator(caps=dict.fromkeys(ROLES, annotated), ready=ready)
    state = act.read_state()
    done = [StepOutcome(Step(StepKind.SET_CAP, Role.DECODE, target, 0.0), "skipped")] if planned else []
    caps = dict.fromkeys(ROLES, counted)
    out = catch_up_caps(dict.fromkeys(ROLES, target), state, act, caps, done)
    written = {o.step.role: o.step.value for o in out if o.outcome == "done"}
    for role, value in written.items():
        assert counted is not None and value <= counted and ready
        assert not (planned and role is Role.DECODE)
    should = (ready and annotated is not None and counted is not None and annotated < int(target) <= counted)
    assert (Role.PREFILL in written) == should
    assert (Role.DECODE in written) == (should and not planned)


def test_catch_up_stops_at_a_failure_and_after_failed_steps() -> None:
    act = FakeActuator(caps=dict.fromkeys(ROLES, 233))
    caps: dict[Role, float | None] = dict.fromkeys(ROLES, 266.0)
    failed = [StepOutcome(Step(StepKind.SCALE, Role.PREFILL, 2.0, 0.0), "failed", "server: x")]
    assert catch_up_caps(dict.fromkeys(ROLES, 266.0), act.read_state(), act, caps, failed) == []
    act.fail_on.add("set_cap")
    out = catch_up_caps(dict.fromkeys(ROLES, 266.0), act.read_state(), act, caps, [])
    assert [o.outcome for o in out] == ["failed"]  # the second role is not tried
