"""Every retry loop of the project through one library (tenacity), in one shape: a number of attempts (or until a
condition), exponential waits from ``first_wait_s`` doubling up to ``max_wait_s``, and an injected ``sleep``, so
tests never wait and the agent's pod watch can sleep on its stop event.

Why tenacity: the four loops (Kubernetes calls, Prometheus queries, the agent's restore at exit, the pod watch)
each had their own counter, doubling and last-error bookkeeping; tenacity is the maintained, dependency-free
library for exactly this (docs/internals.md, "Libraries instead of hand-written parts"). Callers give what is
worth a retry; the last failure is re-raised as it was (``reraise``), never wrapped in tenacity's ``RetryError``;
with ``retry_on_result``, the last result is returned when the attempts run out.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import tenacity


def retrying(
    *,
    sleep: Callable[[float], object],
    first_wait_s: float,
    attempts: int | None = None,
    until: Callable[[], bool] | None = None,
    max_wait_s: float = math.inf,
    retry_on: Callable[[BaseException], bool] | None = None,
    retry_on_result: Callable[[Any], bool] | None = None,
    before_sleep: Callable[[BaseException | None, float], None] | None = None,
) -> tenacity.Retrying:
    """A :class:`tenacity.Retrying`: call it with the function (``retrying(...)(fn, *args)``).

    ``attempts``: calls in all (None: no limit); ``until()``: stop retrying once it is true (e.g. a stop event);
    waits are ``first_wait_s * 2**(n-1)`` after the n-th failed call, at most ``max_wait_s``. ``retry_on(exc)``
    says whether an exception is worth another call (others raise at once); ``retry_on_result(value)`` whether a
    returned value is. ``before_sleep(exception or None, wait_s)`` runs before each wait (to log or count)."""
    def done(state: tenacity.RetryCallState) -> bool:
        return (attempts is not None and state.attempt_number >= attempts) or (until is not None and until())

    def pause(seconds: float) -> None:
        sleep(seconds)

    condition: tenacity.retry_base = tenacity.retry_never
    if retry_on is not None:
        condition = tenacity.retry_if_exception(retry_on)
    if retry_on_result is not None:
        condition = condition | tenacity.retry_if_result(retry_on_result)

    def announce(state: tenacity.RetryCallState) -> None:
        if before_sleep is not None and state.outcome is not None:
            before_sleep(state.outcome.exception() if state.outcome.failed else None, state.upcoming_sleep)

    return tenacity.Retrying(
        sleep=pause,
        stop=done,
        wait=tenacity.wait_exponential(multiplier=first_wait_s, exp_base=2, max=max_wait_s),
        retry=condition,
        before_sleep=announce,
        reraise=True,
        retry_error_callback=_last_result if retry_on_result is not None else None,
    )


def _last_result(state: tenacity.RetryCallState) -> Any:
    """When the attempts run out on a result worth a retry: that result (an exception re-raises)."""
    assert state.outcome is not None
    return state.outcome.result()
