"""The headline bench's searches, pure: the largest rate a policy serves at SLO, the cheapest knob that reaches it.

bench/headline.py measures two figures (docs/simulator.md, "Headline"): *capacity under a binding budget* (the
largest rate scale at which a policy keeps 90% SLO attainment) and *energy at equal SLO* (each policy's
over-provisioning knob at the cheapest value that reaches 90%). Both are one search: a pass/fail predicate that
holds on one side of a threshold, the threshold wanted to a relative tolerance. :class:`ThresholdSearch` is that
search as a frozen state (next probe, record the outcome), so the bench can step every policy's search in
lockstep and run each round's simulations in parallel; :func:`run_searches` does that with an injected evaluator.
Nothing here runs a simulation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, replace
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class ThresholdSearch:
    """Find the threshold of a monotone pass/fail predicate on ``[lo, hi]`` to ``rel_tol``, geometrically.

    ``passes_below``: the predicate passes at and below the threshold (capacity: a lower rate is easier; ours'
    target utilisation: a lower one over-provisions more), and the result is the largest passing value probed;
    otherwise it passes at and above it (a baseline's replica headroom) and the result is the smallest passing
    value. The search starts at ``start`` (default: the end nearer failing, the cheapest knob), steps by
    ``step`` toward the other side until the outcome flips or the range ends, then bisects geometrically until
    the passing and failing probes are within ``rel_tol`` of each other. The result is then within ``rel_tol``
    of the threshold, on the passing side; ``None`` when even the passing end of the range fails.
    """

    lo: float
    hi: float
    passes_below: bool = True
    rel_tol: float = 0.02
    start: float | None = None
    step: float = 2.0
    passing: float | None = None  # the passing probe nearest the threshold
    failing: float | None = None  # the failing probe nearest the threshold
    probes: tuple[tuple[float, bool], ...] = ()

    def __post_init__(self) -> None:
        if not (0 < self.lo <= self.hi and math.isfinite(self.hi)):
            raise ValueError(f"need 0 < lo <= hi < inf (lo={self.lo}, hi={self.hi})")
        if not self.rel_tol > 0 or not self.step > 1:
            raise ValueError("rel_tol must be > 0 and step > 1")
        if self.start is not None and not self.lo <= self.start <= self.hi:
            raise ValueError(f"start {self.start} outside [{self.lo}, {self.hi}]")

    @property
    def _pass_end(self) -> float:
        """The end of the range most likely to pass."""
        return self.lo if self.passes_below else self.hi

    @property
    def _fail_end(self) -> float:
        return self.hi if self.passes_below else self.lo

    def _toward_pass(self, x: float) -> float:
        y = x / self.step if self.passes_below else x * self.step
        return min(max(y, self.lo), self.hi)

    def _toward_fail(self, x: float) -> float:
        y = x * self.step if self.passes_below else x / self.step
        return min(max(y, self.lo), self.hi)

    def next_probe(self) -> float | None:
        """The value to try next; ``None`` when the search is done."""
        if not self.probes:
            return self.start if self.start is not None else self._fail_end
        if self.passing is None:
            assert self.failing is not None
            return None if self.failing == self._pass_end else self._toward_pass(self.failing)
        if self.failing is None:
            return None if self.passing == self._fail_end else self._toward_fail(self.passing)
        low, high = sorted((self.passing, self.failing))
        if high <= low * (1.0 + self.rel_tol):
            return None
        return math.sqrt(low * high)

    def record(self, x: float, passed: bool) -> ThresholdSearch:
        """The search after probing ``x``."""
        probes = (*self.probes, (float(x), bool(passed)))
        if passed:
            nearer = self.passing is None or (x > self.passing if self.passes_below else x < self.passing)
            return replace(self, probes=probes, passing=float(x) if nearer else self.passing)
        nearer = self.failing is None or (x < self.failing if self.passes_below else x > self.failing)
        return replace(self, probes=probes, failing=float(x) if nearer else self.failing)

    @property
    def done(self) -> bool:
        return self.next_probe() is None

    @property
    def result(self) -> float | None:
        """The passing value nearest the threshold once done (``None``: nothing in the range passes)."""
        return self.passing if self.done else None


def run_searches(
    searches: Mapping[K, ThresholdSearch],
    evaluate: Callable[[list[tuple[K, float]]], Mapping[K, bool]],
    max_rounds: int = 64,
) -> dict[K, ThresholdSearch]:
    """Step every search to the end in lockstep: each round, ``evaluate`` gets every unfinished search's next
    probe (one batch, so the caller can run them in parallel) and answers pass/fail per key."""
    state = dict(searches)
    for _ in range(max_rounds):
        batch: list[tuple[K, float]] = []
        for key, search in state.items():
            probe = search.next_probe()
            if probe is not None:
                batch.append((key, probe))
        if not batch:
            return state
        outcome = evaluate(batch)
        for key, probe in batch:
            state[key] = state[key].record(probe, outcome[key])
    raise RuntimeError(f"searches did not finish in {max_rounds} rounds")


def ratio(ours: float | None, other: float | None) -> float | None:
    """ours / other, ``None`` when either is missing or the other is zero (no ratio to a policy that cannot)."""
    if ours is None or other is None or other == 0:
        return None
    return ours / other
