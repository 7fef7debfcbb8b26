"""The planner's own /metrics: what it saw, what it decided, and what went wrong.

Its own :class:`~prometheus_client.CollectorRegistry` (never the global one), so several loops can live
in one process (tests) and nothing leaks between them.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any
from wsgiref.simple_server import make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer, _get_best_family, _SilentHandler

from powerplanner import __version__, contract
from powerplanner.model.roles import ROLES, Role
from powerplanner.model.values import Decision, Observation

PREFIX = "powerplanner"
# Read back by `powerplanner profile fit` (live/history.py): the cluster as the planner saw it, per tick.
REPLICAS_METRIC = f"{PREFIX}_replicas"
WORKER_POD_INFO_METRIC = f"{PREFIX}_worker_pod_info"
BUILD_INFO_METRIC = f"{PREFIX}_build_info"
# One gauge per quantity, each in its base unit (Prometheus naming: the unit is the suffix, one unit per metric).
OBSERVED_METRICS = {
    "request_rate_per_s": (f"{PREFIX}_observed_request_rate_per_second", "Observed request rate (NaN: no data).", 1.0),
    "isl_tokens": (f"{PREFIX}_observed_isl_tokens", "Observed mean input length (NaN when no data).", 1.0),
    "osl_tokens": (f"{PREFIX}_observed_osl_tokens", "Observed mean output length (NaN when no data).", 1.0),
    "ttft_ms": (f"{PREFIX}_observed_ttft_seconds", "Observed mean time to first token (NaN when no data).", 1e-3),
    "itl_ms": (f"{PREFIX}_observed_itl_seconds", "Observed mean inter-token latency (NaN when no data).", 1e-3),
}
PREDICTED_METRICS = {
    "request_rate_per_s": (f"{PREFIX}_predicted_request_rate_per_second", "Forecast request rate, next interval."),
    "isl_tokens": (f"{PREFIX}_predicted_isl_tokens", "Forecast mean input length, next interval."),
    "osl_tokens": (f"{PREFIX}_predicted_osl_tokens", "Forecast mean output length, next interval."),
}

CALIBRATION_METRICS = (
    ("latency_scale", "latency_scale_ratio", "time at full clock over the profile's"),
    ("compute_share", "compute_share_ratio", "share of the time that scales with 1 / clock"),
    ("idle_watts", "idle_draw_watts", "per-GPU idle draw"),
    ("natural_draw_watts", "natural_draw_watts", "per-GPU busy draw uncapped"),
)


class LoopTelemetry:
    """Every metric of the planner's /metrics (docs/operations.md, "Metrics", lists them), in its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None, deployment: str = "", namespace: str = "",
                 version: str = __version__) -> None:
        # Long on purpose: one flat list of metric declarations, each with its name, help and labels, reads as the
        # catalogue of /metrics; split into helpers, a metric's declaration would sit away from its siblings.
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.budget_watts = Gauge(f"{PREFIX}_budget_watts", "Budget in force (lowest active source).", registry=r)
        self.budget_source_watts = Gauge(
            f"{PREFIX}_budget_source_watts", "Each budget source's current value (NaN when inactive).", ["source"],
            registry=r,
        )
        self.projected_watts = Gauge(
            f"{PREFIX}_projected_provisioned_watts", "Provisioned power of the target (replicas x GPUs x cap).",
            registry=r,
        )
        self.predicted_draw_watts = Gauge(f"{PREFIX}_predicted_draw_watts", "Predicted GPU draw.", registry=r)
        self.measured_watts = Gauge(
            f"{PREFIX}_measured_power_watts", "Measured GPU draw of the deployment (NaN when unknown).", registry=r
        )
        self.replicas = Gauge(
            REPLICAS_METRIC, "Replicas per role: ready, starting, draining (observed) and target.",
            ["role", "state"], registry=r,
        )
        self.cap_watts = Gauge(
            f"{PREFIX}_cap_watts", "Per-GPU cap per role: target and applied (NaN when unknown).", ["role", "kind"],
            registry=r,
        )
        self.observed = {key: Gauge(name, text, registry=r) for key, (name, text, _) in OBSERVED_METRICS.items()}
        self.predicted = {key: Gauge(name, text, registry=r) for key, (name, text) in PREDICTED_METRICS.items()}
        self.decisions = Counter(f"{PREFIX}_decisions", "Decisions, by reason.", ["reason"], registry=r)
        self.steps = Counter(f"{PREFIX}_steps", "Actuation steps by kind and outcome.", ["kind", "outcome"], registry=r)
        self.budget_limited = Gauge(f"{PREFIX}_budget_limited", "1 when the budget limits the SLA.", registry=r)
        self.tick_seconds = Histogram(
            f"{PREFIX}_tick_duration_seconds", "Wall time of one tick (queries, decision, actuation).",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10), registry=r,
        )
        self.errors = Counter(f"{PREFIX}_errors", "Faults by kind (prometheus_*, kubernetes_*, budget_*).", ["kind"],
                              registry=r)
        self.source_up = Gauge(f"{PREFIX}_metrics_source_up", "1 when the last metrics read succeeded.", registry=r)
        self.feedback_blind = Gauge(
            f"{PREFIX}_feedback_blind",
            "1 while a Ready worker pod has had no agent series (applied limit, revision) for planner.blind_ticks "
            "ticks: its caps are never acknowledged, so it counts at the highest cap annotated since the last "
            "acknowledgement.", registry=r,
        )
        self.feedback_blind_pods = Gauge(
            f"{PREFIX}_feedback_blind_pods", "Ready worker pods without agent series for planner.blind_ticks ticks.",
            registry=r,
        )
        self.dgd_ready = Gauge(f"{PREFIX}_dgd_ready", "1 when the DGD is Ready.", registry=r)
        self.metrics_missing = Gauge(
            f"{PREFIX}_metrics_missing",
            "1 while load data (request rate, ISL/OSL) has been missing for planner.metrics_missing_ticks ticks "
            "or more: absent or NaN frontend series, or a failed query. The planner holds replicas meanwhile.",
            registry=r,
        )
        self.gpu_count_mismatch = Gauge(
            f"{PREFIX}_gpu_count_mismatch",
            "1 while the DGD's GPUs per replica differ from the profile's for some role: the planner only cuts "
            "power until a profile with the deployment's TP size is given.",
            registry=r,
        )
        self.dry_run = Gauge(f"{PREFIX}_dry_run", "1 in dry-run mode (decide and log, touch nothing).", registry=r)
        self.leader = Gauge(f"{PREFIX}_leader", "1 while this planner may act: it holds the leader Lease, or "
                            "leader election is off; 0 while it only observes.", registry=r)
        self.leader.set(1)
        self.last_tick = Gauge(f"{PREFIX}_last_tick_timestamp_seconds", "Unix time of the last tick.", registry=r)
        # The deployment is a label of build_info only: one planner drives one DGD, so on every series it would be
        # a constant; queries join it where needed (docs/operations.md, "Metrics").
        self.build_info = Gauge(
            BUILD_INFO_METRIC, "Always 1: the planner's version and the DynamoGraphDeployment it drives.",
            ["version", "deployment", "deployment_namespace"], registry=r,
        )
        self.build_info.labels(version, deployment, namespace).set(1)
        # The deployment's worker pods under the agent's own label names (contract.py), so a query can count only
        # the deployment's GPUs: agent series `* on(pod_name, pod_namespace) group_left(role)` this
        # (deploy/grafana/gen_dashboard.py; docs/operations.md, "The dashboard").
        self.worker_pod_info = Gauge(
            WORKER_POD_INFO_METRIC, "Always 1: a worker pod of the deployment, by role, as the planner sees it.",
            ["deployment", contract.AGENT_NAMESPACE_LABEL, contract.AGENT_POD_LABEL, "role"], registry=r,
        )
        self._deployment, self._namespace = deployment, namespace
        self._worker_pods: set[tuple[str, str]] = set()
        # planner.calibration (live/calibration_view.py): each learned constant, its mean and std, one metric each
        self.calibration = {
            key: Gauge(f"{PREFIX}_calibration_{name}", f"Calibration's belief: {text} (stat: mean or std).",
                       ["role", "stat"], registry=r)
            for key, name, text in CALIBRATION_METRICS
        }
        self.calibration_departed = Gauge(
            f"{PREFIX}_calibration_departed", "1 while a learned constant departs from the given profile by more "
            "than planner.calibration.departure_fraction (Event CalibrationDeparted).", registry=r)
        self.calibration_probing = Gauge(f"{PREFIX}_calibration_probing", "1 while a calibration probe holds a cap.",
                                         registry=r)

    def record_observation(self, obs: Observation) -> None:
        nan = float("nan")
        self.measured_watts.set(obs.measured_power_watts if obs.measured_power_watts is not None else nan)
        for key, value in (("request_rate_per_s", obs.request_rate_per_s), ("isl_tokens", obs.isl_tokens),
                           ("osl_tokens", obs.osl_tokens), ("ttft_ms", obs.ttft_ms), ("itl_ms", obs.itl_ms)):
            scale = OBSERVED_METRICS[key][2]
            self.observed[key].set(value * scale if value is not None else nan)
        for role in ROLES:
            rs = obs.role(role)
            self.replicas.labels(role.value, "ready").set(rs.ready_replicas)
            self.replicas.labels(role.value, "starting").set(rs.starting_replicas)
            self.replicas.labels(role.value, "draining").set(rs.draining_replicas)
            self.cap_watts.labels(role.value, "applied").set(
                rs.applied_cap_watts if rs.applied_cap_watts is not None else nan
            )
        self.source_up.set(1 if obs.source_ok else 0)

    def record_decision(self, decision: Decision) -> None:
        self.projected_watts.set(decision.projected_provisioned_watts)
        self.predicted_draw_watts.set(decision.predicted_draw_watts)
        self.budget_limited.set(1 if decision.budget_limited else 0)
        for role in ROLES:
            target = decision.target(role)
            self.replicas.labels(role.value, "target").set(target.replicas)
            self.cap_watts.labels(role.value, "target").set(target.cap_watts)
        if decision.forecast is not None:
            self.predicted["request_rate_per_s"].set(decision.forecast.request_rate_per_s)
            self.predicted["isl_tokens"].set(decision.forecast.isl_tokens)
            self.predicted["osl_tokens"].set(decision.forecast.osl_tokens)
        for reason in decision.reasons:
            self.decisions.labels(str(reason)).inc()

    def record_worker_pods(self, pods: Mapping[Role, Sequence[str]]) -> None:
        """This tick's worker pods; pods gone since the last tick lose their series (the rest are never unset)."""
        now = {(name, role.value) for role, names in pods.items() for name in names}
        for name, role in self._worker_pods - now:
            self.worker_pod_info.remove(self._deployment, self._namespace, name, role)
        for name, role in now:
            self.worker_pod_info.labels(self._deployment, self._namespace, name, role).set(1)
        self._worker_pods = now

    def error(self, kind: str) -> None:
        self.errors.labels(kind).inc()

    def serve(self, host: str, port: int) -> Any:
        """Serve /metrics, and /healthz (200 ``ok`` while the process serves: a follower is healthy too), on
        ``host:port``; returns the server (``shutdown()`` to stop). prometheus_client's own server, with its app
        wrapped for /healthz."""
        metrics_app = make_wsgi_app(self.registry)

        def app(environ: dict[str, Any], start_response: Any) -> Any:
            if environ.get("PATH_INFO") == "/healthz":
                start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
                return [b"ok\n"]
            return metrics_app(environ, start_response)

        class Server(ThreadingWSGIServer):
            pass

        Server.address_family, addr = _get_best_family(host, port)
        httpd = make_server(addr, port, app, Server, handler_class=_SilentHandler)
        threading.Thread(target=httpd.serve_forever, name="powerplanner-metrics", daemon=True).start()
        return httpd
