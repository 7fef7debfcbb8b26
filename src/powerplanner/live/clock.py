"""Time for the live loop, injected so tests run many ticks without sleeping.

``now_s`` is monotonic (tick spacing, the planner's adjustment interval); ``utc_now`` is wall time (budget
schedules). ``sleep_s`` returns early when ``stop`` is set, so SIGTERM is honoured within milliseconds.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now_s(self) -> float: ...

    def utc_now(self) -> datetime: ...

    def sleep_s(self, seconds: float, stop: threading.Event) -> None: ...


class RealClock:
    def now_s(self) -> float:
        return time.monotonic()

    def utc_now(self) -> datetime:
        return datetime.now(UTC)

    def sleep_s(self, seconds: float, stop: threading.Event) -> None:
        if seconds > 0:
            stop.wait(seconds)


class FakeClock:
    """Time moves only when someone sleeps or calls :meth:`advance`."""

    def __init__(self, start_s: float = 0.0, start_utc: datetime | None = None) -> None:
        self._now_s = start_s
        self._origin_s = start_s
        self._start_utc = start_utc or datetime(2026, 1, 1, tzinfo=UTC)
        self.sleeps: list[float] = []

    def now_s(self) -> float:
        return self._now_s

    def utc_now(self) -> datetime:
        return self._start_utc + timedelta(seconds=self._now_s - self._origin_s)

    def advance(self, seconds: float) -> None:
        self._now_s += max(0.0, seconds)

    def sleep_s(self, seconds: float, stop: threading.Event) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)
