"""Latency models interpolated from measured tables (Dynamo's profiler output, or our own format's tables).

Dynamo's profiler measures, per deployment, the TTFT of single prompts over a range of ISLs and the ITL of
decode at several (KV usage, context length) points; it records no power. These classes turn those tables
into the uncapped halves of a :class:`~powerplanner.model.capped.CappedProfile`, and ``*_problems``
functions list every defect of the raw arrays, one line each, so a user sees all of them at once.

Interpolation is piecewise linear (monotone, never overshoots, unlike Dynamo's cubic fit) and extrapolates
linearly past the last measured point, because prefill batches can be larger than any single measured prompt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


def _as_vector(name: str, values: object, problems: list[str], where: str) -> FloatArray | None:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        problems.append(f"{where}: {name} is not a list of numbers; regenerate the profile")
        return None
    if arr.ndim != 1 or arr.size == 0:
        problems.append(f"{where}: {name} must be a non-empty 1-D list of numbers (got shape {arr.shape})")
        return None
    if not np.all(np.isfinite(arr)):
        problems.append(f"{where}: {name} contains NaN or infinite values; remove or re-measure those points")
        return None
    return arr


def _positive(name: str, arr: FloatArray, problems: list[str], where: str) -> None:
    if np.any(arr <= 0):
        bad = float(arr[arr <= 0][0])
        problems.append(f"{where}: {name} has a non-positive value ({bad:g}); every {name} must be > 0")


def _same_length(names: tuple[str, ...], arrays: tuple[FloatArray, ...], problems: list[str], where: str) -> bool:
    lengths = {len(a) for a in arrays}
    if len(lengths) > 1:
        desc = ", ".join(f"{n}={len(a)}" for n, a in zip(names, arrays, strict=True))
        problems.append(f"{where}: arrays differ in length ({desc}); every point needs all values")
        return False
    return True


def _extrapolated(x: FloatArray, y: FloatArray, query: FloatArray) -> FloatArray:
    """Linear interpolation inside ``x``, linear extrapolation from the end segments outside (never below
    the nearest end value's sign: times stay positive)."""
    out = np.interp(query, x, y)
    if len(x) >= 2:
        hi_slope = (y[-1] - y[-2]) / (x[-1] - x[-2])
        lo_slope = (y[1] - y[0]) / (x[1] - x[0])
        above = query > x[-1]
        below = query < x[0]
        out = np.where(above, y[-1] + np.maximum(hi_slope, 0.0) * (query - x[-1]), out)
        out = np.where(below, np.maximum(y[0] + lo_slope * (query - x[0]), y[0] * 0.5), out)
    return np.asarray(out)


@dataclass(frozen=True, eq=False)
class PrefillTable:
    """Prefill time vs prompt tokens, from single-prompt TTFT measurements (ISL strictly increasing)."""

    isl_tokens: FloatArray
    times_s: FloatArray
    source: str = ""

    def time_s(self, tokens: float) -> float:
        return float(_extrapolated(self.isl_tokens, self.times_s, np.array([max(0.0, tokens)]))[0])


def prefill_table_problems(isl: object, ttft_ms: object, thpt_per_gpu: object | None, where: str) -> list[str]:
    """Every defect of Dynamo's prefill arrays (``prefill_isl``, ``prefill_ttft`` ms, ``prefill_thpt_per_gpu``)."""
    problems: list[str] = []
    isl_a = _as_vector("prefill_isl", isl, problems, where)
    ttft_a = _as_vector("prefill_ttft", ttft_ms, problems, where)
    thpt_a = None if thpt_per_gpu is None else _as_vector("prefill_thpt_per_gpu", thpt_per_gpu, problems, where)
    if isl_a is not None:
        _positive("prefill_isl", isl_a, problems, where)
        if isl_a.size >= 2 and np.any(np.diff(isl_a) <= 0):
            i = int(np.argmax(np.diff(isl_a) <= 0))
            problems.append(
                f"{where}: prefill_isl is not strictly increasing ({isl_a[i]:g} then {isl_a[i + 1]:g}); "
                "sort the points by ISL and drop duplicates"
            )
    if ttft_a is not None:
        _positive("prefill_ttft", ttft_a, problems, where)
    if thpt_a is not None:
        _positive("prefill_thpt_per_gpu", thpt_a, problems, where)
    present = tuple(a for a in (isl_a, ttft_a, thpt_a) if a is not None)
    names = tuple(n for n, a in (("prefill_isl", isl_a), ("prefill_ttft", ttft_a), ("prefill_thpt_per_gpu", thpt_a))
                  if a is not None)
    if len(present) >= 2 and _same_length(names, present, problems, where) and present[0].size < 2:
        problems.append(f"{where}: prefill needs at least 2 ISL points to interpolate; profile more ISLs")
    return problems


def prefill_tp_from_dynamo(isl: FloatArray, ttft_ms: FloatArray, thpt_per_gpu: FloatArray) -> int:
    """The profiler wrote ``thpt_per_gpu = isl / ttft_ms * 1000 / num_gpus``; recover ``num_gpus``."""
    gpus = isl * 1000.0 / (ttft_ms * thpt_per_gpu)
    return max(1, round(float(np.median(gpus))))


MAX_CONTEXT_TOKENS = 100_000_000  # far above any served context (Llama 4 Scout: 10M); larger is a unit mistake


@dataclass(frozen=True, eq=False)
class DecodeTable:
    """Decode ITL vs (KV usage, context length), grouped by context length as the profiler sweeps it: for each
    measured context a curve of ITL over KV usage; between contexts, linear in context at the same batch;
    outside the measured contexts, the nearest curve at the query's own KV usage."""

    max_kv_tokens: int
    contexts: FloatArray  # sorted distinct context lengths
    curves: tuple[tuple[FloatArray, FloatArray], ...] = field(default_factory=tuple)  # (kv_usage, itl_s) each
    source: str = ""

    @classmethod
    def from_points(cls, kv_usage: FloatArray, context: FloatArray, itl_s: FloatArray, max_kv_tokens: int,
                    source: str = "") -> DecodeTable:
        with np.errstate(over="ignore"):  # a huge context rounds to inf; it is refused by the loader anyway
            rounded = np.round(context, 6)
        contexts = np.unique(rounded)
        curves = []
        for ctx in contexts:
            mask = rounded == ctx  # grouped by the same rounded value, so every context has its points
            order = np.argsort(kv_usage[mask], kind="stable")
            x, y = kv_usage[mask][order], itl_s[mask][order]
            keep = np.concatenate(([True], np.diff(x) > 0))  # duplicate usages: keep the first
            curves.append((x[keep], y[keep]))
        return cls(max_kv_tokens=max_kv_tokens, contexts=contexts, curves=tuple(curves), source=source)

    def _curve_at(self, index: int, usage: FloatArray) -> FloatArray:
        x, y = self.curves[index]
        if x.size == 1:
            return np.full_like(usage, y[0])
        return _extrapolated(x, y, usage)

    def itl_s(self, batch: float, context_tokens: float) -> float:
        return float(self.itl_s_batches(np.array([batch], dtype=np.float64), context_tokens)[0])

    def itl_s_batches(self, batch: FloatArray, context_tokens: float) -> FloatArray:
        # Between two measured contexts, interpolate at the same batch (each curve read at the KV usage that
        # batch has at that curve's context): ITL follows batch and KV tokens, so this is near-linear in context.
        b = np.maximum(np.asarray(batch, dtype=np.float64), 1.0)
        ctx = max(1.0, context_tokens)
        c = self.contexts
        if ctx <= c[0]:
            return self._curve_at(0, b * ctx / self.max_kv_tokens)
        if ctx >= c[-1]:
            return self._curve_at(len(c) - 1, b * ctx / self.max_kv_tokens)
        hi = int(np.searchsorted(c, ctx))
        lo = hi - 1
        w = (ctx - c[lo]) / (c[hi] - c[lo])
        low_itl = self._curve_at(lo, b * c[lo] / self.max_kv_tokens)
        high_itl = self._curve_at(hi, b * c[hi] / self.max_kv_tokens)
        return np.asarray((1 - w) * low_itl + w * high_itl)

    def max_batch(self, context_tokens: float) -> int:
        return max(1, int(self.max_kv_tokens // max(1.0, context_tokens)))


def decode_table_problems(kv_usage: object, context: object, itl_ms: object, thpt_per_gpu: object | None,
                          max_kv_tokens: object, where: str) -> list[str]:
    """Every defect of Dynamo's decode arrays (``x_kv_usage``, ``y_context_length``, ``z_itl`` ms,
    ``z_thpt_per_gpu``, ``max_kv_tokens``)."""
    problems: list[str] = []
    x = _as_vector("x_kv_usage", kv_usage, problems, where)
    y = _as_vector("y_context_length", context, problems, where)
    z = _as_vector("z_itl", itl_ms, problems, where)
    t = None if thpt_per_gpu is None else _as_vector("z_thpt_per_gpu", thpt_per_gpu, problems, where)
    if x is not None and (np.any(x < 0) or np.any(x > 1.5)):
        problems.append(f"{where}: x_kv_usage must be fractions of the KV cache in [0, 1]; fix x_kv_usage")
    if y is not None:
        _positive("y_context_length", y, problems, where)
        if np.any(y > MAX_CONTEXT_TOKENS):
            problems.append(f"{where}: y_context_length has values above {MAX_CONTEXT_TOKENS:,} tokens, which no "
                            "model serves; fix y_context_length (token counts, not bytes)")
    if z is not None:
        _positive("z_itl", z, problems, where)
    if t is not None:
        _positive("z_thpt_per_gpu", t, problems, where)
    present = tuple(a for a in (x, y, z, t) if a is not None)
    names = tuple(n for n, a in (("x_kv_usage", x), ("y_context_length", y), ("z_itl", z), ("z_thpt_per_gpu", t))
                  if a is not None)
    if len(present) >= 2:
        _same_length(names, present, problems, where)
    try:
        kv = np.asarray(max_kv_tokens, dtype=np.float64).reshape(-1)
        kv_ok = kv.size >= 1 and math.isfinite(float(kv[0])) and float(kv[0]) >= 1
    except (TypeError, ValueError):
        kv_ok = False
    if not kv_ok:
        problems.append(f"{where}: max_kv_tokens must be a positive number of tokens; fix max_kv_tokens")
    return problems


def decode_tp_from_dynamo(kv_usage: FloatArray, context: FloatArray, itl_ms: FloatArray, thpt_per_gpu: FloatArray,
                          max_kv_tokens: int) -> int:
    """The profiler wrote ``z_thpt_per_gpu = output tokens/s / num_gpus``; one replica emits about
    ``batch / ITL`` tokens/s, so ``num_gpus ~ batch / ITL / z_thpt_per_gpu`` (median over points, rounded)."""
    batch = np.maximum(kv_usage * max_kv_tokens / context, 1.0)
    gpus = batch * 1000.0 / itl_ms / thpt_per_gpu
    return max(1, round(float(np.median(gpus))))
