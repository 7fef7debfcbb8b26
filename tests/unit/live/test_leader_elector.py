"""Two real :class:`LeaseElector` s against a model API server, under schedules hypothesis picks: who steps when,
how long each request takes before and after the server applies it, partitions, releases. Whatever the schedule,
no take-over is applied before the last moment a write the previous leader may have started can end, and two
electors never both say they may act (docs/operations.md, "High availability"). The model is sequential (a
request completes before the next one starts); tests/unit/live/test_leader.py covers a reader that sees a write
before its writer hears back. Checked to fail on an eager take-over, a late first sighting and a leader past its
deadline."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kubernetes.client.rest import ApiException

from powerplanner.live import leader
from powerplanner.live.clock import FakeClock
from powerplanner.live.leader import LeaderSettings, LeaseElector

NAMES = ("planner-a", "planner-b")


def _error(status: int) -> ApiException:
    return ApiException(status=status, reason={404: "Not Found", 409: "Conflict", 503: "Unavailable"}[status])


@dataclass
class ModelApiServer:
    """One Lease, optimistic concurrency on ``metadata.resourceVersion``, a shared clock. Each request takes
    ``before_s`` to reach the server and ``after_s`` to come back (the schedule sets them), or fails when its
    client is partitioned (before the server sees it)."""

    clock: FakeClock
    lease: dict[str, Any] | None = None
    version: int = 0
    partitioned: set[str] = field(default_factory=set)
    before_s: float = 0.0
    after_s: float = 0.0
    write_ends: dict[str, float] = field(default_factory=dict)  # latest end of a write each may have started
    electors: dict[str, LeaseElector] = field(default_factory=dict)
    takeovers: int = 0

    def client(self, name: str) -> ModelLeases:
        return ModelLeases(self, name)

    def apply(self, name: str, change: Any) -> Any:
        if name in self.partitioned:
            raise _error(503)
        self.clock.advance(self.before_s)
        result = change()
        self.clock.advance(self.after_s)
        return copy.deepcopy(result)

    def note_writers(self) -> None:
        """What the gate would allow right now: a write started now ends by now + write_timeout_s."""
        now = self.clock.now_s()
        for who, elector in self.electors.items():
            if elector.is_leader():
                self.write_ends[who] = max(self.write_ends.get(who, 0.0), now + elector.write_timeout_s())
        acting = [who for who, e in self.electors.items() if e.is_leader()]
        assert len(acting) <= 1, f"both act at {now}"

    def drained(self, name: str) -> bool:
        """The service waits for the writes in flight before it releases: none can end later than now."""
        self.write_ends[name] = min(self.write_ends.get(name, 0.0), self.clock.now_s())
        return True

    def _commit(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        previous = (self.lease or {}).get("spec", {}).get("holderIdentity")
        if spec.get("holderIdentity") == name and previous != name:  # a take-over (or a first acquisition)
            self.takeovers += 1
            now = self.clock.now_s()
            for other, end in self.write_ends.items():
                assert other == name or end <= now + 1e-9, f"{name} took over at {now}, {other} may write until {end}"
        self.version += 1
        base = self.lease or {"metadata": {"name": "lease", "namespace": "ns"}, "spec": {}}
        base["spec"] = {**base["spec"], **spec}
        base["metadata"]["resourceVersion"] = str(self.version)
        self.lease = base
        return base


@dataclass
class ModelLeases:
    """The three ``CoordinationV1Api`` calls the elector makes, for one client."""

    server: ModelApiServer
    name: str

    def read_namespaced_lease(self, name: str, namespace: str, **_: Any) -> Any:
        def read() -> Any:
            if self.server.lease is None:
                raise _error(404)
            return self.server.lease
        return self.server.apply(self.name, read)

    def create_namespaced_lease(self, namespace: str, body: dict[str, Any], **_: Any) -> Any:
        def create() -> Any:
            if self.server.lease is not None:
                raise _error(409)
            return self.server._commit(self.name, body["spec"])
        return self.server.apply(self.name, create)

    def patch_namespaced_lease(self, name: str, namespace: str, body: dict[str, Any], **_: Any) -> Any:
        def patch() -> Any:
            if self.server.lease is None:
                raise _error(404)
            if body["metadata"]["resourceVersion"] != self.server.lease["metadata"]["resourceVersion"]:
                raise _error(409)
            return self.server._commit(self.name, body["spec"])
        return self.server.apply(self.name, patch)


latencies = st.one_of(st.just(0.0), st.floats(0, 3))
# Round waits near the timings (2, 10, 15 s) as well as any: the edges are where an overlap would hide.
waits = st.one_of(st.sampled_from([1.0, 2.0, 5.0, 8.0, 10.0, 13.0, 15.0]), st.floats(0, 20))
steps = st.tuples(st.just("step"), st.sampled_from(NAMES), latencies, latencies)
pauses = st.tuples(st.just("wait"), waits)
# Mostly steps and waits (the timing is what is under test); partitions, heals and releases now and then.
actions = st.one_of(
    steps, pauses, steps, pauses, steps, pauses,
    st.tuples(st.sampled_from(["partition", "heal", "release"]), st.sampled_from(NAMES)),
)


@settings(max_examples=500, deadline=None)
@given(st.lists(actions, min_size=1, max_size=60))
def test_no_schedule_lets_two_electors_overlap(schedule: list[tuple[Any, ...]]) -> None:
    clock = FakeClock()
    server = ModelApiServer(clock)
    for name in NAMES:
        server.electors[name] = LeaseElector(None, LeaderSettings("ns", "lease", name, 15.0, 10.0, 2.0), clock,
                                             leases=server.client(name))
    for action in schedule:
        server.note_writers()
        kind = action[0]
        if kind == "step":
            server.before_s, server.after_s = action[2], action[3]
            server.electors[action[1]].step()
        elif kind == "wait":
            clock.advance(action[1])
        elif kind == "partition":
            server.partitioned.add(action[1])
        elif kind == "heal":
            server.partitioned.discard(action[1])
        else:  # SIGTERM: it stops acting, its writes in flight end (drained), then it gives the Lease up
            server.electors[action[1]].release(drained=lambda who=action[1]: server.drained(who))
        server.note_writers()


def test_the_model_finds_an_overlap_when_writes_outlast_the_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above can fail: a leader whose writes may end after its lease would overlap its successor."""
    monkeypatch.setattr(leader, "write_timeout_s", lambda renewed, now, s: renewed + s.lease_duration_s + 5 - now)
    clock = FakeClock()
    server = ModelApiServer(clock)
    for name in NAMES:
        server.electors[name] = LeaseElector(None, LeaderSettings("ns", "lease", name, 15.0, 10.0, 2.0), clock,
                                             leases=server.client(name))
    server.electors["planner-a"].step()
    server.electors["planner-b"].step()
    server.note_writers()
    server.partitioned.add("planner-a")
    clock.advance(15.0)
    with pytest.raises(AssertionError, match="planner-b took over"):
        server.electors["planner-b"].step()
