"""Correction factors: observed / profiled latency per role, and which role a TTFT miss belongs to.

Our policy's factors (:func:`observed_corrections`, guarded, with the bottleneck signals of docs/planner.md
"Which role is short") and Dynamo's (:func:`dynamo_corrections`, as its SLA planner computes them); both scale
the load :func:`powerplanner.planning.sizing.size_role` sizes for.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from powerplanner.errors import UserError
from powerplanner.model.profile import PowerProfile
from powerplanner.model.values import Observation

DECODE_SHORT_MEMORY_WINDOWS = 10
"""For how many observation windows after decode last had requests waiting the TTFT is read as decode's (the
windowed TTFT drains the backlog that long after the queue has gone)."""


@dataclass(frozen=True)
class Corrections:
    """observed / profiled latency; 1.0 = the profile is right."""

    prefill: float = 1.0
    decode: float = 1.0
    # When decode workers last reported requests waiting for KV room (observation time): within one window
    # of it, the TTFT's excess is decode's, not prefill's (observed_corrections).
    decode_short_at_s: float | None = None
    # The prefill factor the prefill queue now explains (its drain term, from the workers' waiting gauge; None
    # without the gauge). Where the budget binds, power follows the queues: the latency ratio in ``prefill``
    # also reads a drained backlog as slowness, and spent on prefill it starves a KV-bound decode
    # (docs/planner.md, "Which role is short"; :func:`under_binding_budget`).
    prefill_queued: float | None = None


def under_binding_budget(corrections: Corrections) -> Corrections:
    """The corrections to size for when the budget binds: the prefill factor no larger than its queue explains."""
    if corrections.prefill_queued is None or corrections.prefill_queued >= corrections.prefill:
        return corrections
    return dataclasses.replace(corrections, prefill=corrections.prefill_queued)


def observed_corrections(
    profile: PowerProfile,
    obs: Observation,
    prefill_cap_watts: float,
    decode_cap_watts: float,
    previous: Corrections,
    ttft_target_s: float | None = None,
    drain_interval_s: float | None = None,
) -> Corrections:
    """Our correction factors: observed / expected latency at the observed load and the applied caps.

    Expected TTFT is the profile's TTFT (queueing included) at the observed ISL and per-replica request
    rate; expected ITL is the profile's iteration time at the batch Little's law gives (rate x OSL x ITL per
    ready decode replica) and context ISL + OSL/2. Two guards make this safe in a closed loop: the TTFT
    factor is only measured where the queueing model is trustworthy (per-replica utilisation below 0.7;
    near saturation the model's TTFT explodes while the windowed observation lags, which would read as
    "reality is much faster" and shrink prefill exactly when it is overloaded), and both factors are
    clamped to [1, 2]: a correction may add capacity for what the profile misses, never remove capacity
    the profile says is needed. When a factor cannot be measured the previous one is kept.

    Backlog: when the observed TTFT exceeds the target, requests are queueing; by Little's law about
    ``rate x (TTFT - target)`` of them wait beyond the target. Serving only the arrival rate would never
    drain them, so the prefill factor is at least ``1 + (TTFT - target) / drain_interval`` (drain within one
    adjustment interval), up to 3.

    Attribution (docs/planner.md, "Which role is short"): with the decode workers' waiting gauge, the wait for
    decode KV room (``waiting / rate``) is taken off the TTFT and becomes a decode backlog term; the prefill
    factor is held where it is the larger part of the excess. Without the gauges, TTFT is read as before.
    """
    prefill, decode = previous.prefill, previous.decode
    rate, isl, osl = obs.request_rate_per_s, obs.isl_tokens, obs.osl_tokens
    if not (rate and isl and osl and rate > 0 and isl > 0 and osl > 0):
        return previous
    waiting = obs.decode.waiting_requests
    decode_wait_s = waiting / rate if waiting is not None else 0.0
    short_at = obs.time_s if decode_wait_s > 0 else previous.decode_short_at_s
    decode_short = short_at is not None and obs.time_s - short_at <= DECODE_SHORT_MEMORY_WINDOWS * obs.window_s
    try:
        if obs.ttft_ms is not None and obs.ttft_ms > 0 and obs.prefill.ready_replicas > 0:
            ttft_s = max(0.0, obs.ttft_ms / 1000.0 - decode_wait_s)
            prefill = _prefill_factor(profile, obs, ttft_s, rate, isl, prefill_cap_watts, previous.prefill,
                                      ttft_target_s, drain_interval_s, decode_short)
            excess_s = obs.ttft_ms / 1000.0 - (ttft_target_s if ttft_target_s is not None else math.inf)
            if decode_wait_s > 0 and 2 * decode_wait_s > excess_s:
                prefill = min(prefill, previous.prefill)  # the wait is in decode admission: hold
        decode_backlog = 1.0 + decode_wait_s / drain_interval_s if drain_interval_s else 1.0
        if obs.itl_ms is not None and obs.itl_ms > 0 and obs.decode.ready_replicas > 0:
            context = isl + osl / 2
            batch = rate * osl * (obs.itl_ms / 1000.0) / obs.decode.ready_replicas
            batch = min(max(1.0, batch), float(profile.max_batch(context)))
            expected = profile.decode_itl_s(batch, context, decode_cap_watts)
            if math.isfinite(expected) and expected > 0:
                decode = min(2.0, max(1.0, obs.itl_ms / 1000.0 / expected))
        if waiting is not None:
            decode = max(decode if obs.itl_ms is not None else 1.0, min(3.0, decode_backlog))
            # In series: what prefill drains of its backlog reaches decode next, on top of the arrivals.
            decode = max(decode, _prefill_backlog(obs, rate, ttft_target_s, drain_interval_s))
    except (UserError, ValueError, ZeroDivisionError, OverflowError):
        return previous
    queued = (_prefill_backlog(obs, rate, ttft_target_s, drain_interval_s)
              if obs.prefill.waiting_requests is not None else None)
    return Corrections(prefill=prefill, decode=decode, decode_short_at_s=short_at, prefill_queued=queued)


def _prefill_backlog(obs: Observation, rate: float, ttft_target_s: float | None,
                     drain_interval_s: float | None) -> float:
    """The prefill queue's drain factor, ``1 + (prefill wait - target) / drain interval`` (up to 3), from the
    prefill workers' waiting gauge (1 without it)."""
    waiting = obs.prefill.waiting_requests
    if waiting is None or ttft_target_s is None or not drain_interval_s:
        return 1.0
    return min(3.0, 1.0 + max(0.0, waiting / rate - ttft_target_s) / drain_interval_s)


def _prefill_factor(profile: PowerProfile, obs: Observation, ttft_s: float, rate: float, isl: float,
                    cap_watts: float, previous: float, ttft_target_s: float | None,
                    drain_interval_s: float | None, decode_short: bool) -> float:
    """The prefill factor of :func:`observed_corrections` from the TTFT part prefill accounts for.

    Within ``DECODE_SHORT_MEMORY_WINDOWS`` windows of decode having requests waiting (``decode_short``), the
    windowed TTFT still holds a backlog decode caused; read as prefill slowness it raised prefill exactly when
    decode needed the power. There, with the prefill workers' waiting gauge, the TTFT is read as the prefill
    queue now (``waiting / rate``, Little's law) plus the profile's own TTFT, and the ratio term may only fall.
    Elsewhere the factor is as before (the ratio, guarded, and the backlog term)."""
    prefill = previous
    per_replica = rate / obs.prefill.ready_replicas
    rho = per_replica * profile.prefill_time_s(isl, cap_watts)
    expected = profile.ttft_s(isl, per_replica, cap_watts)
    waiting = obs.prefill.waiting_requests if decode_short else None
    if waiting is not None and math.isfinite(expected):
        ttft_s = min(ttft_s, waiting / rate + expected)  # the prefill queue now, not the window's backlog
    if rho < 0.7 and math.isfinite(expected) and expected > 0:
        prefill = min(2.0, max(1.0, ttft_s / expected))
    elif rho >= 0.7:
        prefill = 1.0  # the model cannot tell; the backlog term below covers overload
    if waiting is not None:
        prefill = min(prefill, previous)  # the wait is decode's: hold (the ratio may only fall)
    if ttft_target_s is not None and drain_interval_s:
        excess_s = ttft_s - ttft_target_s
        prefill = max(prefill, min(3.0, 1.0 + max(0.0, excess_s) / drain_interval_s))
    return prefill


def dynamo_corrections(profile: PowerProfile, obs: Observation, tdp_watts: float, previous: Corrections) -> Corrections:
    """Dynamo's correction factors, as its SLA planner computes them from its (cap-less) profile.

    ``prefill = observed TTFT / interpolated TTFT at the observed ISL`` (a single prefill, no queueing),
    ``decode = observed ITL / interpolated ITL at concurrency = request rate x request duration / decode
    replicas`` and context ISL + OSL/2. The profile is queried at TDP since Dynamo's has no power
    dimension. Dynamo then uses ``min(1, prefill)`` on the prefill load and divides the ITL target by
    ``decode``. Kept within [0.05, 20] only to survive degenerate windows.
    """
    prefill, decode = previous.prefill, previous.decode
    rate, isl, osl = obs.request_rate_per_s, obs.isl_tokens, obs.osl_tokens
    if not (rate and isl and osl and rate > 0 and isl > 0 and osl > 0):
        return previous
    try:
        if obs.ttft_ms is not None and obs.ttft_ms > 0:
            expected = profile.prefill_time_s(isl, tdp_watts)
            if math.isfinite(expected) and expected > 0:
                prefill = min(20.0, max(0.05, obs.ttft_ms / 1000.0 / expected))
        if obs.itl_ms is not None and obs.itl_ms > 0 and obs.decode.ready_replicas > 0:
            context = isl + osl / 2
            duration_s = (obs.ttft_ms or 0.0) / 1000.0 + osl * obs.itl_ms / 1000.0
            concurrency = rate * duration_s / obs.decode.ready_replicas
            concurrency = min(max(1.0, concurrency), float(profile.max_batch(context)))
            expected = profile.decode_itl_s(concurrency, context, tdp_watts)
            if math.isfinite(expected) and expected > 0:
                decode = min(20.0, max(0.05, obs.itl_ms / 1000.0 / expected))
    except (UserError, ValueError, ZeroDivisionError, OverflowError):
        return previous
    return Corrections(prefill=prefill, decode=decode)
