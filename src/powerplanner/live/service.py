"""Wiring ``powerplanner run``: config -> Prometheus source, Kubernetes actuator, budget sources, Planner,
loop, /metrics and the admin endpoint. Start-up checks fail fast with one clear line (bad config,
unreachable Prometheus or API server, missing DGD) before anything is served or changed.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes.client

from powerplanner.config import Config, load_config
from powerplanner.errors import UserError
from powerplanner.live.budget import (
    AdminBudget,
    AdminServer,
    BudgetSource,
    CompositeBudget,
    ConfigFileBudget,
    PromQLBudget,
    ScheduleBudget,
    StaticBudget,
    parse_bind,
    read_token,
)
from powerplanner.live.clock import Clock, RealClock
from powerplanner.live.kubernetes import ClusterState, KubernetesActuator, build_api_client, check_reachable
from powerplanner.live.loop import LiveLoop, LoopSettings, PlannerLike
from powerplanner.live.prometheus import PrometheusClient, PrometheusMetricsSource
from powerplanner.live.telemetry import LoopTelemetry
from powerplanner.model.roles import ROLES, Role

log = logging.getLogger(__name__)


@dataclass
class Service:
    """A built loop and what must be closed with it."""

    loop: LiveLoop
    admin_budget: AdminBudget
    admin_server: AdminServer | None = None
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for close in reversed(self.closers):
            try:
                close()
            except Exception:  # closing must not mask the real exit reason
                log.debug("error while closing", exc_info=True)


def default_planner(cfg: Config, state: ClusterState | None = None) -> PlannerLike:
    """The configured policy on the configured profile. With the cluster state, warn when the DGD's GPUs per
    replica differ from the profile's TP size (power would be mis-counted by that factor)."""
    try:
        from powerplanner.model.profiles import profile_from_config
        from powerplanner.planning.planner import make_planner
    except ImportError as exc:  # pragma: no cover - only in a partial build
        raise UserError(f"the planner core is not available in this build ({exc}); reinstall powerplanner") from None
    profile = profile_from_config(cfg.profile)
    for role in ROLES:
        gpus = state.role(role).gpus_per_replica if state is not None else None
        if gpus is not None and gpus != profile.gpus_per_replica(role):
            log.warning("%s: the DGD gives %d GPU(s) per replica, profile %s assumes %d; provisioned power is "
                        "counted with the profile's; pick a profile with the deployment's TP size",
                        role.value, gpus, profile.name, profile.gpus_per_replica(role))
    return make_planner(cfg, profile)


def build_budget(cfg: Config, config_path: Path | None, prom: PrometheusClient) -> tuple[CompositeBudget, AdminBudget]:
    sources: list[BudgetSource] = []
    if cfg.budget.reload_config and config_path is not None:
        sources.append(ConfigFileBudget(config_path, cfg.budget.watts))
    else:
        sources.append(StaticBudget(cfg.budget.watts))
    admin = AdminBudget()
    if cfg.budget.admin.enabled:
        sources.append(admin)
    if cfg.budget.promql:
        sources.append(PromQLBudget(prom, cfg.budget.promql))
    if cfg.budget.schedule:
        sources.append(ScheduleBudget(cfg.budget.schedule))
    return CompositeBudget(sources), admin


def build_service(
    cfg: Config,
    config_path: Path | None = None,
    *,
    dry_run: bool = False,
    clock: Clock | None = None,
    api_client: kubernetes.client.ApiClient | None = None,
    planner: PlannerLike | None = None,
    serve_metrics: bool = True,
    start_checks: bool = True,
    watch_pods: bool = True,
    pod_watch_read_timeout_s: float = 5.0,
) -> Service:
    """Everything ``powerplanner run`` needs, checked. Injected pieces (clock, API client, planner) are for
    tests and benchmarks; by default they come from the config and the environment. ``watch_pods`` starts
    the pod watch that caps new replicas the moment the operator creates them (never in dry-run); it notices
    ``close()`` within ``pod_watch_read_timeout_s`` (tests use a short one: a server waits for open watches)."""
    clock = clock or RealClock()
    prom = PrometheusClient.from_config(cfg.prometheus)
    closers: list[Callable[[], None]] = [prom.close]
    if start_checks:
        prom.check_reachable()
    client = api_client or build_api_client(cfg.kubernetes)
    actuator = KubernetesActuator.from_config(cfg.kubernetes, client)
    state: ClusterState | None = None
    if start_checks:
        state = check_reachable(actuator)
        log.info("DGD %s/%s (%s): %s; prefill service %s, decode service %s", state.namespace, state.dgd_name,
                 state.api_version, state.ready_detail, state.role(Role.PREFILL).service,
                 state.role(Role.DECODE).service)
    metrics = PrometheusMetricsSource(prom, cfg.prometheus, cfg.kubernetes.namespace)
    budget, admin_budget = build_budget(cfg, config_path, prom)
    telemetry = LoopTelemetry()
    settings = LoopSettings(
        cap_interval_s=cfg.planner.cap_interval_s,
        window_s=cfg.prometheus.window_s or cfg.planner.adjustment_interval_s,
        dry_run=dry_run,
        emit_events=cfg.kubernetes.emit_events,
        blind_ticks=cfg.planner.blind_ticks,
    )
    loop = LiveLoop(planner or default_planner(cfg, state), metrics, actuator, budget, clock, settings, telemetry,
                    diagnose_feedback=metrics.diagnose_feedback if cfg.prometheus.power_source == "agent" else None)
    service = Service(loop=loop, admin_budget=admin_budget, closers=closers)
    try:
        if watch_pods and not dry_run:
            stop_watch = threading.Event()

            def on_pod(_kind: str, pod: Any) -> None:
                if actuator.cap_new_pod(pod):
                    telemetry.steps.labels("set_cap", "new_pod").inc()

            threading.Thread(target=actuator.watch_pods, args=(on_pod, stop_watch),
                             kwargs={"read_timeout_s": pod_watch_read_timeout_s},
                             name="powerplanner-pod-watch", daemon=True).start()
            closers.append(stop_watch.set)
        if serve_metrics:
            host, port = parse_bind(cfg.serve.metrics_bind, "serve.metrics_bind")
            try:
                httpd = telemetry.serve(host, port)
            except OSError as exc:
                raise UserError(f"serve.metrics_bind: cannot listen on {cfg.serve.metrics_bind} ({exc.strerror}); "
                                "choose a free address") from None
            closers.append(httpd.shutdown)
        if cfg.budget.admin.enabled:
            token = read_token(cfg.budget.admin) or ""
            admin = AdminServer(cfg.budget.admin.bind, token, admin_budget, loop.last_decision_json,
                                lambda: _budget_json(loop)).start()
            service.admin_server = admin
            closers.append(admin.stop)
    except BaseException:
        service.close()
        raise
    return service


def _budget_json(loop: LiveLoop) -> dict[str, Any]:
    report = loop.last
    if report is None or report.budget is None:
        return {"watts": None}
    return {
        "watts": report.budget.watts,
        "source": report.budget.source,
        "sources": {r.source: r.watts for r in report.budget.readings},
    }


def run_service(config_path: Path, once: bool = False, dry_run: bool = False) -> int:
    """``powerplanner run``: returns the process exit code."""
    cfg = load_config(config_path)
    service = build_service(cfg, config_path, dry_run=dry_run, watch_pods=not once)  # one tick: no watch
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.warning("signal %d: stopping after the current tick", signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        service.loop.run(stop, once=once)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        service.close()
    return 0
