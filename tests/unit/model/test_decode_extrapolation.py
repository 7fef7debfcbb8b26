"""Decode beyond the measured batch range: iteration time linear, throughput rising and saturating.

Splitwise's batch sweep ends at 64 sequences; the fitted quadratic term is kept only up to there (see
``DecodeLatency.quadratic_max_batch``). A memory-bound decode iteration reads the weights once plus each
sequence's KV cache, so beyond the data the time grows linearly with the batch and throughput never falls.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerplanner.errors import ProfileError
from powerplanner.model.latency import DecodeLatency
from powerplanner.model.profiles import load_profile

H100_PROFILES = ("llama2-70b-h100-tp2", "llama2-70b-h100-tp4", "llama2-70b-h100-tp8")


@pytest.mark.parametrize("name", H100_PROFILES)
@pytest.mark.parametrize("context", [256.0, 1024.0, 2048.0])
def test_decode_throughput_never_falls_with_batch(name: str, context: float) -> None:
    profile = load_profile(name)
    batches = np.arange(1, profile.max_batch(context) + 1, dtype=np.float64)
    throughput = [b / profile.decode_itl_s(float(b), context, 700.0) for b in batches]
    assert all(later >= earlier * (1 - 1e-12) for earlier, later in itertools.pairwise(throughput))


def test_tp4_itl_at_kv_limit_is_linear_continuation() -> None:
    """The worked numbers in builtin.py: 52.6 ms at batch 64, +0.55 ms per sequence beyond (context 1024)."""
    profile = load_profile("llama2-70b-h100-tp4")
    at64 = profile.decode_itl_s(64, 1024, 700.0)
    at352 = profile.decode_itl_s(352, 1024, 700.0)
    slope = profile.decode_itl_s(353, 1024, 700.0) - at352
    assert at64 == pytest.approx(0.0526, abs=5e-4)
    assert at352 == pytest.approx(0.2118, abs=1e-3)  # was 0.455 s with the square extrapolated
    assert at352 == pytest.approx(at64 + slope * (352 - 64), rel=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    base=st.floats(0.005, 0.05), per_seq=st.floats(0.0, 1e-3), per_kv=st.floats(0.0, 1e-7),
    b0=st.floats(1.0, 128.0), frac=st.floats(0.0, 0.999), ctx=st.floats(0.0, 8192.0),
)
def test_tangent_is_continuous_and_throughput_monotone(
    base: float, per_seq: float, per_kv: float, b0: float, frac: float, ctx: float
) -> None:
    per_sq = frac * base / (b0 * b0)  # up to (nearly) the largest square term the constructor accepts
    model = DecodeLatency(base, per_seq, per_kv, per_sq, max_kv_tokens=10**7, quadratic_max_batch=b0)
    pure = DecodeLatency(base, per_seq, per_kv, per_sq, max_kv_tokens=10**7)
    assert model.itl_s(b0, ctx) == pytest.approx(pure.itl_s(b0, ctx), rel=1e-12)
    batches = np.linspace(1.0, 4 * b0 + 64, 200)
    itl = model.itl_s_batches(batches, ctx)
    assert np.allclose(itl, [model.itl_s(float(b), ctx) for b in batches], rtol=1e-12)
    throughput = batches / itl
    assert np.all(np.diff(throughput) >= -1e-9 * throughput[1:])
    inside = batches[batches <= b0]
    assert np.allclose(model.itl_s_batches(inside, ctx), pure.itl_s_batches(inside, ctx), rtol=1e-12)


def test_square_term_too_large_for_the_range_is_rejected() -> None:
    with pytest.raises(ProfileError, match="quadratic_max_batch"):
        DecodeLatency(0.01, 1e-4, 0.0, 1e-5, max_kv_tokens=1000, quadratic_max_batch=64)
    with pytest.raises(ProfileError, match="quadratic_max_batch"):
        DecodeLatency(0.01, 1e-4, 0.0, 0.0, max_kv_tokens=1000, quadratic_max_batch=math.nan)
