"""Engine limits of the simulated decode replicas: vLLM's ``max_num_seqs`` bounds the running batch."""

from __future__ import annotations

import numpy as np

from powerplanner.config import config_from_mapping
from powerplanner.core_settings import engine_settings
from powerplanner.sim.engine import simulate
from powerplanner.sim.settings import SimSettings
from powerplanner.sim.types import Trace
from tests.support.profiles import ClosedFormProfile
from tests.support.scripted_planner import ScriptedPlanner


def _burst(n: int) -> Trace:
    """``n`` short prompts at once with long answers: they all want to decode at the same time."""
    return Trace("burst", np.zeros(n), np.full(n, 100, dtype=np.int64), np.full(n, 3000, dtype=np.int64))


def _peak_decoding(settings: SimSettings) -> int:
    engine = engine_settings(config_from_mapping({"budget": {"watts": 1e6}, "planner": {}}))
    profile = ClosedFormProfile(kv_tokens=1e7)  # KV room for thousands of sequences: only the engine limit binds
    result = simulate(_burst(400), profile, ScriptedPlanner(), engine, settings, 1e6)
    assert result.completed == 400
    return int(result.series.decoding_requests.max())


def test_default_bound_is_vllms_max_num_seqs() -> None:
    assert SimSettings().decode_max_batch == 256


def test_running_sequences_never_exceed_the_engine_bound() -> None:
    base = {"initial_prefill_replicas": 4, "initial_decode_replicas": 1}
    assert _peak_decoding(SimSettings(**base)) == 256
    assert _peak_decoding(SimSettings(decode_max_batch=None, **base)) == 400


def test_decode_queue_max_counts_the_requests_waiting_for_a_decode_slot() -> None:
    """400 prompts at once, one decode replica holding 100: 300 wait for decode admission at the peak, and the
    metric reports exactly that (a KV- or batch-bound decode shows here while its ITL looks fine)."""
    from powerplanner.sim.metrics import SlaTargets, summarize

    engine = engine_settings(config_from_mapping({"budget": {"watts": 1e6}, "planner": {}}))
    settings = SimSettings(initial_prefill_replicas=4, initial_decode_replicas=1, decode_max_batch=100)
    result = simulate(_burst(400), ClosedFormProfile(kv_tokens=1e7), ScriptedPlanner(), engine, settings, 1e6)
    assert result.completed == 400
    assert result.decode_queue_max == 300
    assert summarize(result, SlaTargets(ttft_ms=500.0, itl_ms=50.0)).to_json()["decode_queue_max"] == 300
    ample = SimSettings(initial_prefill_replicas=4, initial_decode_replicas=1, decode_max_batch=None)
    assert simulate(_burst(400), ClosedFormProfile(kv_tokens=1e7), ScriptedPlanner(), engine, ample,
                    1e6).decode_queue_max <= 1
