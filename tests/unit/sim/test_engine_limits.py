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
