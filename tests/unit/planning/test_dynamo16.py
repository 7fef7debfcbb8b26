"""``dynamo-1.6`` pinned on worked cases: its prefill rule, its own 180 s interval, +-8, pending hold, GPU fit.

The fake profile prefills 6,000 tokens/s per GPU at TDP, linearly (TP4: 24,000 tokens/s per replica, a 2,000-token
prompt in 1/12 s), so every number below is worked by hand.
"""

from __future__ import annotations

from powerplanner.core_settings import build_planner
from powerplanner.model.values import Decision, Reason, RoleState
from powerplanner.planning.dynamo16 import DYNAMO16_INTERVAL_S, DYNAMO16_MAX_STEP
from tests.support.planner_inputs import make_config, obs
from tests.support.profiles import FakeProfile

_BIG = 1e6  # a budget that never binds


def _tick(policy: str, profile: FakeProfile, **kw: object) -> Decision:
    planner = build_planner(make_config(budget_watts=_BIG), profile, policy)
    return planner.tick(obs(budget=_BIG, **kw))  # type: ignore[arg-type]


def test_prefill_is_sized_on_batch_throughput_without_queueing(profile: FakeProfile) -> None:
    # 23 req/s x 2,000 tokens = 46,000 tokens/s; one replica does 24,000 tokens/s within the 500 ms TTFT target
    # (a batch's time grows with its tokens, so b / TTFT(b) is the same for every batch that fits):
    # ceil(46,000 / 24,000) = 2.
    shipped = _tick("dynamo-1.6", profile, rate=23.0, isl=2000.0, osl=300.0)
    assert shipped.prefill.replicas == 2
    # the tuned variant's M/D/1 ceiling: S = 1/12 s, T/S = 6, rho = (2*6 - 2) / (2*6 - 1) = 10/11, so a replica
    # takes 24,000 x 10/11 = 21,818 tokens/s and ceil(46,000 / 21,818) = 3
    tuned = _tick("dynamo-sla", profile, rate=23.0, isl=2000.0, osl=300.0)
    assert tuned.prefill.replicas == 3
    assert shipped.prefill.cap_watts == shipped.decode.cap_watts == 700.0  # TDP


def test_prefill_sized_at_a_batch_of_one_when_even_that_misses_the_ttft_target(profile: FakeProfile) -> None:
    # a 24,000-token prompt takes 1 s > 500 ms: Dynamo sizes on the best achievable rate, 24,000 tokens/s
    # per replica: 2 req/s x 24,000 / 24,000 = 2 replicas
    assert _tick("dynamo-1.6", profile, rate=2.0, isl=24000.0, osl=300.0).prefill.replicas == 2


def test_no_correction_factors(profile: FakeProfile) -> None:
    # an observed TTFT 4x the profile's would move dynamo-sla's corrections; dynamo-1.6 sizes as without it
    plain = _tick("dynamo-1.6", profile, rate=23.0, isl=2000.0, osl=300.0)
    slow = _tick("dynamo-1.6", profile, rate=23.0, isl=2000.0, osl=300.0, ttft_ms=400.0, itl_ms=200.0)
    assert (slow.prefill.replicas, slow.decode.replicas) == (plain.prefill.replicas, plain.decode.replicas)


def test_holds_between_its_own_180_s_boundaries(profile: FakeProfile) -> None:
    planner = build_planner(make_config(budget_watts=_BIG), profile, "dynamo-1.6")  # planner adjusts every 60 s
    first = planner.tick(obs(budget=_BIG, rate=5.0))
    n_p, n_d = first.prefill.replicas, first.decode.replicas
    now = dict(prefill=RoleState(n_p, applied_cap_watts=700.0), decode=RoleState(n_d, applied_cap_watts=700.0))
    for t in (60.0, 120.0):
        held = planner.tick(obs(time_s=t, budget=_BIG, rate=60.0, **now))  # type: ignore[arg-type]
        assert (held.prefill.replicas, held.decode.replicas) == (n_p, n_d)
        assert any("180 s adjustment interval" in note for note in held.notes)
    acted = planner.tick(obs(time_s=DYNAMO16_INTERVAL_S, budget=_BIG, rate=60.0, **now))  # type: ignore[arg-type]
    assert acted.prefill.replicas > n_p
    assert not any("180 s adjustment interval" in note for note in acted.notes)
    # the tuned variant acts on the Planner's 60 s tick
    tuned = build_planner(make_config(budget_watts=_BIG), profile, "dynamo-sla")
    tuned.tick(obs(budget=_BIG, rate=5.0))
    assert tuned.tick(obs(time_s=60.0, budget=_BIG, rate=60.0, **now)).prefill.replicas > n_p  # type: ignore[arg-type]


def test_at_most_8_replicas_per_role_per_adjustment(profile: FakeProfile) -> None:
    # 120 req/s x 2,000 tokens = 240,000 tokens/s: 10 prefill replicas wanted from 1 -> 1 + 8 = 9
    up = _tick("dynamo-1.6", profile, rate=120.0, isl=2000.0, osl=300.0)
    assert up.prefill.replicas == 1 + DYNAMO16_MAX_STEP
    assert any("limited to +-8" in note for note in up.notes)
    # 1 req/s wants 1 prefill replica; from 20 -> 20 - 8 = 12
    down = _tick("dynamo-1.6", profile, rate=1.0, prefill=RoleState(20, applied_cap_watts=700.0))
    assert down.prefill.replicas == 20 - DYNAMO16_MAX_STEP


def test_scale_up_held_while_replicas_are_starting_scale_down_goes(profile: FakeProfile) -> None:
    # 46,000 tokens/s wants 2 prefill replicas; decode 6 -> fewer at 23 req/s x 300 tokens
    want = _tick("dynamo-1.6", profile, rate=23.0, isl=2000.0, osl=300.0)
    assert want.prefill.replicas == 2 and want.decode.replicas < 6
    starting = dict(prefill=RoleState(1, applied_cap_watts=700.0),
                    decode=RoleState(5, starting_replicas=1, applied_cap_watts=700.0))
    held = _tick("dynamo-1.6", profile, rate=23.0, isl=2000.0, osl=300.0, **starting)
    assert held.prefill.replicas == 1  # scale-up held while a decode replica starts
    assert held.decode.replicas == want.decode.replicas  # the scale-down is not held
    assert any("still starting" in note for note in held.notes)


def test_gpu_budget_fit(profile: FakeProfile) -> None:
    # 40 req/s wants (4, 5) replicas = 36 GPUs at TP4, over a 16-GPU pool. Dynamo's fit: scale 16/36, prefill
    # floor(4 x 16/36) = 1 (at most (16 - 4) / 4 = 3), the remaining 12 GPUs give decode 3 (never above its 5)
    unbounded = _tick("dynamo-1.6", profile, rate=40.0, isl=2000.0, osl=300.0)
    assert (unbounded.prefill.replicas, unbounded.decode.replicas) == (4, 5)
    planner = build_planner(make_config(budget_watts=_BIG, gpu_pool=16), profile, "dynamo-1.6")
    d = planner.tick(obs(budget=_BIG, rate=40.0, isl=2000.0, osl=300.0))
    assert (d.prefill.replicas, d.decode.replicas) == (1, 3)
    assert Reason.GPU_POOL_LIMITED in d.reasons
