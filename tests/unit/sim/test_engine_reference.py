"""The event-jumping decode model against a brute-force reference that steps every iteration.

The reference runs one decode replica iteration by iteration: requests join at the next iteration boundary
after they are ready, every iteration takes ``decode_itl_s(batch, exact mean context now, cap)``. The engine
jumps from event to event with a virtual iteration clock; the two must agree on every request's decode time
to within the one-iteration granularity of joining.
"""

from __future__ import annotations

import numpy as np

from powerplanner.config import config_from_mapping
from powerplanner.core_settings import engine_settings
from powerplanner.sim.engine import simulate
from powerplanner.sim.settings import SimSettings
from powerplanner.sim.types import Trace
from tests.support.profiles import ClosedFormProfile
from tests.support.scripted_planner import ScriptedPlanner


def _reference_decode_s(profile: ClosedFormProfile, join_s: np.ndarray, isl: np.ndarray, osl: np.ndarray,
                        cap_watts: float) -> np.ndarray:
    order = np.argsort(join_s, kind="stable")
    done_s = np.full(len(join_s), np.nan)
    generated = np.zeros(len(join_s), dtype=np.int64)
    batch: list[int] = []
    t = 0.0
    k = 0
    while k < len(order) or batch:
        if not batch:
            t = max(t, float(join_s[order[k]]))
        while k < len(order) and join_s[order[k]] <= t + 1e-12:
            batch.append(int(order[k]))
            k += 1
        ctx = float(np.mean([isl[r] + generated[r] for r in batch]))
        t += profile.decode_itl_s(len(batch), ctx, cap_watts)
        still: list[int] = []
        for r in batch:
            generated[r] += 1
            if generated[r] >= osl[r] - 1:
                done_s[r] = t
            else:
                still.append(r)
        batch = still
    return done_s - join_s


def test_event_jumping_decode_matches_iteration_stepping() -> None:
    profile = ClosedFormProfile(decode_e_s=2e-7)  # context matters: 1000 tokens add 0.2 ms per sequence
    rng = np.random.default_rng(7)
    n = 400
    arrival = np.cumsum(rng.exponential(1.0 / 3.0, n))
    arrival -= arrival[0]
    isl = rng.integers(200, 3000, n)
    osl = rng.integers(60, 400, n)
    trace = Trace("ref", arrival, isl, osl)
    settings = SimSettings(initial_prefill_replicas=4, initial_decode_replicas=1, kv_transfer_base_s=0.0,
                           kv_transfer_s_per_token=0.0)
    engine = engine_settings(config_from_mapping({"budget": {"watts": 1e6}}))
    result = simulate(trace, profile, ScriptedPlanner(), engine, settings, 1e6)
    assert result.completed == n
    join_s = arrival + result.ttft_ms / 1000.0  # decode admission (no KV wait: KV room is ample)
    engine_decode_s = result.itl_ms / 1000.0 * (osl - 1)
    reference_s = _reference_decode_s(profile, join_s, isl, osl, 700.0)
    relative = np.abs(engine_decode_s - reference_s) / reference_s
    mean_batch = float(np.sum(engine_decode_s) / result.simulated_s)
    assert mean_batch > 3.0  # the replica really batched
    assert float(np.mean(relative)) < 0.01
    assert float(np.max(relative)) < 0.05
