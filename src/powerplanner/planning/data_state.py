"""The planner's second stage: what this window's load data says (docs/planner.md, "One tick", "Missing data").

Absence of data is never data: only positive evidence (the requests counter present, no increase) is idle, and
a window with no arrivals but latency above target is a backlog still being served, not idle.
"""

from __future__ import annotations

from enum import StrEnum

from powerplanner.model.values import Observation, Reason
from powerplanner.planning.sanitise import finite


class DataState(StrEnum):
    """The load fields of one observation, as the planner may act on them."""

    OK = "ok"  # a rate, ISL and OSL: predict and size
    IDLE = "idle"  # a rate of exactly 0: counts toward scaling to the minimum
    BACKLOG = "backlog"  # no arrivals, latency above target: hold
    MISSING = "missing"  # no usable rate, or requests without ISL/OSL: hold, never raise caps
    SOURCE_ERROR = "source_error"  # the metrics source failed: hold, never raise caps


def classify(raw: Observation, clean: Observation, sla_ttft_s: float, sla_itl_s: float) -> DataState:
    """The data state of ``raw`` (``clean`` is it after sanitising).

    ``idle`` needs positive evidence: a rate of exactly 0 (the requests counter is there and did not grow).
    No rate at all (``None``: absent series, NaN), a bad one, or requests without ISL/OSL is ``missing``:
    it says nothing about traffic, so it never moves replicas toward the minimum.
    ``backlog``: nothing arrived in the window, yet requests finished in it (TTFT or ITL samples exist)
    with latency above the target. Those requests queued behind earlier work; scaling to the minimum
    now would strand them, so it is not idle.
    """
    if not raw.source_ok:
        return DataState.SOURCE_ERROR
    rate = raw.request_rate_per_s
    if rate is None or not (finite(rate) and rate >= 0):
        return DataState.MISSING
    if rate == 0:
        ttft_s = clean.ttft_ms / 1000.0 if clean.ttft_ms is not None else None
        itl_s = clean.itl_ms / 1000.0 if clean.itl_ms is not None else None
        if (ttft_s is not None and ttft_s > sla_ttft_s) or (itl_s is not None and itl_s > sla_itl_s):
            return DataState.BACKLOG
        return DataState.IDLE
    if clean.isl_tokens is None or clean.osl_tokens is None:
        return DataState.MISSING
    return DataState.OK


def holds_without_data(state: DataState) -> bool:
    """Missing or failed data: no reason to add power, so caps are not raised above those in force."""
    return state in (DataState.MISSING, DataState.SOURCE_ERROR)


def state_explanation(state: DataState, source_error: str | None) -> tuple[tuple[Reason, ...], tuple[str, ...]]:
    """The reasons and notes a decision carries for holding on missing or failed data (none otherwise)."""
    if state is DataState.SOURCE_ERROR:
        return (Reason.SOURCE_ERROR_HOLD,), (f"metrics source failed: {source_error or 'unknown error'}; "
                                            "holding targets",)
    if state is DataState.MISSING:
        return (Reason.METRICS_MISSING,), (
            "no load data this window (request rate absent or NaN, or no ISL/OSL while requests arrive): holding "
            "the replica target, caps not raised; only a requests counter present with zero increase counts as "
            "idle",)
    return (), ()
