"""Where the admin budget is kept across planner restarts: a ConfigMap the planner owns.

A budget cut made through the admin endpoint (``PUT /budget``) must survive a restart of the planner (a
rollout, an eviction, a crash), or the restart silently lifts the budget back to the configured value. The
planner writes the admin value to the ConfigMap ``budget.admin.state_configmap`` in ``kubernetes.namespace``
before the endpoint says it took effect, and reads it back at start-up (docs/operations.md, "The admin
endpoint"). Data keys: ``budget_watts`` (a plain decimal string of watts, or ``none`` after ``DELETE /budget``)
and ``updated_at`` (RFC 3339, UTC).

The planner creates the object on the first write (RBAC: configmaps get, create, patch in that namespace).
Only an absent object (404) means "no admin budget was ever set"; any other failure to read it is an error the
caller must not paper over, because the stored value may be a cut. Failures are
:class:`~powerplanner.live.kubernetes.KubernetesError`; kind ``shape`` when the object holds no budget.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol, TypeVar

import kubernetes.client
import urllib3.exceptions
from kubernetes.client.rest import ApiException

from powerplanner.live.kubernetes import KubernetesError

log = logging.getLogger(__name__)

WATTS_KEY = "budget_watts"
UPDATED_KEY = "updated_at"
CLEARED = "none"  # budget_watts after DELETE /budget: no admin budget
MERGE_PATCH = "application/merge-patch+json"
_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")  # ASCII digits only: no sign, exponent, '_' or other scripts

T = TypeVar("T")


@dataclass(frozen=True)
class StoredBudget:
    """What the store holds: ``watts`` None means cleared (``DELETE /budget``)."""

    watts: float | None
    updated_at: str


class BudgetStore(Protocol):
    """Keeps the admin budget. ``load`` returns None when nothing was ever stored."""

    where: str

    def load(self) -> StoredBudget | None: ...

    def save(self, watts: float | None, *, retry: bool = True) -> StoredBudget:
        """Store ``watts``; ``retry=False``: one attempt (the cap tick's retry of an unsaved cut must not stall
        the tick)."""
        ...


def format_watts(watts: float | None) -> str:
    """``budget_watts`` as stored: a plain decimal (no exponent), ``none`` for cleared. Round-trips exactly."""
    if watts is None:
        return CLEARED
    if not math.isfinite(watts) or watts <= 0:
        raise ValueError(f"not a budget: {watts!r}")
    return format(Decimal(repr(float(watts))).normalize(), "f")


def parse_watts(raw: object) -> float | None:
    """The inverse of :func:`format_watts`; :class:`ValueError` with the reason for anything else."""
    if not isinstance(raw, str):
        raise ValueError(f"is {type(raw).__name__}, not a string")
    text = raw.strip()
    if text == CLEARED:
        return None
    if len(text) > 400 or not _DECIMAL.fullmatch(text):  # 400: any positive double written out in full
        raise ValueError(f"{raw[:40]!r} is not a plain positive decimal number of watts (or {CLEARED!r})")
    watts = float(text)
    if not math.isfinite(watts) or watts <= 0:
        raise ValueError(f"{raw[:40]!r} is not a positive number of watts")
    return watts


def rfc3339(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ConfigMapBudgetStore:
    """:class:`BudgetStore` in a ConfigMap, through the official client. Calls retry 5xx, 429, timeouts and
    connection errors ``retries`` times with backoff; 4xx other than 404 fail at once."""

    def __init__(
        self,
        api_client: kubernetes.client.ApiClient,
        namespace: str,
        name: str,
        now_utc: Callable[[], datetime],
        *,
        timeout_s: float = 5.0,
        retries: int = 2,
        backoff_s: float = 0.2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._core = kubernetes.client.CoreV1Api(api_client)
        self.namespace = namespace
        self.name = name
        self.where = f"ConfigMap {namespace}/{name}"
        self._now_utc = now_utc
        self._timeout_s = timeout_s
        self._retries = retries
        self._backoff_s = backoff_s
        self._sleep = sleep

    def _call(self, what: str, fn: Callable[[], T], retry: bool = True) -> T:
        last: KubernetesError | None = None
        for attempt in range(self._retries + 1 if retry else 1):
            if attempt:
                self._sleep(self._backoff_s * (2 ** (attempt - 1)))
            try:
                return fn()
            except ApiException as exc:
                status = int(exc.status or 0)
                if status >= 500 or status == 429:
                    last = KubernetesError("server", f"{what} {self.where}: API server answered {status} {exc.reason}")
                    continue
                kind = {404: "not_found", 403: "forbidden", 401: "forbidden", 409: "conflict"}.get(status, "invalid")
                raise KubernetesError(kind, f"{what} {self.where}: HTTP {status} {exc.reason}") from None
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                reason = getattr(exc, "reason", None)
                timed_out = isinstance(exc, urllib3.exceptions.TimeoutError) or isinstance(
                    reason, urllib3.exceptions.TimeoutError)
                kind = "timeout" if timed_out else "unreachable"
                last = KubernetesError(kind, f"{what} {self.where}: {kind} ({type(reason or exc).__name__})")
            log.debug("%s, retrying", last.message)
        assert last is not None
        raise last

    def load(self) -> StoredBudget | None:
        try:
            obj = self._call("read", lambda: self._core.read_namespaced_config_map(
                self.name, self.namespace, _request_timeout=self._timeout_s))
        except KubernetesError as exc:
            if exc.kind == "not_found":
                return None
            raise
        data: dict[str, Any] = dict(getattr(obj, "data", None) or {})
        if WATTS_KEY not in data:
            raise KubernetesError("shape", f"{self.where} has no data.{WATTS_KEY}")
        try:
            watts = parse_watts(data[WATTS_KEY])
        except ValueError as exc:
            raise KubernetesError("shape", f"{self.where} data.{WATTS_KEY}: {exc}") from None
        return StoredBudget(watts, str(data.get(UPDATED_KEY) or ""))

    def save(self, watts: float | None, *, retry: bool = True) -> StoredBudget:
        stored = StoredBudget(watts, rfc3339(self._now_utc()))
        data = {WATTS_KEY: format_watts(watts), UPDATED_KEY: stored.updated_at}
        patch = {"data": data}
        try:
            self._patch(patch, retry)
        except KubernetesError as exc:
            if exc.kind != "not_found":
                raise
            try:
                self._call("create", lambda: self._core.create_namespaced_config_map(
                    self.namespace, self._new_object(data),  # type: ignore[arg-type]
                    _request_timeout=self._timeout_s), retry)
            except KubernetesError as again:
                if again.kind != "conflict":  # created meanwhile: patch that one
                    raise
                self._patch(patch, retry)
        return stored

    def _patch(self, body: dict[str, Any], retry: bool) -> None:
        self._call("write", lambda: self._core.patch_namespaced_config_map(
            self.name, self.namespace, body, _request_timeout=self._timeout_s,
            _content_type=MERGE_PATCH), retry)

    def _new_object(self, data: dict[str, str]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": {"app.kubernetes.io/managed-by": "powerplanner", "app.kubernetes.io/component": "planner"},
                "annotations": {"powerplanner.dev/purpose": "budget set through the planner's admin endpoint "
                                "(PUT /budget), read back at start-up; DELETE /budget clears it."},
            },
            "data": data,
        }
