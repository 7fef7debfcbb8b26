"""The planner's ticks read back from Prometheus history (``powerplanner profile fit``; docs/operations.md,
"Calibration offline: profile fit").

Every series the live loop reads on a tick (live/promql.py: the frontend's windowed averages, the agents' per-pod
draw and applied limit) is range-queried once, at ``step_s``, so each step holds what a tick at that time would
have read. What the live loop takes from Kubernetes comes from the planner's own /metrics (live/telemetry.py):
the deployment's worker pods by role (``powerplanner_worker_pod_info``) and its replicas by state
(``powerplanner_replicas``, joined to ``powerplanner_build_info`` for the deployment). A step is then the same
:class:`MetricsReading` and :class:`ClusterState` the live loop joins with ``build_observation``.

A required series that is absent over the whole range is one :class:`UserError` line naming the metric and what
exports it: absence of data is never data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from powerplanner.config import PrometheusConfig
from powerplanner.errors import UserError
from powerplanner.live.cluster_view import ClusterState, PodInfo, RoleCluster
from powerplanner.live.prometheus import MetricsReading, PrometheusClient, RangeSeries
from powerplanner.live.promql import (
    AGENT_POWER,
    DCGM_POWER,
    DYNAMO_FRONTEND,
    VLLM_FRONTEND,
    FrontendQueries,
    PowerMetricNames,
    frontend_queries,
    per_pod_query,
    selector,
)
from powerplanner.live.telemetry import BUILD_INFO_METRIC, REPLICAS_METRIC, WORKER_POD_INFO_METRIC
from powerplanner.model.roles import ROLES, Role

MAX_POINTS = 10_000  # Prometheus refuses a range query of more than 11,000 points per series: chunk below it

_PLANNER_EXPORTS = "the planner's /metrics (powerplanner run; --dry-run is enough) exports it while it drives the DGD"
_EXPORTERS = {
    "agent": "the power agent (powerplanner agent, the chart's DaemonSet) exports it",
    "dcgm": "dcgm-exporter exports it (with its Kubernetes pod mapping on, scraped with honorLabels)",
}


@dataclass(frozen=True)
class HistoryStep:
    """What a tick at ``time_s`` (Unix seconds) would have read: the metrics and the cluster."""

    time_s: float
    reading: MetricsReading
    state: ClusterState


class HistoryReader:
    """Range queries for one deployment over ``[start_s, end_s]`` at ``step_s``, averaged over ``window_s``."""

    def __init__(self, client: PrometheusClient, cfg: PrometheusConfig, dgd: str, namespace: str | None) -> None:
        if cfg.power_source == "none":
            raise UserError("prometheus.power_source is none: profile fit needs the caps in force; set it to agent "
                            "or dcgm (the source of per-GPU draw and applied limit)")
        self._client = client
        self._cfg = cfg
        self._dgd = dgd
        self._namespace = namespace
        self._frontend = VLLM_FRONTEND if cfg.frontend == "vllm" else DYNAMO_FRONTEND
        self._power: PowerMetricNames = AGENT_POWER if cfg.power_source == "agent" else DCGM_POWER

    def read(self, start_s: float, end_s: float, step_s: float, window_s: float) -> tuple[str, list[HistoryStep]]:
        """The deployment's namespace and one step per ``step_s`` in the range (steps without the planner's
        replica series are left out: the cluster is unknown then)."""
        span = (start_s, end_s, step_s)
        pods, namespace = self._pods(span)
        replicas = self._replicas(span, namespace)
        frontend = self._frontend_values(span, window_s)
        draw = self._by_pod(span, self._power.draw_watts, "sum", namespace)
        assert self._power.applied_limit_watts is not None  # both power sources export it
        caps = self._by_pod(span, self._power.applied_limit_watts, "max", namespace)
        steps = []
        for t in sorted(replicas):
            roles = {role: _role_cluster(role, replicas[t], pods.get(t, {}).get(role, ())) for role in ROLES}
            if any(r is None for r in roles.values()):
                continue
            state = ClusterState(self._dgd, namespace, "", True, "", {r: c for r, c in roles.items() if c})
            steps.append(HistoryStep(t, _reading(t, frontend, draw.get(t, {}), caps.get(t, {}), state), state))
        return namespace, steps

    # -- the queries -----------------------------------------------------------------------------

    def _range(self, promql: str, span: tuple[float, float, float]) -> list[RangeSeries]:
        """``query_range`` in chunks of at most MAX_POINTS steps, series merged by labels."""
        start, end, step = span
        merged: dict[tuple[tuple[str, str], ...], list[tuple[float, float | None]]] = {}
        t = start
        while t <= end:
            stop = min(end, t + (MAX_POINTS - 1) * step)
            for series in self._client.query_range(promql, t, stop, step):
                merged.setdefault(tuple(sorted(series.labels.items())), []).extend(series.points)
            t = stop + step
        return [RangeSeries(dict(k), tuple(v)) for k, v in merged.items()]

    def _pods(self, span: tuple[float, float, float]) -> tuple[dict[float, dict[Role, tuple[str, ...]]], str]:
        pod_l, ns_l = AGENT_POWER.pod_label, AGENT_POWER.namespace_label  # the planner exports the agent's names
        sel = selector({"deployment": self._dgd, ns_l: self._namespace})
        series = self._range(f"max by ({ns_l}, {pod_l}, role) ({WORKER_POD_INFO_METRIC}{sel})", span)
        if not series:
            raise UserError(f"no {WORKER_POD_INFO_METRIC}{sel} in the range: {_PLANNER_EXPORTS}; check the --dgd "
                            "name and that Prometheus scrapes the planner")
        namespaces = sorted({s.labels.get(ns_l, "") for s in series})
        if len(namespaces) > 1:
            raise UserError(f"DGD {self._dgd!r} has worker pods in namespaces {', '.join(namespaces)}; pass "
                            "--namespace to choose one")
        out: dict[float, dict[Role, list[str]]] = {}
        for s in series:
            role = {r.value: r for r in ROLES}.get(s.labels.get("role", ""))
            if role is None:
                continue
            for t, value in s.points:
                if value is not None:
                    out.setdefault(_key(t), {}).setdefault(role, []).append(s.labels.get(pod_l, ""))
        return {t: {r: tuple(sorted(p)) for r, p in by.items()} for t, by in out.items()}, namespaces[0]

    def _replicas(self, span: tuple[float, float, float], namespace: str) -> dict[float, dict[tuple[str, str], int]]:
        info = f'{BUILD_INFO_METRIC}{selector({"deployment": self._dgd, "deployment_namespace": namespace})}'
        promql = (f"max by (role, state) ({REPLICAS_METRIC} * on (job, instance) group_left () "
                  f"max by (job, instance) ({info}))")
        series = self._range(promql, span)
        if not series:
            raise UserError(f"no {REPLICAS_METRIC} joined to {info} in the range: {_PLANNER_EXPORTS}")
        out: dict[float, dict[tuple[str, str], int]] = {}
        for s in series:
            for t, value in s.points:
                if value is not None and value >= 0:
                    out.setdefault(_key(t), {})[(s.labels.get("role", ""), s.labels.get("state", ""))] = round(value)
        return out

    def _frontend_values(self, span: tuple[float, float, float], window_s: float) -> dict[str, dict[float, float]]:
        queries = frontend_queries(self._frontend, window_s, self._cfg.model, self._cfg.dynamo_namespace)
        out: dict[str, dict[float, float]] = {}
        for name in FrontendQueries.__dataclass_fields__:
            series = self._range(getattr(queries, name), span)
            if name == "request_rate" and not series:
                labels = selector({self._frontend.model_label: self._cfg.model,
                                   **({self._frontend.namespace_label: self._cfg.dynamo_namespace}
                                      if self._frontend.namespace_label else {})})
                raise UserError(f"no {self._frontend.requests_total}{labels} in the range: the "
                                f"{self._cfg.frontend} frontend exports it (prometheus.frontend, model and "
                                "dynamo_namespace select it; `powerplanner verify` checks the frontend metrics)")
            out[name] = {_key(t): v for s in series[:1] for t, v in s.points if v is not None and v >= 0}
        covered = _covered(sorted(out["request_rate"]), span[2], window_s)
        return {name: {t: v for t, v in values.items() if t in covered} for name, values in out.items()}

    def _by_pod(self, span: tuple[float, float, float], metric: str, how: str, namespace: str
                ) -> dict[float, dict[str, float]]:
        series = self._range(per_pod_query(metric, namespace, how, self._power), span)
        if not series:
            raise UserError(f"no {metric}{selector({self._power.namespace_label: namespace})} in the range: "
                            f"{_EXPORTERS[self._cfg.power_source]}")
        out: dict[float, dict[str, float]] = {}
        for s in series:
            pod = s.labels.get(self._power.pod_label)
            for t, value in s.points:
                if pod and value is not None:
                    out.setdefault(_key(t), {})[pod] = value
        return out


def _covered(times: list[float], step_s: float, window_s: float) -> set[float]:
    """The steps whose whole window lies in the history: at least ``window_s`` into an unbroken run of answers. A
    window the history covers only in part (its start, after a gap) is averaged by Prometheus over the part, but
    its rate is divided by the whole window: a rate too low, which no tick of a planner running then would see."""
    out: set[float] = set()
    run_start = prev = None
    for t in times:
        if prev is None or t - prev > 1.5 * step_s:
            run_start = t
        prev = t
        assert run_start is not None
        if t - run_start >= window_s - 1e-3:
            out.add(t)
    return out


def _key(t: float) -> float:
    """Step times as Prometheus answers them, rounded so the same step of two queries is one key."""
    return round(t, 3)


def _role_cluster(role: Role, replicas: Mapping[tuple[str, str], int], pods: tuple[str, ...]) -> RoleCluster | None:
    counts = {state: replicas.get((role.value, state)) for state in ("ready", "starting", "draining")}
    ready, starting, draining = counts["ready"], counts["starting"], counts["draining"]
    if ready is None or starting is None or draining is None:
        return None
    # the annotation is unknown offline (cap_watts None): the applied cap is the agents' report alone
    infos = tuple(PodInfo(name, ready=True, terminating=False, cap_watts=None) for name in pods)
    return RoleCluster(role.value, ready + starting, ready, starting, draining, None, infos)


def _reading(t: float, frontend: Mapping[str, Mapping[float, float]], draw_by_pod: Mapping[str, float],
             cap_by_pod: Mapping[str, float], state: ClusterState) -> MetricsReading:
    """The step's reading, attributed to roles by pod as :class:`PrometheusMetricsSource.read` does."""
    draws: dict[Role, float | None] = {}
    caps: dict[Role, float | None] = {}
    for role in ROLES:
        names = [p.name for p in state.role(role).pods]
        have = [draw_by_pod[p] for p in names if p in draw_by_pod]
        draws[role] = sum(have) if have else None
        role_caps = [cap_by_pod[p] for p in names if p in cap_by_pod]
        caps[role] = max(role_caps) if role_caps else None
    known = [d for d in draws.values() if d is not None]

    def ms(name: str) -> float | None:
        value = frontend[name].get(t)
        return None if value is None else value * 1000.0

    return MetricsReading(
        request_rate_per_s=frontend["request_rate"].get(t), isl_tokens=frontend["isl"].get(t),
        osl_tokens=frontend["osl"].get(t), ttft_ms=ms("ttft"), itl_ms=ms("itl"), applied_cap_watts=caps,
        draw_watts=draws, measured_power_watts=sum(known) if known else None,
    )
