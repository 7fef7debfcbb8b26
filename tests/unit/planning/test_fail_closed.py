"""Fail closed on a GPU-count mismatch: the deployment has more (or fewer) GPUs per replica than the profile.

The planner then never adds power (no scale-up, no cap raise), only cuts, and counts the GPUs actually
deployed, so its cuts bring provisioned power under the budget (docs/planner.md, "GPU-count mismatch").
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from powerplanner.model.roles import ROLES, Role
from powerplanner.model.values import Decision, Observation, Reason, RoleState, StepKind
from powerplanner.planning.fail_closed import cut_only_targets
from powerplanner.planning.planner import make_planner
from powerplanner.planning.registry import policy_names
from powerplanner.planning.transitions import current_provisioned_watts
from tests.unit.planning.conftest import make_config, obs
from tests.unit.planning.fake_profile import FakeProfile

LEVELS = (200.0, 300.0, 400.0, 500.0, 600.0, 700.0)
MINIMUM = {Role.PREFILL: 1, Role.DECODE: 1}


def _provisioned(targets: dict[Role, object], gpus: dict[Role, int]) -> float:
    return sum(t.replicas * gpus[r] * t.cap_watts for r, t in targets.items())  # type: ignore[attr-defined]


def test_within_budget_everything_stays_as_it_is() -> None:
    current = {Role.PREFILL: RoleState(2, applied_cap_watts=450.0), Role.DECODE: RoleState(3, applied_cap_watts=300.0)}
    fc = cut_only_targets(current, {Role.PREFILL: 8, Role.DECODE: 8}, {r: LEVELS for r in ROLES}, MINIMUM,
                          budget_watts=20_000.0, unknown_cap_watts=700.0)
    assert {r: (t.replicas, t.cap_watts) for r, t in fc.targets.items()} == {
        Role.PREFILL: (2, 450.0), Role.DECODE: (3, 300.0)}
    assert fc.fits and not fc.infeasible


def test_over_budget_caps_go_down_first() -> None:
    # 5 replicas x 8 GPUs x 700 W (unknown caps) = 28,000 W against 16,000 W: caps of 400 W fit, replicas stay
    current = {Role.PREFILL: RoleState(3), Role.DECODE: RoleState(2)}
    gpus = {Role.PREFILL: 8, Role.DECODE: 8}
    fc = cut_only_targets(current, gpus, {r: LEVELS for r in ROLES}, MINIMUM, 16_000.0, 700.0)
    assert {r: t.replicas for r, t in fc.targets.items()} == {Role.PREFILL: 3, Role.DECODE: 2}
    assert fc.fits and fc.provisioned_watts == _provisioned(dict(fc.targets), gpus) <= 16_000.0
    assert all(t.cap_watts <= 700.0 for t in fc.targets.values())
    assert fc.provisioned_watts >= 16_000.0 - 5 * 8 * 100.0  # the highest caps that fit, not the lowest


def test_replicas_go_down_when_the_lowest_caps_do_not_fit_and_below_the_minimum_only_as_a_last_resort() -> None:
    current = {Role.PREFILL: RoleState(4, applied_cap_watts=700.0), Role.DECODE: RoleState(4, applied_cap_watts=700.0)}
    gpus = {Role.PREFILL: 8, Role.DECODE: 8}
    fc = cut_only_targets(current, gpus, {r: LEVELS for r in ROLES}, MINIMUM, 5_000.0, 700.0)
    assert fc.fits and fc.provisioned_watts <= 5_000.0 and not fc.infeasible
    assert all(1 <= t.replicas <= 4 for t in fc.targets.values())
    deep = cut_only_targets(current, gpus, {r: LEVELS for r in ROLES}, MINIMUM, 2_000.0, 700.0)
    assert deep.fits and deep.infeasible  # one 8-GPU replica at 200 W is 1,600 W: the other role gives way
    assert sum(t.replicas for t in deep.targets.values()) == 1


@settings(max_examples=300, deadline=None)
@given(
    replicas=st.tuples(st.integers(0, 12), st.integers(0, 12)),
    starting=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    caps=st.tuples(st.one_of(st.none(), st.integers(200, 700).map(float)),
                   st.one_of(st.none(), st.integers(200, 700).map(float))),
    gpus=st.tuples(st.sampled_from([1, 2, 4, 8, 16]), st.sampled_from([1, 2, 4, 8, 16])),
    minimum=st.tuples(st.integers(0, 3), st.integers(0, 3)),
    budget=st.floats(100.0, 200_000.0),
)
def test_cut_only_never_adds_and_always_fits(replicas: tuple[int, int], starting: tuple[int, int],
                                             caps: tuple[float | None, float | None], gpus: tuple[int, int],
                                             minimum: tuple[int, int], budget: float) -> None:
    current = {role: RoleState(replicas[i], starting_replicas=starting[i], applied_cap_watts=caps[i])
               for i, role in enumerate(ROLES)}
    deployed = dict(zip(ROLES, gpus, strict=True))
    fc = cut_only_targets(current, deployed, {r: LEVELS for r in ROLES}, dict(zip(ROLES, minimum, strict=True)),
                          budget, 700.0)
    for role in ROLES:
        assert fc.targets[role].replicas <= current[role].desired_replicas
        assert fc.targets[role].cap_watts <= (current[role].applied_cap_watts or 700.0)
    assert fc.fits and fc.provisioned_watts <= budget + 1e-6
    if not fc.infeasible:
        assert all(fc.targets[r].replicas >= min(minimum[i], current[r].desired_replicas)
                   for i, r in enumerate(ROLES))


# -- through the Planner ----------------------------------------------------------------------------


def _state(n: int, cap: float | None, gpus: int = 8) -> RoleState:
    return RoleState(n, applied_cap_watts=cap, gpus_per_replica=gpus)


def _adds_power(d: Decision, o: Observation) -> bool:
    for s in d.steps:
        rs = o.role(s.role)
        if s.kind is StepKind.SCALE and s.value > rs.desired_replicas:
            return True
        if s.kind is StepKind.SET_CAP and rs.applied_cap_watts is not None and s.value > rs.applied_cap_watts:
            return True
    return False


def test_planner_with_an_8_gpu_deployment_and_a_tp4_profile_only_cuts(profile: FakeProfile) -> None:
    """Path 3 of issue 11: a DGD with 8 GPUs per replica ran at 1.93x the budget under a TP4 profile."""
    assert profile.gpus_per_replica(Role.PREFILL) == profile.gpus_per_replica(Role.DECODE) == 4
    budget = 16_000.0
    planner = make_planner(make_config(budget_watts=budget, adjustment_interval_s=60, cap_interval_s=5), profile)
    prefill, decode = _state(3, None), _state(2, None)  # caps unknown: counted at 700 W, 28,000 W
    for t in range(0, 600, 5):
        o = obs(time_s=float(t), rate=40.0, budget=budget, prefill=prefill, decode=decode)
        d = planner.tick(o)
        assert Reason.GPU_COUNT_MISMATCH in d.reasons, t
        assert any("8 GPU(s) per replica" in n and "assumes 4" in n for n in d.notes)
        assert not _adds_power(d, o), (t, d.steps)
        assert d.projected_provisioned_watts == sum(
            d.target(r).replicas * 8 * d.target(r).cap_watts for r in ROLES)
        assert d.projected_provisioned_watts <= budget
        # the cluster follows the decision
        prefill = _state(d.prefill.replicas, d.prefill.cap_watts)
        decode = _state(d.decode.replicas, d.decode.cap_watts)
    after = current_provisioned_watts({Role.PREFILL: prefill, Role.DECODE: decode}, {r: 8 for r in ROLES}, 700.0)
    assert after <= budget
    assert (prefill.ready_replicas, decode.ready_replicas) == (3, 2)  # caps were enough: no replica lost


def test_matching_gpu_count_plans_normally(profile: FakeProfile) -> None:
    planner = make_planner(make_config(), profile)
    d = planner.tick(obs(prefill=_state(1, 700.0, gpus=4), decode=_state(1, 700.0, gpus=4), rate=20.0))
    assert Reason.GPU_COUNT_MISMATCH not in d.reasons
    assert d.prefill.replicas + d.decode.replicas > 2  # the normal sizing scales up


def test_bad_gpu_count_is_named_and_the_profile_assumed(profile: FakeProfile) -> None:
    d = make_planner(make_config(), profile).tick(obs(prefill=_state(1, 700.0, gpus=0)))
    assert Reason.BAD_OBSERVATION in d.reasons and Reason.GPU_COUNT_MISMATCH not in d.reasons
    assert any("gpus_per_replica=0" in n for n in d.notes)


mismatch_states = st.builds(
    RoleState,
    ready_replicas=st.integers(0, 8),
    starting_replicas=st.integers(0, 2),
    draining_replicas=st.integers(0, 2),
    applied_cap_watts=st.one_of(st.none(), st.integers(200, 700).map(float)),
    gpus_per_replica=st.sampled_from([1, 2, 8, 16]),  # never the fake profile's 4
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    policy=st.sampled_from(policy_names()),
    ticks=st.lists(st.tuples(mismatch_states, mismatch_states, st.floats(1_000, 60_000),
                             st.one_of(st.none(), st.just(0.0), st.floats(0.1, 80.0)), st.sampled_from([5.0, 60.0])),
                   min_size=1, max_size=4),
)
def test_mismatch_never_adds_power_under_any_policy(
    policy: str, ticks: list[tuple[RoleState, RoleState, float, float | None, float]]
) -> None:
    planner = make_planner(make_config(), FakeProfile(), policy)
    time_s = 0.0
    for prefill, decode, budget, rate, step_s in ticks:
        o = obs(time_s=time_s, rate=rate, budget=budget, prefill=prefill, decode=decode)
        d = planner.tick(o)
        assert Reason.GPU_COUNT_MISMATCH in d.reasons
        assert not _adds_power(d, o), d.steps
        assert d.projected_provisioned_watts <= budget + 1e-6
        time_s += step_s
