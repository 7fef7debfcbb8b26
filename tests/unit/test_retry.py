"""The one retry shape (src/powerplanner/retry.py): attempts, doubling waits with a cap, what is retried,
the last failure re-raised as it was, the last result returned; sleeps recorded, never slept."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from powerplanner.retry import retrying


class Flaky(Exception):
    pass


class Fatal(Exception):
    pass


def _failing(failures: list[Exception], then: object = "ok") -> tuple[list[int], object]:
    calls: list[int] = []

    def fn() -> object:
        calls.append(1)
        if len(calls) <= len(failures):
            raise failures[len(calls) - 1]
        return then

    return calls, fn


@given(st.integers(0, 6), st.integers(1, 6), st.floats(0.01, 2.0))
def test_waits_double_from_the_first_and_the_last_failure_is_raised_as_it_was(failures: int, attempts: int,
                                                                              first_s: float) -> None:
    slept: list[float] = []
    errors: list[Exception] = [Flaky(f"#{i}") for i in range(failures)]
    calls, fn = _failing(errors)
    policy = retrying(sleep=slept.append, first_wait_s=first_s, attempts=attempts,
                      retry_on=lambda e: isinstance(e, Flaky))
    if failures < attempts:
        assert policy(fn) == "ok"
    else:
        with pytest.raises(Flaky) as info:
            policy(fn)
        assert info.value is errors[attempts - 1]
    assert len(calls) == min(failures + 1, attempts)
    assert slept == pytest.approx([first_s * 2 ** i for i in range(len(calls) - 1)])


def test_a_failure_not_worth_a_retry_raises_at_once() -> None:
    slept: list[float] = []
    calls, fn = _failing([Flaky("a"), Fatal("b")])
    with pytest.raises(Fatal):
        retrying(sleep=slept.append, first_wait_s=0.1, attempts=5, retry_on=lambda e: isinstance(e, Flaky))(fn)
    assert len(calls) == 2 and slept == [0.1]


def test_waits_are_capped_and_until_stops_an_unbounded_policy() -> None:
    slept: list[float] = []
    seen: list[tuple[str, float]] = []
    calls, fn = _failing([Flaky(str(i)) for i in range(10)])
    with pytest.raises(Flaky, match=r"^6$"):
        retrying(sleep=slept.append, first_wait_s=0.2, max_wait_s=1.0, until=lambda: len(calls) > 6,
                 retry_on=lambda e: True, before_sleep=lambda exc, wait_s: seen.append((str(exc), wait_s)))(fn)
    assert slept == pytest.approx([0.2, 0.4, 0.8, 1.0, 1.0, 1.0])
    assert [s for s, _ in seen] == ["0", "1", "2", "3", "4", "5"] and [w for _, w in seen] == slept


def test_a_result_worth_a_retry_is_returned_when_the_attempts_run_out() -> None:
    slept: list[float] = []
    results = iter([{"gpu-0": "busy"}, {"gpu-0": "busy"}, {"gpu-0": "busy"}])
    policy = retrying(sleep=slept.append, first_wait_s=0.5, attempts=3, retry_on_result=bool)
    assert policy(lambda: next(results)) == {"gpu-0": "busy"}
    assert slept == [0.5, 1.0]
    assert retrying(sleep=slept.append, first_wait_s=0.5, attempts=3, retry_on_result=bool)(dict) == {}
