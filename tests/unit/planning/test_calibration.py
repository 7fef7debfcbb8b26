"""Online calibration (planning/calibration.py, planning/belief.py): the estimator converges to the plant's curves.

Synthetic observations come from a random plant (the built-in profile with its compute shares and latency scaled),
with multiplicative noise, generated the way the observation model reads them: prefill busy fraction from the
measured draw (utilisation law), decode ITL at the batch Little's law gives. Tolerance: after 120 windows at random
caps, the learned slowdown curve ``k x r(cap)`` is within 5% of the plant's at every cap level of each role.
"""

from __future__ import annotations

import math
import random
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from powerplanner.model.capped import CappedProfile
from powerplanner.model.latency import DecodeLatency, PrefillLatency
from powerplanner.model.roles import ROLES, Role
from powerplanner.model.values import Observation, RoleState
from powerplanner.planning.belief import Gaussian2, RoleBelief, learned_profile, slowdown_features
from powerplanner.planning.calibration import CalibrationSettings, Calibrator, md1_service_s, neighbour_levels
from tests.support.profiles import builtin_profile

PROFILE = "llama2-70b-h100-tp4"
TOLERANCE = 0.05
WINDOW_S = 60.0


def _profile() -> CappedProfile:
    p = builtin_profile(PROFILE)
    assert isinstance(p, CappedProfile)
    return p


def _plant(profile: CappedProfile, share: dict[Role, float], scale: dict[Role, float]) -> CappedProfile:
    assert isinstance(profile.prefill, PrefillLatency) and isinstance(profile.decode, DecodeLatency)
    k_p, k_d = scale[Role.PREFILL], scale[Role.DECODE]
    return replace(
        profile,
        prefill_caps=replace(profile.prefill_caps, compute_share=share[Role.PREFILL]),
        decode_caps=replace(profile.decode_caps, compute_share=share[Role.DECODE]),
        prefill=replace(profile.prefill, a_s=profile.prefill.a_s * k_p, b_s_per_token=profile.prefill.b_s_per_token
                        * k_p, c_s_per_token2=profile.prefill.c_s_per_token2 * k_p),
        decode=replace(profile.decode, base_s=profile.decode.base_s * k_d, per_seq_s=profile.decode.per_seq_s * k_d,
                       per_kv_token_s=profile.decode.per_kv_token_s * k_d,
                       per_seq_sq_s=profile.decode.per_seq_sq_s * k_d),
    )


def _window(plant: CappedProfile, caps: dict[Role, float], t: float, rng: random.Random, noise: float
            ) -> Observation:
    """One window at ``caps`` as a metrics source reports it (noisy): prefill utilisation from the draw."""
    isl, osl = 2000.0, 300.0
    context = isl + osl / 2
    batch = rng.uniform(4, 48)
    itl_s = plant.decode_itl_s(batch, context, caps[Role.DECODE])
    n_d = 4
    rate = batch * n_d / (osl * itl_s)  # Little's law on each decode replica
    service_s = plant.prefill_time_s(isl, caps[Role.PREFILL])
    n_p = max(1, math.ceil(rate * service_s / rng.uniform(0.15, 0.45)))
    rho = rate / n_p * service_s
    model = plant.prefill_caps
    gpus = n_p * plant.prefill_tp
    busy_w = min(caps[Role.PREFILL], model.natural_draw_watts)
    draw = gpus * (model.idle_watts + rho * (busy_w - model.idle_watts))
    return Observation(
        time_s=t, window_s=WINDOW_S, request_rate_per_s=rate, isl_tokens=isl, osl_tokens=osl,
        ttft_ms=1000.0 * plant.ttft_s(isl, rate / n_p, caps[Role.PREFILL]) * (1 + rng.gauss(0, noise)),
        itl_ms=1000.0 * itl_s * (1 + rng.gauss(0, noise)),
        prefill=RoleState(n_p, applied_cap_watts=caps[Role.PREFILL],
                          measured_draw_watts=draw * (1 + rng.gauss(0, noise / 3))),
        decode=RoleState(n_d, applied_cap_watts=caps[Role.DECODE]),
        budget_watts=1e6,
    )


def _feed(calibrator: Calibrator, window: Observation, caps: dict[Role, float], t: float) -> float:
    """One steady window seen by two ticks 30 s apart (the cap held throughout), after a quiet gap of one window
    so that no window mixes two synthetic ones (each claims steady load)."""
    for tick_s in (t + 1.5 * WINDOW_S, t + 2 * WINDOW_S):
        calibrator.observe(replace(window, time_s=tick_s), caps)
    return t + 2 * WINDOW_S


def _learned_slowdown(belief: RoleBelief, profile: CappedProfile, role: Role, cap: float) -> float:
    return belief.slowdown.predict(slowdown_features(profile.cap_model(role), cap))[0]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(share_p=st.floats(0.3, 1.0), share_d=st.floats(0.0, 0.6), scale_p=st.floats(0.85, 1.3),
       scale_d=st.floats(0.85, 1.3), seed=st.integers(0, 10_000))
def test_estimator_converges_to_the_plant_curves(share_p: float, share_d: float, scale_p: float, scale_d: float,
                                                  seed: int) -> None:
    profile = _profile()
    plant = _plant(profile, {Role.PREFILL: share_p, Role.DECODE: share_d},
                   {Role.PREFILL: scale_p, Role.DECODE: scale_d})
    calibrator = Calibrator(CalibrationSettings(enabled=True, scale_min=0.5), profile)
    rng = random.Random(seed)
    levels = {role: profile.cap_levels(role, 16) for role in ROLES}
    t = 0.0
    for _ in range(120):
        caps = {role: rng.choice(levels[role]) for role in ROLES}
        t = _feed(calibrator, _window(plant, caps, t, rng, noise=0.03), caps, t)
    for role in ROLES:
        for cap in levels[role]:
            want = plant.slowdown(role, cap) * (scale_p if role is Role.PREFILL else scale_d)
            got = _learned_slowdown(calibrator.beliefs[role], profile, role, cap)
            assert abs(got - want) <= TOLERANCE * want, (role, cap, got, want)
        low = levels[role][0]  # the belief is sure of it too: its std there is below the tolerance
        assert calibrator.slowdown_std(role, low) < TOLERANCE * _learned_slowdown(calibrator.beliefs[role], profile,
                                                                                  role, low)


def prefill_sweep(prefill_share: float, windows: int, seed: int) -> tuple[Calibrator, CappedProfile]:
    """A calibrator fed ``windows`` windows of a plant whose prefill compute share is ``prefill_share``, the prefill
    cap cycling through every level (decode uncapped); returns it and the plant."""
    profile = _profile()
    plant = _plant(profile, {Role.PREFILL: prefill_share, Role.DECODE: profile.decode_caps.compute_share},
                   {Role.PREFILL: 1.0, Role.DECODE: 1.0})
    calibrator = Calibrator(CalibrationSettings(enabled=True), profile)
    rng = random.Random(seed)
    levels = profile.cap_levels(Role.PREFILL, 16)
    t = 0.0
    for i in range(windows):
        caps = {Role.PREFILL: levels[i % len(levels)], Role.DECODE: 700.0}
        t = _feed(calibrator, _window(plant, caps, t, rng, noise=0.02), caps, t)
    return calibrator, plant


def test_the_planning_profile_follows_a_belief_that_departs() -> None:
    profile = _profile()
    calibrator, plant = prefill_sweep(1.0, 80, seed=1)
    levels = profile.cap_levels(Role.PREFILL, 16)
    assert calibrator.departs(Role.PREFILL) and not calibrator.departs(Role.DECODE)
    low = levels[0]
    assert calibrator.profile.slowdown(Role.PREFILL, low) > profile.slowdown(Role.PREFILL, low) * 1.1
    assert abs(calibrator.profile.slowdown(Role.PREFILL, low) / plant.slowdown(Role.PREFILL, low) - 1) < TOLERANCE
    assert calibrator.profile.decode_caps == profile.decode_caps  # within the dead band: the given profile stays
    assert "prefill.compute_share" in calibrator.departed()


def test_plant_equal_to_profile_keeps_the_given_profile() -> None:
    profile = _profile()
    calibrator = Calibrator(CalibrationSettings(enabled=True), profile)
    rng = random.Random(2)
    t = 0.0
    for _ in range(60):
        caps = {role: rng.choice(profile.cap_levels(role, 16)) for role in ROLES}
        t = _feed(calibrator, _window(profile, caps, t, rng, noise=0.03), caps, t)
    assert calibrator.profile is profile
    assert calibrator.departed() == []


def test_one_update_per_window_and_none_without_data() -> None:
    profile = _profile()
    calibrator = Calibrator(CalibrationSettings(enabled=True), profile)
    rng = random.Random(3)
    caps = {Role.PREFILL: 700.0, Role.DECODE: 700.0}
    for i in range(12):  # 5 s ticks: one 60 s window
        calibrator.observe(_window(profile, caps, 5.0 * (i + 1), rng, noise=0.0), caps)
    assert calibrator.beliefs[Role.DECODE].slowdown.count == 1
    empty = replace(_window(profile, caps, 200.0, rng, 0.0), request_rate_per_s=None, ttft_ms=None, itl_ms=None)
    before = dict(calibrator.beliefs)
    calibrator.observe(empty, caps)
    assert calibrator.beliefs == before  # absence of data is never data


def test_gaussian_update_is_the_least_squares_limit() -> None:
    g = Gaussian2.prior((0.0, 0.0), (100.0, 100.0))
    for x1, x2 in [(1.0, 1.0), (1.0, 2.0), (1.0, 3.0), (1.0, 4.0)]:
        g = g.update((x1, x2), 2.0 * x1 + 0.5 * x2, 1e-3)
    assert abs(g.mean[0] - 2.0) < 1e-3 and abs(g.mean[1] - 0.5) < 1e-3
    assert g.count == 4


def test_md1_inversion_round_trips() -> None:
    for service_s, rate in [(0.1, 0.0), (0.1, 3.0), (0.2, 4.5), (0.05, 10.0)]:
        rho = rate * service_s
        ttft = service_s + rho * service_s / (2 * (1 - rho))
        got = md1_service_s(ttft, rate)
        assert got is not None and abs(got - service_s) < 1e-6
    assert md1_service_s(-1.0, 1.0) is None


def test_neighbours_are_the_adjacent_levels() -> None:
    assert neighbour_levels((200.0, 300.0, 400.0), 300.0) == (200.0, 400.0)
    assert neighbour_levels((200.0, 300.0, 400.0), 200.0) == (300.0,)
    assert neighbour_levels((200.0, 300.0, 400.0), 350.0) == (300.0, 400.0)


def test_learned_profile_keeps_the_cap_models_checks() -> None:
    profile = _profile()
    beliefs = {role: RoleBelief.prior(profile.cap_model(role), 0.1, 0.3, 0.1) for role in ROLES}
    wild = replace(beliefs[Role.PREFILL], slowdown=Gaussian2.prior((-3.0, 9.0), (0.1, 0.1)),
                   draw=Gaussian2.prior((-50.0, 10.0), (1.0, 1.0)))
    out = learned_profile(profile, {**beliefs, Role.PREFILL: wild}, (1.0, 2.0))
    caps = out.prefill_caps
    assert caps.compute_share == 1.0 and 0.0 <= caps.idle_watts < caps.min_limit_watts
    assert out.prefill.time_s(1000.0) == profile.prefill.time_s(1000.0) * 2.0  # scale clamped to its bound


def test_an_outlier_window_moves_the_belief_by_at_most_three_of_its_stds() -> None:
    g = Gaussian2.prior((0.3, 0.7), (0.1, 0.1))
    predicted, std = g.predict((1.0, 1.5))
    innovation_std = (std**2 + 0.05**2) ** 0.5
    moved = g.update((1.0, 1.5), 50.0, 0.05, clip=3.0)
    assert abs(moved.predict((1.0, 1.5))[0] - predicted) <= 3.0 * innovation_std + 1e-9
    assert g.update((1.0, 1.5), 50.0, 0.05).predict((1.0, 1.5))[0] > 10.0  # unclipped, it would follow


def test_the_belief_stays_physical_and_learns_nothing_during_a_scale_up() -> None:
    profile = _profile()
    calibrator = Calibrator(CalibrationSettings(enabled=True), profile)
    rng = random.Random(4)
    caps = {Role.PREFILL: 233.0, Role.DECODE: 700.0}
    window = _window(profile, caps, 0.0, rng, noise=0.0)
    scaling = replace(window, prefill=replace(window.prefill, starting_replicas=2),
                      decode=replace(window.decode, starting_replicas=1))
    _feed(calibrator, scaling, caps, 0.0)
    assert all(b.slowdown.count == 0 for b in calibrator.beliefs.values())
    low, high = {Role.PREFILL: 700.0, Role.DECODE: 200.0}, {Role.PREFILL: 700.0, Role.DECODE: 700.0}
    fast = _window(profile, high, 0.0, rng, noise=0.0)
    t = 0.0
    for i in range(30):  # ITL 20x at the lowest cap: more than even a compute share of 1 explains
        caps, factor = (low, 20.0) if i % 2 else (high, 1.0)
        t = _feed(calibrator, replace(fast, itl_ms=(fast.itl_ms or 1.0) * factor,
                                      decode=replace(fast.decode, applied_cap_watts=caps[Role.DECODE])), caps, t)
    x1, x2 = slowdown_features(profile.decode_caps, 200.0)
    assert x2 > x1  # the unconstrained fit of these windows has a < 0 (about -0.45 without the guard)
    a, b = calibrator.beliefs[Role.DECODE].slowdown.mean
    assert a >= 0.0 and b >= 0.0 and calibrator.beliefs[Role.DECODE].compute_share == 1.0


def test_draw_learning_converges_to_the_plants_natural_and_idle_draw() -> None:
    """``learn_draw``: per-GPU draw ``idle (held - busy) + min(cap, natural) busy`` with the busy GPUs as the planner
    models them (demand over throughput at the cap); the decode plant draws 300 W uncapped, the profile says 380."""
    profile = _profile()
    calibrator = Calibrator(CalibrationSettings(enabled=True, learn_draw=True), profile)
    rng = random.Random(6)
    natural, idle = 300.0, 70.0
    levels = profile.cap_levels(Role.DECODE, 16)
    for i in range(200):
        caps = {Role.PREFILL: 700.0, Role.DECODE: rng.choice(levels)}
        window = _window(profile, caps, 0.0, rng, noise=0.0)
        ready = window.decode.ready_replicas * profile.decode_tp
        assert window.request_rate_per_s and window.isl_tokens and window.osl_tokens
        util = calibrator._utilization(Role.DECODE, window.request_rate_per_s, window.isl_tokens,
                                       window.osl_tokens, ready, caps[Role.DECODE])
        busy = ready * util
        draw = idle * (ready - busy) + min(caps[Role.DECODE], natural) * busy
        decode = replace(window.decode, measured_draw_watts=draw * (1 + rng.gauss(0, 0.01)))
        for tick_s in (100.0 * i, 100.0 * i + 5.0):  # the cap held for a whole tick before the draw is read
            calibrator.observe(replace(window, time_s=tick_s, decode=decode), caps)
    learned = calibrator.beliefs[Role.DECODE].parameters()
    assert abs(learned["natural_draw_watts"][0] - natural) < 0.05 * natural
    assert abs(learned["idle_watts"][0] - idle) < 0.1 * idle
