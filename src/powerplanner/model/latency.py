"""Uncapped latency of one replica: prefill time per batch, decode iteration time, KV capacity.

These are the "full clock" halves of a profile; :class:`~powerplanner.model.capped.CappedProfile` multiplies
them by the cap model's slowdown. Two families share the small protocols below: parametric curves fitted on
published measurements (this module) and interpolated tables from Dynamo's profiler
(:mod:`powerplanner.model.dynamo`). Decode functions take numpy arrays of batch sizes so that a throughput
search over every batch is one vector expression, not a Python loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from powerplanner.errors import ProfileError


class PrefillTimeModel(Protocol):
    """Uncapped time for one replica to prefill a batch holding ``tokens`` prompt tokens."""

    def time_s(self, tokens: float) -> float: ...


class DecodeTimeModel(Protocol):
    """Uncapped decode iteration time and KV capacity of one replica. ``itl_s`` is the scalar hot path (the
    simulator calls it per event); ``itl_s_batches`` evaluates many batch sizes at once for throughput searches."""

    def itl_s(self, batch: float, context_tokens: float) -> float: ...

    def itl_s_batches(self, batches: NDArray[np.float64], context_tokens: float) -> NDArray[np.float64]: ...

    def max_batch(self, context_tokens: float) -> int: ...


def _finite_non_negative(owner: str, **values: float) -> list[str]:
    out = []
    for name, value in values.items():
        if not math.isfinite(value) or value < 0:
            out.append(f"{owner}: {name} = {value!r} must be a finite number >= 0; fix {name}")
    return out


@dataclass(frozen=True)
class PrefillLatency:
    """``time(N) = a + b*N + c*N^2`` seconds for N prompt tokens in the batch: a fixed launch cost, the
    linear GEMM work and the attention term that grows with prompt length."""

    a_s: float
    b_s_per_token: float
    c_s_per_token2: float = 0.0
    source: str = ""

    def __post_init__(self) -> None:
        problems = _finite_non_negative("prefill latency", a_s=self.a_s, b_s_per_token=self.b_s_per_token,
                                        c_s_per_token2=self.c_s_per_token2)
        if not problems and self.a_s + self.b_s_per_token <= 0:
            problems.append("prefill latency: a_s + b_s_per_token must be > 0; give a positive time per token")
        if problems:
            raise ProfileError(*problems)

    def time_s(self, tokens: float) -> float:
        n = max(0.0, tokens)
        return self.a_s + self.b_s_per_token * n + self.c_s_per_token2 * n * n


@dataclass(frozen=True)
class KvCapacity:
    """How many KV tokens fit on one replica: its GPUs' memory times the usable fraction, minus the
    weights, divided by the KV bytes of one token (all layers, K and V, every KV head)."""

    gpus: int
    memory_gb_per_gpu: float
    weights_gb: float
    kv_bytes_per_token: float
    memory_utilization: float = 0.9
    source: str = ""

    def __post_init__(self) -> None:
        problems = _finite_non_negative("KV capacity", memory_gb_per_gpu=self.memory_gb_per_gpu,
                                        weights_gb=self.weights_gb, kv_bytes_per_token=self.kv_bytes_per_token)
        if self.gpus < 1:
            problems.append("KV capacity: gpus must be >= 1; fix the tensor-parallel size")
        if not (0 < self.memory_utilization <= 1):
            problems.append("KV capacity: memory_utilization must lie in (0, 1]; fix memory_utilization")
        if self.kv_bytes_per_token <= 0:
            problems.append("KV capacity: kv_bytes_per_token must be > 0; fix kv_bytes_per_token")
        if problems:
            raise ProfileError(*problems)

    @property
    def max_kv_tokens(self) -> int:
        """KV tokens that fit (0 when the weights alone fill the memory)."""
        free_bytes = (self.gpus * self.memory_gb_per_gpu * self.memory_utilization - self.weights_gb) * 1e9
        return max(0, int(free_bytes // self.kv_bytes_per_token))


@dataclass(frozen=True)
class DecodeLatency:
    """``itl(B, L) = base + per_seq*B + per_kv_token*B*L + per_seq_sq*q(B)`` seconds: the weight read every
    iteration pays, per-sequence work, reading each sequence's KV cache, and the superlinear growth Splitwise's
    batch sweep shows towards its largest batches.

    ``q(B) = B^2`` only inside the measured range (``B <= quadratic_max_batch``); beyond it the curve continues
    along its tangent, ``q(B) = B^2 - (B - B0)^2`` (value and slope continuous at ``B0``). Why: a quadratic
    fitted on batches <= 64 and extrapolated to the KV limit (~350 sequences) predicts an iteration time that
    grows faster than the batch, i.e. decode throughput that *falls* with more sequences, which no memory-bound
    engine does: an iteration reads the weights once plus each sequence's KV, so the time is ~linear in the batch
    and the throughput ``B / itl`` rises towards ``1 / slope`` (it saturates, never falls) as long as
    ``base >= per_seq_sq * B0^2`` (checked). The tangent keeps the last measured marginal cost per sequence,
    which is the conservative (slowest) linear continuation of the data. ``inf`` keeps the pure quadratic.
    """

    base_s: float
    per_seq_s: float
    per_kv_token_s: float
    per_seq_sq_s: float
    max_kv_tokens: int
    source: str = ""
    quadratic_max_batch: float = math.inf

    def __post_init__(self) -> None:
        problems = _finite_non_negative("decode latency", base_s=self.base_s, per_seq_s=self.per_seq_s,
                                        per_kv_token_s=self.per_kv_token_s, per_seq_sq_s=self.per_seq_sq_s)
        b0 = self.quadratic_max_batch
        if math.isnan(b0) or b0 < 1:
            problems.append(f"decode latency: quadratic_max_batch = {b0!r} must be >= 1 (inf: no limit); "
                            "give the largest batch the fit was measured at")
        elif math.isfinite(b0) and not problems and self.per_seq_sq_s * b0 * b0 > self.base_s:
            problems.append(
                f"decode latency: per_seq_sq_s x quadratic_max_batch^2 = {self.per_seq_sq_s * b0 * b0:.4g} s exceeds "
                f"base_s = {self.base_s:.4g} s, so decode throughput would fall beyond batch {b0:g}; "
                "lower quadratic_max_batch or refit"
            )
        if not problems and self.base_s <= 0:
            problems.append("decode latency: base_s must be > 0; give the batch-1 iteration time")
        if self.max_kv_tokens < 1:
            problems.append(
                f"decode latency: max_kv_tokens = {self.max_kv_tokens} leaves no room for the KV cache; "
                "use more GPUs per replica or a GPU with more memory"
            )
        if problems:
            raise ProfileError(*problems)

    def itl_s(self, batch: float, context_tokens: float) -> float:
        b = max(0.0, batch)
        ctx = max(0.0, context_tokens)
        over = b - self.quadratic_max_batch
        square = b * b - over * over if over > 0.0 else b * b
        return self.base_s + b * (self.per_seq_s + self.per_kv_token_s * ctx) + self.per_seq_sq_s * square

    def itl_s_batches(self, batches: NDArray[np.float64], context_tokens: float) -> NDArray[np.float64]:
        b = np.maximum(np.asarray(batches, dtype=np.float64), 0.0)
        ctx = max(0.0, context_tokens)
        over = np.maximum(b - self.quadratic_max_batch, 0.0) if math.isfinite(self.quadratic_max_batch) else 0.0
        square = b * b - over * over
        return np.asarray(self.base_s + b * (self.per_seq_s + self.per_kv_token_s * ctx) + self.per_seq_sq_s * square)

    def max_batch(self, context_tokens: float) -> int:
        return max(1, int(self.max_kv_tokens // max(1.0, context_tokens)))
