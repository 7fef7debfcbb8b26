"""The headline bench's threshold search (sim/headline.py): finds a monotone predicate's threshold to 2%."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerplanner.sim.headline import ThresholdSearch, ratio, run_searches


def _solve(search: ThresholdSearch, passes: object) -> ThresholdSearch:
    fn = passes  # a callable float -> bool
    for _ in range(200):
        x = search.next_probe()
        if x is None:
            return search
        search = search.record(x, fn(x))  # type: ignore[operator]
    raise AssertionError("did not finish")


bounds = st.tuples(st.floats(0.05, 5.0), st.floats(1.5, 100.0)).map(lambda t: (t[0], t[0] * t[1]))


@settings(max_examples=200, deadline=None)
@given(bounds=bounds, where=st.floats(0.0, 1.0), start=st.none() | st.floats(0.0, 1.0))
def test_largest_passing_rate_within_two_percent(bounds: tuple[float, float], where: float,
                                                 start: float | None) -> None:
    lo, hi = bounds
    threshold = lo * (hi / lo) ** where
    begin = None if start is None else lo * (hi / lo) ** start
    found = _solve(ThresholdSearch(lo, hi, start=begin), lambda x: x <= threshold)
    assert found.done and found.result is not None
    assert found.result <= threshold * (1 + 1e-12)
    assert found.result >= threshold / 1.02 or found.result == hi
    # the search is logarithmic: bracketing by 2x then bisection, never a scan
    assert len(found.probes) <= 2 + math.log2(hi / lo) + math.log2(math.log(2) / math.log(1.02)) + 3


@settings(max_examples=200, deadline=None)
@given(bounds=bounds, where=st.floats(0.0, 1.0))
def test_smallest_passing_knob_within_two_percent(bounds: tuple[float, float], where: float) -> None:
    lo, hi = bounds
    threshold = lo * (hi / lo) ** where
    found = _solve(ThresholdSearch(lo, hi, passes_below=False), lambda x: x >= threshold)
    assert found.result is not None
    assert threshold * (1 - 1e-12) <= found.result <= threshold * 1.02
    assert found.probes[0][0] == lo  # the cheapest knob first


@given(bounds=bounds, below=st.booleans())
def test_none_when_unreachable(bounds: tuple[float, float], below: bool) -> None:
    lo, hi = bounds
    found = _solve(ThresholdSearch(lo, hi, passes_below=below), lambda x: False)
    assert found.done and found.result is None


@given(bounds=bounds, below=st.booleans())
def test_passing_everywhere_is_the_far_end(bounds: tuple[float, float], below: bool) -> None:
    lo, hi = bounds
    found = _solve(ThresholdSearch(lo, hi, passes_below=below), lambda x: True)
    assert found.result == (hi if below else lo)
    assert len(found.probes) == 1  # the cheapest end passes: nothing else to try


def test_result_is_none_until_done() -> None:
    search = ThresholdSearch(1.0, 8.0).record(8.0, False)
    assert not search.done and search.result is None


def test_lockstep_runs_every_search_in_batches() -> None:
    thresholds = {"a": 3.0, "b": 0.5, "c": 100.0}
    batches: list[int] = []

    def evaluate(batch: list[tuple[str, float]]) -> dict[str, bool]:
        batches.append(len(batch))
        return {k: x <= thresholds[k] for k, x in batch}

    out = run_searches({k: ThresholdSearch(1.0, 16.0, start=4.0) for k in thresholds}, evaluate)
    assert out["b"].result is None and out["c"].result == 16.0
    a = out["a"].result
    assert a is not None and 3.0 / 1.02 <= a <= 3.0
    assert batches[0] == 3 and batches == sorted(batches, reverse=True)


@pytest.mark.parametrize("bad", [dict(lo=0.0, hi=1.0), dict(lo=2.0, hi=1.0), dict(lo=1.0, hi=2.0, rel_tol=0.0),
                                 dict(lo=1.0, hi=2.0, start=3.0), dict(lo=1.0, hi=2.0, step=1.0)])
def test_bad_ranges_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ThresholdSearch(**bad)  # type: ignore[arg-type]


def test_ratio() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(None, 2.0) is None and ratio(1.0, None) is None and ratio(1.0, 0.0) is None
