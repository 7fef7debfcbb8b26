"""Load, latency and power from Prometheus (HTTP API, instant queries, through httpx).

Windowed averages are computed as Dynamo's SLA planner does (ai-dynamo/dynamo
``components/src/dynamo/planner/utils/prometheus.py``: ``increase(X_sum[W]) / increase(X_count[W])``),
summed over every frontend series that matches the ``model`` / ``dynamo_namespace`` labels, so the
average is request-weighted across frontends. The request rate is ``sum(increase(requests_total[W])) / W``.

"No data" is explicit: an empty vector, NaN (an idle window's averages: 0/0), infinities or negative values
become ``None``, never NaN. Only a rate of 0 (the requests counter present, no increase over the window) says
"idle"; a ``None`` rate (absent series, NaN) is missing data and the planner holds (docs/planner.md, "Missing
data"). A failing Prometheus (down, slow, 5xx, garbage) gives ``source_ok=False`` with the error named; the
loop keeps going and the planner holds.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import httpx

from powerplanner.config import PrometheusConfig
from powerplanner.errors import EndpointError
from powerplanner.live.feedback import FeedbackDiagnosis, diagnose_agent_series, diagnosis_query
from powerplanner.live.prometheus_access import PrometheusAccess
from powerplanner.live.prometheus_error import RETRIED, PrometheusError, PrometheusErrorKind
from powerplanner.live.promql import (
    AGENT_POWER,
    DCGM_POWER,
    DYNAMO_FRONTEND,
    VLLM_FRONTEND,
    VLLM_WORKER,
    PowerMetricNames,
    frontend_queries,
    holders_query,
    per_pod_query,
    worker_queries,
)
from powerplanner.model.roles import ROLES, Role
from powerplanner.retry import retrying

_T = TypeVar("_T")


@dataclass(frozen=True)
class Sample:
    """One element of an instant vector. ``value`` is None for NaN/inf (Prometheus' way of saying 0/0)."""

    labels: Mapping[str, str]
    value: float | None


def _finite(raw: Any) -> float | None:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


class PrometheusClient:
    """Instant queries with a timeout, retries with exponential backoff (transport errors, 5xx, 429) and a
    strict parse of the answer. ``sleep`` is injected so tests do not wait for backoffs; ``access`` carries the
    credentials, TLS and extra headers (live/prometheus_access.py)."""

    def __init__(
        self,
        url: str,
        timeout_s: float = 2.0,
        retries: int = 2,
        backoff_s: float = 0.2,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
        access: PrometheusAccess | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.retries = retries
        self.backoff_s = backoff_s
        self._sleep = sleep
        self._access = access or PrometheusAccess()
        self._http = httpx.Client(base_url=self.url, timeout=httpx.Timeout(timeout_s), transport=transport,
                                  auth=self._access.auth, verify=self._access.verify, headers=self._access.headers)

    @classmethod
    def from_config(cls, cfg: PrometheusConfig, sleep: Callable[[float], None] = time.sleep, *,
                    url: str | None = None, retries: int | None = None,
                    transport: httpx.BaseTransport | None = None) -> PrometheusClient:
        """The client of ``prometheus.*``; checks the credential and TLS files now (one :class:`UserError` line).
        ``url`` and ``retries`` override the config's (``powerplanner verify``)."""
        return cls(url or cfg.url, timeout_s=cfg.timeout_s, retries=cfg.retries if retries is None else retries,
                   backoff_s=cfg.backoff_s, sleep=sleep, transport=transport,
                   access=PrometheusAccess.from_config(cfg.model_copy(update={"url": url or cfg.url})))

    def close(self) -> None:
        self._http.close()

    def query(self, promql: str) -> list[Sample]:
        """Evaluate ``promql`` now. Scalars come back as one sample without labels."""
        return self._retried(self._query_once, promql)

    def query_range(self, promql: str, start_s: float, end_s: float, step_s: float) -> list[RangeSeries]:
        """Evaluate ``promql`` at every ``step_s`` from ``start_s`` to ``end_s`` (Unix seconds), as the planner's
        tick would have then (``powerplanner profile fit``): one :class:`RangeSeries` per label set."""
        params = {"query": promql, "start": f"{start_s:.3f}", "end": f"{end_s:.3f}", "step": f"{step_s:g}"}
        return self._retried(lambda q: _parse_matrix(self._get("/api/v1/query_range", params, q)), promql)

    def _retried(self, once: Callable[[str], _T], promql: str) -> _T:
        """One retry policy for every query (retry.py): transient kinds only, the sleep injected."""
        policy = retrying(sleep=self._sleep, first_wait_s=self.backoff_s, attempts=self.retries + 1,
                          retry_on=lambda exc: isinstance(exc, PrometheusError) and exc.kind in RETRIED)
        result: _T = policy(once, promql)
        return result

    def _query_once(self, promql: str) -> list[Sample]:
        return _parse_data(self._get("/api/v1/query", {"query": promql}, promql))

    def _get(self, path: str, params: Mapping[str, str], promql: str) -> Any:
        """The ``data`` of one successful API answer; every failure a :class:`PrometheusError` naming its kind."""
        try:
            resp = self._http.get(path, params=params)
        except httpx.TimeoutException as exc:
            raise PrometheusError(PrometheusErrorKind.TIMEOUT,
                                  f"Prometheus at {self.url} timed out ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            raise PrometheusError(PrometheusErrorKind.UNREACHABLE, f"Prometheus at {self.url} is unreachable ({exc})",
                                  _tls_fix(str(exc))) from None
        if resp.status_code in (401, 403):
            raise PrometheusError(PrometheusErrorKind.AUTH,
                                  f"Prometheus at {self.url} refused the request (HTTP {resp.status_code})",
                                  self._access.refused_fix())
        if resp.status_code == 400 and "HTTP request to an HTTPS server" in resp.text:
            raise PrometheusError(PrometheusErrorKind.UNREACHABLE, f"Prometheus at {self.url} serves HTTPS",
                                  "use an https:// URL in prometheus.url")
        if resp.status_code >= 500 or resp.status_code == 429:
            raise PrometheusError(PrometheusErrorKind.HTTP, f"Prometheus answered HTTP {resp.status_code}")
        try:
            body = resp.json()
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
            raise PrometheusError(PrometheusErrorKind.GARBAGE,
                                  f"Prometheus answered non-JSON (HTTP {resp.status_code})") from None
        if not isinstance(body, dict):
            raise PrometheusError(PrometheusErrorKind.GARBAGE, "Prometheus answered JSON that is not an object")
        if body.get("status") != "success":
            raise PrometheusError(PrometheusErrorKind.QUERY,
                                  f"query failed: {body.get('errorType')}: {body.get('error')} ({promql})")
        return body.get("data")

    def check_reachable(self) -> None:
        """Raise :class:`EndpointError` (one clear line) when Prometheus cannot answer a trivial query."""
        try:
            self._query_once("vector(1)")
        except PrometheusError as exc:
            if exc.fix is not None:
                raise EndpointError(f"prometheus: {exc.line}") from None
            raise EndpointError(
                f"prometheus.url: {exc.message}; check prometheus.url and that Prometheus is running"
            ) from None


def _tls_fix(error: str) -> str | None:
    """The setting to change for a failed TLS handshake, or None when the failure is not TLS."""
    if "CERTIFICATE_VERIFY_FAILED" in error:
        return ("Prometheus' certificate is not trusted: set prometheus.tls_ca_file to the CA that signed it "
                "(tls_insecure_skip_verify: true skips the check, for tests only)")
    if "CERTIFICATE_REQUIRED" in error.upper() or "BAD_CERTIFICATE" in error.upper():
        return "Prometheus wants a client certificate it trusts: set prometheus.tls_cert_file and tls_key_file"
    return None


def _parse_data(data: Any) -> list[Sample]:
    if not isinstance(data, dict):
        raise PrometheusError(PrometheusErrorKind.GARBAGE, "Prometheus answer has no data object")
    kind = data.get("resultType")
    result = data.get("result")
    try:
        if kind == "vector" and isinstance(result, list):
            return [Sample(labels=dict(item.get("metric") or {}), value=_finite(item["value"][1])) for item in result]
        if kind == "scalar" and isinstance(result, list):
            return [Sample(labels={}, value=_finite(result[1]))]
    except (TypeError, KeyError, IndexError, AttributeError):
        raise PrometheusError(PrometheusErrorKind.GARBAGE, "Prometheus answer has a malformed result") from None
    raise PrometheusError(PrometheusErrorKind.GARBAGE,
                          f"unexpected resultType {kind!r} (need an instant vector or scalar)")


@dataclass(frozen=True)
class RangeSeries:
    """One series of a range query: its labels and its ``(unix time, value)`` points (value None for NaN/inf)."""

    labels: Mapping[str, str]
    points: tuple[tuple[float, float | None], ...]


def _parse_matrix(data: Any) -> list[RangeSeries]:
    if not isinstance(data, dict) or data.get("resultType") != "matrix" or not isinstance(data.get("result"), list):
        raise PrometheusError(PrometheusErrorKind.GARBAGE, "Prometheus answered a range query without a matrix")
    try:
        return [RangeSeries(dict(item.get("metric") or {}), tuple((float(t), _finite(v)) for t, v in item["values"]))
                for item in data["result"]]
    except (TypeError, KeyError, ValueError, AttributeError):
        raise PrometheusError(PrometheusErrorKind.GARBAGE, "Prometheus answer has a malformed matrix") from None


# -- the metrics source -----------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricsReading:
    """What Prometheus said for one window. Every number may be None ("no data")."""

    request_rate_per_s: float | None
    isl_tokens: float | None
    osl_tokens: float | None
    ttft_ms: float | None
    itl_ms: float | None
    applied_cap_watts: Mapping[Role, float | None] = field(default_factory=dict)  # per GPU, max over the role
    draw_watts: Mapping[Role, float | None] = field(default_factory=dict)  # whole role
    measured_power_watts: float | None = None  # both roles
    isl_p90_tokens: float | None = None
    # Per role, from the workers' gauges (live/promql.py VLLM_WORKER); a role with no pod reporting is absent.
    waiting_requests: Mapping[Role, float | None] = field(default_factory=dict)  # summed over the role's pods
    kv_usage: Mapping[Role, float | None] = field(default_factory=dict)  # mean over the role's pods, 0..1
    # (lowest, highest) annotation revision the agents acted on, over each pod's GPUs; None when the power
    # source cannot tell (see live/ledger.py)
    revision_by_pod: Mapping[str, tuple[float, float]] | None = None
    # Pods of the namespace with an agent series (applied limit or revision) in this read; None when the power
    # source cannot acknowledge caps (DCGM, none), so blind feedback is not tracked (see live/feedback.py)
    series_pods: frozenset[str] | None = None
    # Per GPU uuid, the (namespace, pod) holders its agent reports, ("", "") for none, over every agent scraped;
    # None when the power source cannot tell or the query failed (nothing is released: see live/ledger.py)
    holders_by_gpu: Mapping[str, frozenset[tuple[str, str]]] | None = None
    source_ok: bool = True
    source_error: str | None = None
    error_kind: str | None = None  # a PrometheusErrorKind: the kind of the first failure


class MetricsSource(Protocol):
    """Where the live loop's load, latency and power come from."""

    def read(self, window_s: float, pods: Mapping[Role, Sequence[str]]) -> MetricsReading:
        """Observe the last ``window_s`` seconds; ``pods`` are the worker pod names of each role (to attribute
        per-GPU power to roles). Never raises for a Prometheus fault: returns ``source_ok=False``."""
        ...


class PrometheusMetricsSource:
    """:class:`MetricsSource` over the Prometheus HTTP API."""

    def __init__(self, client: PrometheusClient, cfg: PrometheusConfig, k8s_namespace: str) -> None:
        self._client = client
        self._cfg = cfg
        self._namespace = k8s_namespace
        self._frontend = VLLM_FRONTEND if cfg.frontend == "vllm" else DYNAMO_FRONTEND
        self._power = {"agent": AGENT_POWER, "dcgm": DCGM_POWER}.get(cfg.power_source)

    def diagnose_feedback(self, pods: Sequence[str]) -> FeedbackDiagnosis:
        """Why ``pods`` have no agent series (one extra query, run when the feedback turns blind). Raises
        :class:`PrometheusError` when Prometheus cannot answer."""
        samples = self._client.query(diagnosis_query())
        return diagnose_agent_series([s.labels for s in samples], self._namespace, pods)

    def _holders(self, power: PowerMetricNames, errors: list[PrometheusError]
                 ) -> dict[str, frozenset[tuple[str, str]]] | None:
        if any(e.transport for e in errors) or power.applied_limit_watts is None:
            return None
        try:
            samples = self._client.query(holders_query(power))
        except PrometheusError as exc:
            errors.append(exc)
            return None
        found: dict[str, set[tuple[str, str]]] = {}
        for s in samples:
            if s.labels.get("uuid"):
                who = (s.labels.get(power.namespace_label, ""), s.labels.get(power.pod_label, ""))
                found.setdefault(s.labels["uuid"], set()).add(who)
        return {uuid: frozenset(who) for uuid, who in found.items()}

    def read(self, window_s: float, pods: Mapping[Role, Sequence[str]]) -> MetricsReading:
        queries = frontend_queries(self._frontend, window_s, self._cfg.model, self._cfg.dynamo_namespace)
        errors: list[PrometheusError] = []

        def scalar(promql: str, optional: bool = False) -> float | None:
            if any(e.transport for e in errors):
                return None  # Prometheus is down: do not wait out a timeout per query
            try:
                samples = self._client.query(promql)
            except PrometheusError as exc:
                if not (optional and not exc.transport):  # see by_pod
                    errors.append(exc)
                return None
            if len(samples) != 1:
                return None  # empty vector: no series matched (idle, or nothing exported yet)
            value = samples[0].value
            return value if value is not None and value >= 0 else None

        def by_pod(promql: str, pod_label: str, optional: bool = False) -> dict[str, float]:
            """``optional``: a signal the planner can do without (docs/planner.md, "Which role is short"); its
            query failing leaves it absent (None per role) and does not fail the reading."""
            if any(e.transport for e in errors):
                return {}
            try:
                samples = self._client.query(promql)
            except PrometheusError as exc:
                if not (optional and not exc.transport):
                    errors.append(exc)
                return {}
            return {s.labels[pod_label]: s.value for s in samples if s.labels.get(pod_label) and s.value is not None}

        rate = scalar(queries.request_rate)
        isl = scalar(queries.isl)
        osl = scalar(queries.osl)
        ttft_s = scalar(queries.ttft)
        itl_s = scalar(queries.itl)
        isl_p90 = scalar(queries.isl_p90, optional=True)
        waiting_q, kv_q = worker_queries(VLLM_WORKER, self._namespace)
        waiting = _by_role(by_pod(waiting_q, VLLM_WORKER.pod_label, optional=True), pods, mean=False)
        kv_usage = _by_role(by_pod(kv_q, VLLM_WORKER.pod_label, optional=True), pods, mean=True)
        caps: dict[Role, float | None] = dict.fromkeys(ROLES)
        draws: dict[Role, float | None] = dict.fromkeys(ROLES)
        revisions: dict[str, tuple[float, float]] | None = None
        series: frozenset[str] | None = None
        holders: dict[str, frozenset[tuple[str, str]]] | None = None
        if (power := self._power) is not None:
            def query(metric: str, how: str) -> dict[str, float]:
                return by_pod(per_pod_query(metric, self._namespace, how, power), power.pod_label)

            draw_by_pod = query(power.draw_watts, "sum")
            cap_by_pod = query(power.applied_limit_watts, "max") if power.applied_limit_watts else {}
            if power.limit_revision:
                low = query(power.limit_revision, "min")
                high = query(power.limit_revision, "max")
                revisions = {p: (low[p], high[p]) for p in high if p in low}
                series = frozenset(cap_by_pod) | frozenset(revisions)
                holders = self._holders(power, errors)
            for role in ROLES:
                names = [p for p in pods.get(role, ()) if p in draw_by_pod]
                draws[role] = sum(draw_by_pod[p] for p in names) if names else None
                role_caps = [cap_by_pod[p] for p in pods.get(role, ()) if p in cap_by_pod]
                caps[role] = max(role_caps) if role_caps else None
        known = [d for d in draws.values() if d is not None]
        first = errors[0] if errors else None
        return MetricsReading(
            request_rate_per_s=rate,
            isl_tokens=isl,
            osl_tokens=osl,
            ttft_ms=None if ttft_s is None else ttft_s * 1000.0,
            itl_ms=None if itl_s is None else itl_s * 1000.0,
            applied_cap_watts=caps,
            draw_watts=draws,
            measured_power_watts=sum(known) if known else None,
            isl_p90_tokens=isl_p90,
            waiting_requests=waiting,
            kv_usage=kv_usage,
            revision_by_pod=revisions,
            series_pods=series,
            holders_by_gpu=holders if first is None else None,
            source_ok=first is None,
            source_error=None if first is None else f"prometheus {first.kind}: {first.line}",
            error_kind=None if first is None else first.kind,
        )


def _by_role(values: Mapping[str, float], pods: Mapping[Role, Sequence[str]], mean: bool) -> dict[Role, float | None]:
    """Per role, the sum (or mean) over its pods that report the gauge; None when none does (absence is not 0)."""
    out: dict[Role, float | None] = {}
    for role in ROLES:
        found = [values[p] for p in pods.get(role, ()) if p in values and values[p] >= 0]
        out[role] = None if not found else (sum(found) / len(found) if mean else sum(found))
    return out
