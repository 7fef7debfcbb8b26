"""The one place every planner write passes: an API client that sends a write (POST, PUT, PATCH, DELETE) only
while this planner holds the leader Lease, with a timeout that ends before a successor may take over.

Scaling, annotating (the cap tick and the pod watch), Events and the admin budget's ConfigMap all go through
it, so a follower, or a leader past its renew deadline, cannot write even from a thread that has not noticed
(docs/operations.md, "High availability"). Reads and watches pass untouched: a follower keeps observing. The
Lease itself is written through another client (live/leader.py).
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit

import kubernetes.client

from powerplanner.kube.errors import NotLeader
from powerplanner.live.budget import AdminBudget, AdminChange
from powerplanner.live.budget_store import BudgetStore
from powerplanner.live.leader import Leadership

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def clamp_timeout(requested: Any, limit_s: float) -> float:
    """The client's ``_request_timeout`` (None, seconds, or (connect, read)) as one total no longer than
    ``limit_s``."""
    if requested is None:
        return limit_s
    if isinstance(requested, (int, float)):
        return min(float(requested), limit_s)
    return min(float(sum(requested)), limit_s)


class LeaderGatedApiClient(kubernetes.client.ApiClient):
    """:class:`kubernetes.client.ApiClient` whose writes ask ``leadership`` first, just before each attempt
    (retries included)."""

    def __init__(self, configuration: kubernetes.client.Configuration, leadership: Leadership) -> None:
        super().__init__(configuration)
        self._leadership = leadership
        self._idle = threading.Condition()
        self._in_flight = 0  # writes sent and not yet answered (the Lease is released only at 0)

    @classmethod
    def wrapping(cls, client: kubernetes.client.ApiClient, leadership: Leadership) -> LeaderGatedApiClient:
        """A gated client with ``client``'s configuration and headers (its User-Agent included)."""
        gated = cls(client.configuration, leadership)
        gated.default_headers = dict(client.default_headers)
        return gated

    def call_api(self, method: str, url: str, header_params: Any = None, body: Any = None, post_params: Any = None,
                 _request_timeout: Any = None) -> Any:
        if str(method).upper() not in WRITE_METHODS:
            return super().call_api(method, url, header_params, body, post_params, _request_timeout=_request_timeout)
        with self._idle:
            limit_s = self._leadership.write_timeout_s()
            if limit_s <= 0:
                raise NotLeader(f"{method} {urlsplit(url).path}: not sent, this planner does not hold the leader "
                                "Lease (another planner acts; docs/operations.md, \"High availability\")")
            self._in_flight += 1
        try:
            return super().call_api(method, url, header_params, body, post_params,
                                    _request_timeout=clamp_timeout(_request_timeout, limit_s))
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no write is in flight (at most ``timeout_s``); True when none is."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout=timeout_s)


class LeaderAdminBudget(AdminBudget):
    """The admin budget of a planner under leader election: ``PUT``/``DELETE /budget`` change it only on the
    leader. A follower refuses (503 and the reason) rather than cut in memory: the new leader reads the budget
    back from its ConfigMap when elected, so a cut kept only in a follower's memory would be lost."""

    def __init__(self, leadership: Leadership, store: BudgetStore | None = None,
                 initial_watts: float | None = None) -> None:
        super().__init__(store, initial_watts)
        self._leadership = leadership

    def change(self, watts: float | None) -> AdminChange:
        if not self._leadership.is_leader():
            return AdminChange(self.watts, applied=False, persisted=False,
                               error="not changed: this planner is a follower (it does not hold the leader Lease); "
                               "send it to the leader (the pod whose powerplanner_leader is 1)")
        return super().change(watts)
