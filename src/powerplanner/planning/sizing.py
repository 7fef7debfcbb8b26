"""SLA sizing per role and per cap level, in the shape of Dynamo's SLA planner.

Dynamo (docs ``planner/sla-planner.md``; ``components/src/dynamo/planner``) sizes the two roles as:

- prefill: ``predicted_load = rate * isl * min(1, prefill_correction)``;
  ``replicas = ceil(predicted_load / prefill_thpt_per_gpu(isl, under TTFT target) / gpus_per_engine)``
- decode: ``corrected_itl = itl_target / decode_correction``; ``thpt = best decode throughput per GPU
  whose ITL meets corrected_itl at context isl + osl/2``; ``replicas = ceil(rate * osl / thpt / gpus)``
- corrections: ``prefill = observed_ttft / expected_ttft``, ``decode = observed_itl / expected_itl``.

We keep those formulas and add the power dimension: every per-GPU throughput is looked up at each
candidate cap, so the optimiser sees, for every cap level, how many replicas the SLA needs. Our own
policy divides capacity by a target utilisation (headroom for bursts and prediction error) and uses its
own, guarded correction factors (:func:`observed_corrections`); the Dynamo baselines use Dynamo's
(:func:`dynamo_corrections`) with ``min(1, correction)`` on prefill and no headroom, as Dynamo does.

Profile lookups are the expensive part of a tick; :class:`ProfileCache` memoises them on quantised
arguments (1% buckets), which is accurate far below the profile's own error and keeps one tick within
a few milliseconds with 64 cap levels per role.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from powerplanner.model.profile import PowerProfile
from powerplanner.model.roles import Role
from powerplanner.model.values import LoadForecast
from powerplanner.planning.corrections import Corrections as Corrections
from powerplanner.planning.corrections import dynamo_corrections as dynamo_corrections
from powerplanner.planning.corrections import observed_corrections as observed_corrections
from powerplanner.planning.corrections import under_binding_budget as under_binding_budget
from powerplanner.planning.kv_footprint import kv_sequences_per_replica

FloatArray = npt.NDArray[np.float64]

_BUCKET = math.log(1.01)
_CACHE_LIMIT = 20_000


def _quantise(value: float) -> float:
    """Round a positive value to the centre of its 1% log bucket (keeps memo keys few)."""
    if value <= 0 or not math.isfinite(value):
        return value
    return math.exp(round(math.log(value) / _BUCKET) * _BUCKET)


class ProfileCache:
    """Memoised, vectorised (over caps) view of a :class:`PowerProfile`.

    Per-planner state, not module state: each Planner owns one. A profile error (e.g. a cap outside the
    GPU's range) is a programming error here, because every cap passed in comes from the profile's own
    levels or the GPU's limits.
    """

    def __init__(self, profile: PowerProfile) -> None:
        self.profile = profile
        self._memo: dict[tuple[object, ...], float] = {}
        top = profile.gpu.max_limit_watts
        # A cap at or above the role's natural draw never binds, so the role performs as at the top cap
        # (docs/profile-format.md: "a cap at or above it changes nothing"). Looking such caps up once at the
        # top limit cuts the decode lookups per tick by about two thirds on an H100.
        self._natural = {role: min(top, profile.natural_draw_watts(role)) for role in (Role.PREFILL, Role.DECODE)}
        self._top = top

    def _perf_cap(self, role: Role, cap: float) -> float:
        return self._top if cap >= self._natural[role] else cap

    def _get(self, key: tuple[object, ...], compute: Callable[..., float], *args: object) -> float:
        value = self._memo.get(key)
        if value is None:
            if len(self._memo) >= _CACHE_LIMIT:
                self._memo.clear()
            value = float(compute(*args))
            if not math.isfinite(value) or value < 0:
                value = 0.0
            self._memo[key] = value
        return value

    def prefill_tokens_per_s_per_gpu(
        self, isl: float, caps: Sequence[float], ttft_target_s: float | None
    ) -> FloatArray:
        q_isl = _quantise(max(1.0, isl))
        q_t = None if ttft_target_s is None else _quantise(ttft_target_s)
        f = self.profile.prefill_throughput_tokens_per_s_per_gpu
        eff = [self._perf_cap(Role.PREFILL, c) for c in caps]
        return np.array([self._get(("p", q_isl, c, q_t), f, q_isl, c, q_t) for c in eff], dtype=np.float64)

    def decode_tokens_per_s_per_gpu(
        self, context: float, caps: Sequence[float], itl_target_s: float | None
    ) -> FloatArray:
        q_ctx = _quantise(max(1.0, context))
        q_t = None if itl_target_s is None else _quantise(itl_target_s)
        f = self.profile.decode_throughput_tokens_per_s_per_gpu
        eff = [self._perf_cap(Role.DECODE, c) for c in caps]
        return np.array([self._get(("d", q_ctx, c, q_t), f, q_ctx, c, q_t) for c in eff], dtype=np.float64)

    def decode_batch_tokens_per_s_per_gpu(self, batch: int, context: float, caps: Sequence[float]) -> FloatArray:
        """Per-GPU decode throughput of a batch of ``batch`` sequences at mean context ``context``, each cap; at the
        top of the context's 1% bucket (a bound: the ITL grows with context, and the KV term must not round down)."""
        q_ctx = _quantise(max(1.0, context))
        top = q_ctx * math.exp(_BUCKET / 2)
        f = self.profile.decode_itl_s
        eff = [self._perf_cap(Role.DECODE, c) for c in caps]
        itl = np.array([self._get(("dk", batch, q_ctx, c), f, float(batch), top, c) for c in eff],
                       dtype=np.float64)
        tp = self.profile.gpus_per_replica(Role.DECODE)
        with np.errstate(divide="ignore"):
            return np.where(itl > 0, batch / np.where(itl > 0, itl, 1.0) / tp, 0.0)

    def decode_smallest_batch_tokens_per_s_per_gpu(self, context: float, caps: Sequence[float]) -> FloatArray:
        """Per-GPU decode throughput of a batch of one at each cap (the lowest-load point of a profile)."""
        q_ctx = _quantise(max(1.0, context))
        f = self.profile.decode_itl_s
        eff = [self._perf_cap(Role.DECODE, c) for c in caps]
        itl = np.array([self._get(("d1", q_ctx, c), f, 1.0, q_ctx, c) for c in eff], dtype=np.float64)
        tp = self.profile.gpus_per_replica(Role.DECODE)
        with np.errstate(divide="ignore"):
            return np.where(itl > 0, 1.0 / np.where(itl > 0, itl, 1.0) / tp, 0.0)

    def draw_watts(self, role: Role, caps: Sequence[float], utilization: float) -> FloatArray:
        f = self.profile.draw_watts
        return np.array(
            [self._get(("w", role.value, c, utilization), f, role, c, utilization) for c in caps], dtype=np.float64
        )


@dataclass(frozen=True)
class SizingRules:
    """What differs between our sizing and Dynamo's."""

    target_utilization: float = 1.0
    dynamo_prefill_correction: bool = True  # min(1, c) as Dynamo; else c as given (ours: already >= 1)
    # Dynamo divides the ITL target by the decode correction; near the profile's minimum ITL that makes the
    # target unreachable at any batch and decode capacity collapses. Ours scales the decode load instead.
    decode_correction_on_target: bool = True
    # When no batch meets the (corrected) ITL target: Dynamo's ``find_best_throughput_per_gpu`` returns the
    # throughput at the lowest KV load of its grid (the first column, ``xi[0]``), and its current decode
    # planner "scales with the best achievable rate" (the lowest-ITL point), i.e. the smallest batch; ours
    # sizes on raw throughput instead (its correction never moves the target, so this only happens when
    # even batch 1 misses the target, where more replicas cannot help).
    unreachable_itl_at_smallest_batch: bool = True
    # Decode's KV footprint with a packing margin for the prompt-length tail (planning/kv_footprint.py); Dynamo
    # sizes decode at the mean context only (its best batch is bounded by max_kv / mean context).
    kv_packing_margin: bool = False


def ours_sizing_rules(target_utilization: float) -> SizingRules:
    """Our sizing: at ``planner.target_utilization``, observed corrections as given, the load scaled (not the
    ITL target) by the decode correction, raw throughput when no batch meets the target, decode's KV footprint
    with a margin for the prompt-length tail."""
    return SizingRules(target_utilization=target_utilization, dynamo_prefill_correction=False,
                       decode_correction_on_target=False, unreachable_itl_at_smallest_batch=False,
                       kv_packing_margin=True)


def dynamo_sizing_rules(_target_utilization: float = 1.0) -> SizingRules:
    """Dynamo's planner sizing (its documented behaviour): full utilisation, its prefill correction."""
    return SizingRules(target_utilization=1.0, dynamo_prefill_correction=True)


@dataclass(frozen=True)
class RoleCapacity:
    """For one role and each candidate cap: SLA-bound and raw throughput per GPU, power draw endpoints.

    ``demand_tokens_per_s`` is what the role must process next interval (prompt tokens for prefill,
    output tokens for decode), corrections applied.
    """

    role: Role
    caps_watts: FloatArray
    sla_tokens_per_s_per_gpu: FloatArray  # highest per-GPU throughput that still meets the latency target
    max_tokens_per_s_per_gpu: FloatArray  # raw throughput (busy-fraction denominator)
    idle_draw_watts: FloatArray  # per GPU at utilisation 0
    busy_draw_watts: FloatArray  # per GPU at utilisation 1
    gpus_per_replica: int
    demand_tokens_per_s: float
    target_utilization: float
    sla_reachable: bool  # False: no cap meets the target even at zero load; sized on raw throughput

    def capacity_per_replica(self) -> FloatArray:
        """Tokens/s one replica may take at each cap while meeting the SLA with headroom."""
        return self.sla_tokens_per_s_per_gpu * self.gpus_per_replica * self.target_utilization

    def replicas_for(self, fraction: float) -> FloatArray:
        """Replicas needed at each cap to serve ``fraction`` of the demand (inf where capacity is 0)."""
        need = fraction * self.demand_tokens_per_s
        cap = self.capacity_per_replica()
        with np.errstate(divide="ignore", invalid="ignore"):
            n = np.where(cap > 0, np.ceil(need / np.where(cap > 0, cap, 1.0) - 1e-9), np.inf)
        return np.where(need <= 0, 0.0, n)

    def draw_per_replica(self, replicas: FloatArray, served_fraction: float = 1.0) -> FloatArray:
        """Predicted draw of ``replicas`` replicas at each cap, all GPUs, serving the demand fraction.

        Draw is interpolated linearly in utilisation between idle and busy, the usual first-order model
        (the profile's own curve is at most a few percent off it).
        """
        load = served_fraction * self.demand_tokens_per_s
        gpus = replicas * self.gpus_per_replica
        with np.errstate(divide="ignore", invalid="ignore"):
            raw = gpus * self.max_tokens_per_s_per_gpu
            util = np.where(raw > 0, load / np.where(raw > 0, raw, 1.0), 1.0)
        util = np.clip(util, 0.0, 1.0)
        return gpus * (self.idle_draw_watts + util * (self.busy_draw_watts - self.idle_draw_watts))


def size_role(
    cache: ProfileCache,
    role: Role,
    caps_watts: Sequence[float],
    forecast: LoadForecast,
    ttft_target_s: float,
    itl_target_s: float,
    corrections: Corrections,
    rules: SizingRules,
) -> RoleCapacity:
    """Size one role at every candidate cap (see the module docstring for the formulas)."""
    caps = [float(c) for c in caps_watts]
    if role is Role.PREFILL:
        factor = min(1.0, corrections.prefill) if rules.dynamo_prefill_correction else corrections.prefill
        demand = forecast.request_rate_per_s * forecast.isl_tokens * factor
        sla = cache.prefill_tokens_per_s_per_gpu(forecast.isl_tokens, caps, ttft_target_s)
        raw = cache.prefill_tokens_per_s_per_gpu(forecast.isl_tokens, caps, None)
    else:
        context = forecast.isl_tokens + forecast.osl_tokens / 2
        demand = forecast.request_rate_per_s * forecast.osl_tokens
        if rules.decode_correction_on_target:
            corrected_itl = itl_target_s / max(corrections.decode, 1e-3)
        else:
            corrected_itl = itl_target_s
            demand *= corrections.decode
        sla = cache.decode_tokens_per_s_per_gpu(context, caps, corrected_itl)
        raw = cache.decode_tokens_per_s_per_gpu(context, caps, None)
        # The KV constraint next to the ITL one: a replica serves at most the sequences its KV memory holds
        # for this prompt-length distribution; the smaller per-replica capacity (more replicas) wins.
        tail = forecast.isl_p90_tokens
        if rules.kv_packing_margin and tail is not None and tail > forecast.isl_tokens:  # else max_batch bounds it
            held = kv_sequences_per_replica(cache.profile.max_batch(1.0), forecast)
            sla = np.minimum(sla, cache.decode_batch_tokens_per_s_per_gpu(held, context, caps))
    reachable = bool(np.any(sla > 0))
    if not reachable:
        if role is Role.DECODE and rules.unreachable_itl_at_smallest_batch:
            sla = cache.decode_smallest_batch_tokens_per_s_per_gpu(forecast.isl_tokens + forecast.osl_tokens / 2,
                                                                   caps)
        else:
            sla = raw.copy()
    return RoleCapacity(
        role=role,
        caps_watts=np.asarray(caps, dtype=np.float64),
        sla_tokens_per_s_per_gpu=sla,
        max_tokens_per_s_per_gpu=np.maximum(raw, sla),
        idle_draw_watts=cache.draw_watts(role, caps, 0.0),
        busy_draw_watts=cache.draw_watts(role, caps, 1.0),
        gpus_per_replica=cache.profile.gpus_per_replica(role),
        demand_tokens_per_s=max(0.0, demand),
        target_utilization=rules.target_utilization,
        sla_reachable=reachable,
    )


def dynamo_replicas(capacity: RoleCapacity, min_replicas: int, headroom: float = 1.0) -> int:
    """Dynamo's replica count for one role at its (single) cap: ceil(headroom x demand / thpt / gpus), >= min.
    ``headroom`` is ``planner.baseline_replica_headroom`` (1.0: Dynamo's own rule)."""
    n = capacity.replicas_for(headroom)[0]
    if not math.isfinite(n):
        n = float(min_replicas)
    return max(min_replicas, int(n))
