"""AdminBudget with a store: a change that could lift the budget is in force only once stored; a cut is in
force at once and stored as soon as the store answers. Whatever the order of changes and store faults, the
value in force is never above the stored one (the one a restart reads back)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from powerplanner.live.budget import AdminBudget, CompositeBudget, StaticBudget
from powerplanner.live.budget_store import StoredBudget, format_watts, parse_watts
from powerplanner.live.kubernetes import KubernetesError

NOON = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class FakeStore:
    """In memory; ``down`` makes every write fail as an API outage would."""

    where = "ConfigMap test/powerplanner-budget"

    def __init__(self, watts: float | None = None) -> None:
        self.watts = watts
        self.down = False
        self.writes = 0

    def load(self) -> StoredBudget | None:
        return StoredBudget(self.watts, "")

    def save(self, watts: float | None, *, retry: bool = True) -> StoredBudget:
        if self.down:
            raise KubernetesError("server", "write ConfigMap test/powerplanner-budget: API server answered 503")
        self.writes += 1
        self.watts = watts
        return StoredBudget(watts, "")


def _high(watts: float | None) -> float:
    return math.inf if watts is None else watts


def test_a_raise_waits_for_the_store_and_a_cut_does_not() -> None:
    store = FakeStore(8000)
    admin = AdminBudget(store, 8000)
    store.down = True
    raised = admin.change(9000)
    assert (raised.applied, raised.persisted, raised.watts) == (False, False, 8000) and raised.error
    assert "not applied" in raised.error and admin.watts == 8000
    cleared = admin.change(None)
    assert not cleared.applied and admin.watts == 8000
    cut = admin.change(5000)
    assert (cut.applied, cut.persisted, cut.watts) == (True, False, 5000)
    assert cut.error and "lost if the planner restarts" in cut.error
    reading = admin.read(NOON)
    assert reading.watts == 5000 and reading.error and "not persisted" in reading.error
    assert not admin.persisted and store.watts == 8000
    store.down = False
    assert admin.read(NOON).error is None  # the next read (cap tick) stores the cut
    assert admin.persisted and store.watts == 5000
    ok = admin.change(7000)
    assert (ok.applied, ok.persisted, ok.error) == (True, True, None) and store.watts == 7000
    assert admin.change(None).persisted and store.watts is None and admin.watts is None


def test_without_a_store_changes_are_in_memory() -> None:
    admin = AdminBudget()
    change = admin.change(4000)
    assert (change.applied, change.persisted) == (True, False) and admin.watts == 4000
    assert CompositeBudget([StaticBudget(10000), admin]).current(NOON).watts == 4000


_ops = st.lists(st.one_of(
    st.tuples(st.just("put"), st.floats(min_value=1, max_value=20000)),
    st.tuples(st.just("delete"), st.none()),
    st.tuples(st.just("down"), st.booleans()),
    st.tuples(st.just("tick"), st.none()),
), max_size=30)


@given(st.one_of(st.none(), st.floats(min_value=1, max_value=20000)), _ops)
def test_in_force_never_above_what_a_restart_reads(initial: float | None, ops: list[tuple[str, object]]) -> None:
    store = FakeStore(initial)
    admin = AdminBudget(store, initial)
    for op, arg in ops:
        before = admin.watts
        if op == "down":
            store.down = bool(arg)
        elif op == "tick":
            reading = admin.read(NOON)
            if not store.down:
                assert admin.persisted and store.watts == admin.watts and reading.error is None
        else:
            wanted = arg if op == "put" else None
            assert wanted is None or isinstance(wanted, float)
            change = admin.change(wanted)
            if change.persisted:  # what the endpoint answers 200 for
                assert store.watts == wanted and admin.watts == wanted and change.applied
            elif change.applied:  # a cut, in force before it is stored
                assert admin.watts == wanted and _high(wanted) <= _high(before)
            else:  # a raise the store refused: nothing changed
                assert admin.watts == before and _high(wanted) > _high(before)
        assert _high(admin.watts) <= _high(store.watts)  # no raise in force that a restart would not read back
        assert not admin.persisted or admin.watts == store.watts


def test_stored_watts_round_trip_and_refuse_anything_else() -> None:
    for watts in (0.001, 1.5, 5000.0, 12345.678, 1e16, 16000):
        assert parse_watts(format_watts(watts)) == watts and "e" not in format_watts(watts)
    assert format_watts(5000.0) == "5000" and format_watts(None) == "none" and parse_watts(" none ") is None
    for raw in ("", "-5", "+5", "0", "1e3", "5_000", "\u0665", "nan", "inf", "5000W", None, 5000):
        try:
            parse_watts(raw)
        except ValueError:
            continue
        raise AssertionError(f"{raw!r} was accepted")


@given(st.floats(min_value=0, exclude_min=True, allow_infinity=False, allow_nan=False))
def test_every_positive_float_round_trips(watts: float) -> None:
    assert parse_watts(format_watts(watts)) == watts
