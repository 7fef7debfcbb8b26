"""Where the power budget comes from. Every active source is read each cap tick; the lowest wins, so any
one of them (a facility signal, an operator at the admin endpoint, the schedule) can only make the
planner more conservative than the configured value, never less.

Sources: the config value (optionally hot-reloaded from the config file), the value set at the HTTP admin
endpoint (served by :mod:`powerplanner.live.admin`, kept across restarts by
:mod:`powerplanner.live.budget_store`), a PromQL query, and a daily UTC schedule. A source that cannot
answer (file broken, query failed or empty) is inactive for that tick and its error is reported; the config
value is always there as a floor of safety (it is never dropped).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from powerplanner.budget_schedule import ScheduleEntry, time_zone
from powerplanner.config import load_config
from powerplanner.errors import ConfigError
from powerplanner.kube.errors import KubernetesError
from powerplanner.live.budget_store import BudgetStore
from powerplanner.live.prometheus import PrometheusClient, PrometheusError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BudgetReading:
    """One source's answer: ``watts`` None means the source is inactive now; ``error`` says why, if broken."""

    source: str
    watts: float | None
    error: str | None = None


@dataclass(frozen=True)
class Budget:
    """The budget in force: the lowest active reading, and all readings for /metrics and logs."""

    watts: float
    source: str
    readings: tuple[BudgetReading, ...]

    @property
    def errors(self) -> tuple[BudgetReading, ...]:
        return tuple(r for r in self.readings if r.error)


class BudgetSource(Protocol):
    """One budget signal. ``now_utc`` is the injected clock's wall time (for schedules)."""

    name: str

    def read(self, now_utc: datetime) -> BudgetReading: ...


class StaticBudget:
    name = "config"

    def __init__(self, watts: float) -> None:
        self.watts = watts

    def read(self, now_utc: datetime) -> BudgetReading:
        return BudgetReading(self.name, self.watts)


class ConfigFileBudget:
    """``budget.watts`` re-read from the config file when it changes (mtime or size). A broken file keeps
    the last good value and reports the error: a typo must not lift the budget."""

    name = "config"

    def __init__(self, path: Path, initial_watts: float) -> None:
        self.path = path
        self.watts = initial_watts
        self._stamp = self._file_stamp()
        self._error: str | None = None

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def read(self, now_utc: datetime) -> BudgetReading:
        stamp = self._file_stamp()
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self.watts = load_config(self.path).budget.watts
                self._error = None
                log.info("config reloaded: budget.watts = %g W", self.watts)
            except ConfigError as exc:
                self._error = f"config reload failed, keeping {self.watts:g} W: {exc.lines[0]}"
                log.warning("%s", self._error)
        return BudgetReading(self.name, self.watts, self._error)


@dataclass(frozen=True)
class AdminChange:
    """How a ``PUT``/``DELETE /budget`` ended. ``applied``: the requested value is in force now; ``persisted``:
    it is also in the store, so it survives a restart. ``watts`` is the admin value in force afterwards."""

    watts: float | None
    applied: bool
    persisted: bool
    error: str | None = None


class AdminBudget:
    """The value an operator set through ``PUT /budget`` (None until set; ``DELETE /budget`` clears it).

    With a store (docs/operations.md, "The admin endpoint"), a change that could lift the budget (a higher
    value, or clearing it) is written first and applied only once the write succeeded; a cut is applied at
    once (lowering is always safe) and then written. A cut whose write failed stays in force in memory, is
    reported on every read as not persisted, and the write is retried once per read (each cap tick) until it
    succeeds or the operator changes the value again.
    """

    name = "admin"

    def __init__(self, store: BudgetStore | None = None, initial_watts: float | None = None) -> None:
        self._store = store
        self._write = threading.Lock()  # one store write at a time, in the order changes are made
        self._lock = threading.Lock()  # the value (never held across a store call)
        self._watts: float | None = initial_watts
        self._unsaved = False  # in force in memory but not in the store (a cut whose write failed)
        self._store_error: str | None = None

    def set(self, watts: float | None) -> None:
        """Set the value in memory only (no store)."""
        with self._lock:
            self._watts = watts

    @property
    def watts(self) -> float | None:
        with self._lock:
            return self._watts

    @property
    def persisted(self) -> bool:
        """False while the value in force is not in the store (or there is no store)."""
        with self._lock:
            return self._store is not None and not self._unsaved

    def change(self, watts: float | None) -> AdminChange:
        """Make ``watts`` (None: clear) the admin value, durably when there is a store."""
        with self._write:
            with self._lock:
                current = self._watts
                cut = current is None if watts is None else (current is None or watts <= current)
                if cut:
                    self._watts = watts
                    self._unsaved = True
            if self._store is None:
                with self._lock:
                    self._watts = watts
                return AdminChange(watts, applied=True, persisted=False)
            try:
                self._store.save(watts)
            except KubernetesError as exc:
                error = (f"not persisted to {self._store.where} ({exc.message}): "
                         + ("applied in memory only, lost if the planner restarts" if cut else "not applied"))
                with self._lock:
                    self._store_error = error
                    return AdminChange(self._watts, applied=cut, persisted=False, error=error)
            with self._lock:
                self._watts = watts
                self._unsaved = False
                self._store_error = None
            return AdminChange(watts, applied=True, persisted=True)

    def _retry_save(self) -> None:
        """One more attempt at writing an unsaved cut; skipped while a change is being written."""
        if self._store is None or not self._write.acquire(blocking=False):
            return
        try:
            with self._lock:
                if not self._unsaved:
                    return
                watts = self._watts
            try:
                self._store.save(watts, retry=False)
            except KubernetesError as exc:
                with self._lock:
                    self._store_error = (f"{_show(watts)} in force but not persisted to {self._store.where} "
                                         f"({exc.message}); a restart would lose it; retrying every cap tick")
                return
            with self._lock:
                if self._watts == watts:
                    self._unsaved = False
                    self._store_error = None
            log.warning("admin: budget %s now persisted to %s", _show(watts), self._store.where)
        finally:
            self._write.release()

    def read(self, now_utc: datetime) -> BudgetReading:
        self._retry_save()
        with self._lock:
            return BudgetReading(self.name, self._watts, self._store_error if self._unsaved else None)


def _show(watts: float | None) -> str:
    return "no admin budget" if watts is None else f"admin budget {watts:g} W"


class PromQLBudget:
    """A scalar (or one-element vector) in watts from Prometheus, e.g. a facility or price signal."""

    name = "promql"

    def __init__(self, client: PrometheusClient, query: str) -> None:
        self._client = client
        self.query = query

    def read(self, now_utc: datetime) -> BudgetReading:
        try:
            samples = self._client.query(self.query)
        except PrometheusError as exc:
            return BudgetReading(self.name, None, f"budget.promql failed ({exc.kind}): {exc.line}")
        values = [s.value for s in samples if s.value is not None]
        if len(samples) != 1 or not values or values[0] <= 0:
            return BudgetReading(self.name, None, f"budget.promql returned {len(samples)} sample(s), need one "
                                 "positive number; ignoring it")
        return BudgetReading(self.name, values[0])


class ScheduleBudget:
    """The schedule (src/powerplanner/budget_schedule.py): each entry's latest start at or before now, in the
    schedule's time zone; the entry that started last applies (a tie: the lower budget). Before the first start
    of the day the previous day's last entry still applies, as its start is the latest.

    Daylight saving time as croniter follows it: a start in the skipped hour (02:30 on a spring-forward night)
    happens when the clock jumps (03:00); a start in the repeated hour counts on both passes; a daily 08:00 stays
    08:00 local, one hour earlier or later in UTC (tests/unit/live/test_budget_schedule.py)."""

    name = "schedule"

    def __init__(self, entries: Sequence[ScheduleEntry], timezone: str = "UTC") -> None:
        self._zone = time_zone(timezone)
        self.entries = tuple((entry.cron_expression(), entry.watts) for entry in entries)

    def watts_at(self, now_utc: datetime) -> float | None:
        if not self.entries:
            return None
        from croniter import CroniterError, croniter  # the planner's only user: not loaded without a schedule

        # croniter's get_prev is strictly before its base: from the next minute, a start at this minute counts.
        base = (now_utc.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)).astimezone(self._zone)
        starts: list[tuple[datetime, float]] = []
        for expression, watts in self.entries:
            try:
                starts.append((croniter(expression, base).get_prev(datetime), watts))
            except CroniterError:  # checked at load; an entry that cannot start is never active
                continue
        if not starts:
            return None
        latest = max(start for start, _ in starts)
        return min(watts for start, watts in starts if start == latest)

    def read(self, now_utc: datetime) -> BudgetReading:
        return BudgetReading(self.name, self.watts_at(now_utc))


class CompositeBudget:
    """All sources; the lowest active reading wins. The first source is the configured value."""

    def __init__(self, sources: Sequence[BudgetSource]) -> None:
        if not sources:
            raise ValueError("need at least one budget source")
        self.sources = tuple(sources)

    def current(self, now_utc: datetime) -> Budget:
        readings = tuple(src.read(now_utc) for src in self.sources)
        active = [r for r in readings if r.watts is not None and math.isfinite(r.watts) and r.watts > 0]
        if not active:  # unreachable with a config source, but never return "no budget"
            raise RuntimeError("no active budget source")
        best = min(active, key=lambda r: float(r.watts or 0.0))
        return Budget(watts=float(best.watts or 0.0), source=best.source, readings=readings)
