"""Leader election on a ``coordination.k8s.io/v1`` Lease: of several planner pods, only the one holding the Lease
acts (scales, annotates, writes the budget state); the others keep observing. docs/operations.md ("High
availability") has the timing argument; in short:

- A candidate takes the Lease over only once the record it read (holder and ``resourceVersion``) has stayed the
  same for ``lease_duration_s`` on its OWN monotonic clock, counted from when it first read it (as client-go
  does: no two clocks are compared). Every write is conditional on the ``resourceVersion`` read, so of two
  candidates at most one wins.
- The leader counts from the moment it SENT its last successful renewal; it may start a write only until
  ``renew_deadline_s`` after that, and every write's timeout ends by ``lease_duration_s`` after it. A
  successor's take-over happens at least ``lease_duration_s`` after that renewal was committed, so the two
  never overlap; the gap ``lease_duration_s - renew_deadline_s`` (5 s by default) is the margin for the
  writes in flight.

The decision is pure (:func:`decide`, :func:`may_act`); :class:`LeaseElector` does the I/O with an injected
clock. Why not ``kubernetes.leaderelection``: it reads the wall clock (``time.time()``), blocks its caller, runs
the leader's work on a thread of its own, and offers no "may I still write now?" a writer can ask before each
request, which is what keeps two planners from overlapping (tests/unit/live/test_leader.py,
tests/integration/live/test_leader_election.py).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

import kubernetes.client

from powerplanner.kube.errors import Conflict, KubernetesError, NotFound
from powerplanner.live.clock import Clock
from powerplanner.live.kube_client import CLIENT_FAILURES, error_from

log = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"


@dataclass(frozen=True)
class LeaderSettings:
    """Where the Lease is and how long it holds (Kubernetes' defaults: 15 s, 10 s, 2 s)."""

    namespace: str
    lease_name: str
    identity: str
    lease_duration_s: float = 15.0
    renew_deadline_s: float = 10.0
    retry_period_s: float = 2.0


@dataclass(frozen=True)
class LeaseRecord:
    """What a Lease says. ``holder`` is "" once released."""

    holder: str
    resource_version: str
    lease_duration_s: float | None = None
    transitions: int = 0
    acquire_time: str | None = None


@dataclass(frozen=True)
class Observed:
    """The record this candidate last read, and when (its own monotonic clock) it first saw that version."""

    record: LeaseRecord | None
    since_s: float


class Verdict(StrEnum):
    CREATE = "create"  # no Lease: create it, holding it
    RENEW = "renew"  # this candidate holds it
    TAKE_OVER = "take_over"  # released, or unchanged for a whole lease duration: write it, conditionally
    WAIT = "wait"  # someone else holds it


def decide(observed: Observed, identity: str, now_s: float, default_duration_s: float) -> Verdict:
    """What a candidate may try now, given the record it read. Pure: the clock is ``now_s``."""
    record = observed.record
    if record is None:
        return Verdict.CREATE
    if record.holder == identity:
        return Verdict.RENEW
    if not record.holder:
        return Verdict.TAKE_OVER
    duration = record.lease_duration_s if record.lease_duration_s is not None else default_duration_s
    # The holder's duration, but never less than ours: a short value in the record must not shorten the wait.
    if now_s - observed.since_s >= max(duration, default_duration_s):
        return Verdict.TAKE_OVER
    return Verdict.WAIT


def may_act(renewed_at_s: float | None, now_s: float, renew_deadline_s: float) -> bool:
    """Whether a leader whose last successful renewal was SENT at ``renewed_at_s`` may start a write now."""
    return renewed_at_s is not None and now_s < renewed_at_s + renew_deadline_s


def write_timeout_s(renewed_at_s: float | None, now_s: float, settings: LeaderSettings) -> float:
    """The longest a write started now may take: it must end before a successor may take over (<= 0: none)."""
    if not may_act(renewed_at_s, now_s, settings.renew_deadline_s):
        return 0.0
    assert renewed_at_s is not None
    return renewed_at_s + settings.lease_duration_s - now_s


class Leadership(Protocol):
    """What writers and the loop ask: may I act now, for how long may a write take, and which term is this
    (it changes each time this planner wins the Lease after having lost it: another may have acted meanwhile)."""

    @property
    def term(self) -> int: ...

    def is_leader(self) -> bool: ...

    def write_timeout_s(self) -> float: ...


def _micro_time(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record_of(lease: Any) -> LeaseRecord:
    """A :class:`LeaseRecord` from the client's ``V1Lease`` (or the same shape as a dict)."""
    if isinstance(lease, dict):
        meta, spec = lease.get("metadata") or {}, lease.get("spec") or {}
        rv, holder = meta.get("resourceVersion"), spec.get("holderIdentity")
        duration, transitions = spec.get("leaseDurationSeconds"), spec.get("leaseTransitions")
        acquired = spec.get("acquireTime")
    else:
        meta, spec = lease.metadata, lease.spec
        rv = getattr(meta, "resource_version", None)
        holder = getattr(spec, "holder_identity", None) if spec is not None else None
        duration = getattr(spec, "lease_duration_seconds", None) if spec is not None else None
        transitions = getattr(spec, "lease_transitions", None) if spec is not None else None
        acquired = getattr(spec, "acquire_time", None) if spec is not None else None
    if isinstance(acquired, datetime):
        acquired = _micro_time(acquired)
    return LeaseRecord(str(holder or ""), str(rv or ""), float(duration) if duration is not None else None,
                       int(transitions or 0), str(acquired) if acquired else None)


class LeaseElector:
    """Acquires, renews and releases the Lease; :meth:`is_leader` is what every writer asks before a write.

    :meth:`step` is one attempt (read, decide, write); :meth:`run` repeats it every ``retry_period_s`` on a
    thread and releases the Lease on stop. ``on_change(leader)`` is called (from :meth:`step`) when this
    candidate wins or loses the Lease as far as it knows; leadership also ends by itself once the renew
    deadline passes without a renewal, whatever the thread is doing."""

    def __init__(self, api_client: kubernetes.client.ApiClient | None, settings: LeaderSettings, clock: Clock,
                 on_change: Callable[[bool], None] | None = None, *, leases: Any = None) -> None:
        """``leases``: a stand-in for ``CoordinationV1Api`` (the unit tests' model API server)."""
        self.settings = settings
        self._api = leases if leases is not None else kubernetes.client.CoordinationV1Api(api_client)
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._renewed_at_s: float | None = None  # when the last successful write of ours was sent
        self._observed = Observed(None, clock.now_s())
        self._read_once = False
        self._reported = False  # what on_change last said
        self._term = 0
        self._last_error: str | None = None

    # -- what writers ask ---------------------------------------------------------------------------
    def is_leader(self) -> bool:
        with self._lock:
            renewed = self._renewed_at_s
        return may_act(renewed, self._clock.now_s(), self.settings.renew_deadline_s)

    def write_timeout_s(self) -> float:
        with self._lock:
            renewed = self._renewed_at_s
        return write_timeout_s(renewed, self._clock.now_s(), self.settings)

    @property
    def term(self) -> int:
        return self._term

    @property
    def holder(self) -> str | None:
        """The holder as last read ("" when released, None before the first read)."""
        record = self._observed.record
        return record.holder if record is not None else None

    # -- one attempt --------------------------------------------------------------------------------
    def step(self) -> bool:
        """Read the Lease, and create, renew or take it over when :func:`decide` says so. Returns
        :meth:`is_leader` after it. Failures are logged once per episode; the deadline does the rest."""
        s = self.settings
        try:
            record = self._read()
        except KubernetesError as exc:
            self._fault(exc)
            return self._report()
        now = self._clock.now_s()
        if not self._read_once or record != self._observed.record:
            self._observed = Observed(record, now)  # first seen now: the wait for an expiry starts here
            self._read_once = True
        verdict = decide(self._observed, s.identity, now, s.lease_duration_s)
        if verdict is Verdict.WAIT:
            with self._lock:
                self._renewed_at_s = None  # someone else holds it: stop at once
            return self._report()
        sent = self._clock.now_s()
        try:
            written = self._write(verdict, record, sent)
        except Conflict as exc:  # another candidate wrote first: it holds the Lease now
            log.info("leader election: lost the race for Lease %s/%s (%s)", s.namespace, s.lease_name, exc.message)
            with self._lock:
                self._renewed_at_s = None
            return self._report()
        except KubernetesError as exc:
            self._fault(exc)
            return self._report()
        self._last_error = None
        with self._lock:
            if verdict is not Verdict.RENEW or not self._reported:
                self._term += 1  # won the Lease, not kept it: another planner may have acted since our last term
            self._renewed_at_s = sent
        self._observed = Observed(written, self._clock.now_s())
        return self._report()

    def _read(self) -> LeaseRecord | None:
        s = self.settings
        try:
            lease = self._api.read_namespaced_lease(s.lease_name, s.namespace, _request_timeout=s.retry_period_s)
        except CLIENT_FAILURES as exc:
            err = error_from(exc, f"read Lease {s.namespace}/{s.lease_name}")
            if isinstance(err, NotFound):
                return None
            raise err from None
        return record_of(lease)

    def _write(self, verdict: Verdict, record: LeaseRecord | None, sent_s: float) -> LeaseRecord:
        s = self.settings
        now = _micro_time(self._clock.utc_now())
        spec: dict[str, Any] = {"holderIdentity": s.identity, "leaseDurationSeconds": math.ceil(s.lease_duration_s),
                                "renewTime": now}
        if verdict is not Verdict.RENEW or record is None or record.acquire_time is None:
            spec["acquireTime"] = now
        if record is not None and verdict is Verdict.TAKE_OVER:
            spec["leaseTransitions"] = record.transitions + 1
        timeout = max(0.1, s.renew_deadline_s - (self._clock.now_s() - sent_s))  # a late renewal is no renewal
        what = f"{verdict.value} Lease {s.namespace}/{s.lease_name}"
        try:
            if record is None:
                spec["leaseTransitions"] = 0
                body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                        "metadata": {"name": s.lease_name, "namespace": s.namespace}, "spec": spec}
                out = self._api.create_namespaced_lease(s.namespace, body,  # type: ignore[arg-type]
                                                        _request_timeout=timeout)
            else:
                body = {"metadata": {"resourceVersion": record.resource_version}, "spec": spec}
                out = self._api.patch_namespaced_lease(s.lease_name, s.namespace, body, _request_timeout=timeout,
                                                       _content_type=MERGE_PATCH)
        except CLIENT_FAILURES as exc:
            raise error_from(exc, what) from None
        if verdict is not Verdict.RENEW:
            log.warning("leader election: %s now holds Lease %s/%s (%s)", s.identity, s.namespace, s.lease_name,
                        verdict.value)
        return record_of(out)

    def release(self, drained: Callable[[], bool] | None = None) -> None:
        """Give the Lease up (on SIGTERM), so a successor need not wait a lease duration. Stops acting first;
        ``drained()`` then says whether every write already sent has ended: if not, the Lease is kept and the
        successor waits it out (those writes' timeouts end before it may take over)."""
        s = self.settings
        with self._lock:
            held, self._renewed_at_s = self._renewed_at_s is not None, None
        self._report()
        record = self._observed.record
        if not held or record is None or record.holder != s.identity:
            return
        if drained is not None and not drained():
            log.warning("leader election: writes still in flight; keeping Lease %s/%s until it expires",
                        s.namespace, s.lease_name)
            return
        released = {"holderIdentity": "", "leaseDurationSeconds": 1, "renewTime": _micro_time(self._clock.utc_now())}
        body = {"metadata": {"resourceVersion": record.resource_version}, "spec": released}
        try:
            self._api.patch_namespaced_lease(s.lease_name, s.namespace, body, _request_timeout=s.retry_period_s,
                                             _content_type=MERGE_PATCH)
        except CLIENT_FAILURES as exc:  # the successor waits a lease duration instead
            log.warning("leader election: %s", error_from(exc, f"release Lease {s.namespace}/{s.lease_name}").message)
            return
        log.warning("leader election: %s released Lease %s/%s", s.identity, s.namespace, s.lease_name)

    def run(self, stop: threading.Event) -> None:
        """:meth:`step` every ``retry_period_s`` until ``stop`` (the caller releases the Lease after)."""
        while not stop.is_set():
            try:
                self.step()
            except Exception:  # a bug must not leave a leader acting past its deadline: the deadline still holds
                log.exception("leader election step failed")
            self._clock.sleep_s(self.settings.retry_period_s, stop)

    def _fault(self, exc: KubernetesError) -> None:
        if exc.message != self._last_error:
            log.warning("leader election: %s; a leader stops acting %g s after its last renewal",
                        exc.message, self.settings.renew_deadline_s)
        self._last_error = exc.message

    def _report(self) -> bool:
        leader = self.is_leader()
        if leader != self._reported:
            self._reported = leader
            if not leader:
                log.warning("leader election: %s is no longer the leader; observing only", self.settings.identity)
            if self._on_change is not None:
                self._on_change(leader)
        return leader
