"""Decode's KV footprint: how many sequences one decode replica holds for a predicted prompt-length distribution.

Decode capacity is bounded by KV memory as well as by the ITL target (docs/planner.md, "Decode KV footprint");
:func:`powerplanner.planning.sizing.size_role` takes the smaller per-replica capacity of the two.
"""

from __future__ import annotations

import math

from powerplanner.model.values import LoadForecast

KV_PACKING_SIGMAS = 2.0
"""How many standard deviations of a replica's summed context the KV packing margin covers (see below)."""


def kv_sequences_per_replica(max_kv_tokens: int, forecast: LoadForecast) -> int:
    """Sequences one decode replica can hold at once for the forecast's prompt-length distribution.

    Each request holds its context (prompt plus generated tokens, ``isl + osl/2`` on average over its decode) for
    its whole decode time, so by Little's law a role must hold ``rate x decode duration`` sequences and needs
    ``that / held-per-replica`` replicas (docs/planner.md, "Decode KV footprint"). Whole requests are packed
    into each replica's KV memory, so a heavy tail wastes room the mean does not show: room for one tail
    request at its end (``p90 + osl``) is kept free, and the sum of ``S`` contexts on a replica varies by about
    ``sqrt(S) x sigma`` (sigma read off the p90: ``(p90 - mean) / 1.2816``, the normal approximation), so ``S``
    solves ``S x mean + k sqrt(S) sigma = max_kv - tail`` with ``k = KV_PACKING_SIGMAS``. With only the mean
    known (no histogram) the margin is zero: the plain ``max_kv / context``.
    """
    context = max(1.0, forecast.isl_tokens + forecast.osl_tokens / 2)
    p90 = forecast.isl_p90_tokens if forecast.isl_p90_tokens is not None else forecast.isl_tokens
    sigma = max(0.0, p90 - forecast.isl_tokens) / 1.2816
    room = max_kv_tokens - (p90 + forecast.osl_tokens) if p90 > forecast.isl_tokens else float(max_kv_tokens)
    if room <= context:
        return 1
    b = KV_PACKING_SIGMAS * sigma
    root = (-b + math.sqrt(b * b + 4.0 * context * room)) / (2.0 * context)
    return max(1, int(root * root))
