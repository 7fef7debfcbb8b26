"""Wiring ``powerplanner run``: config -> Prometheus source, Kubernetes actuator, budget sources, Planner,
loop, /metrics and the admin endpoint. Start-up checks fail fast with one clear line (bad config,
unreachable Prometheus or API server, missing DGD) before anything is served or changed. With
``leader_election.enabled`` every write goes through one gated client (live/leader_gate.py) that the Lease
elector (live/leader.py) opens and closes.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes.client

from powerplanner.config import Config, load_config
from powerplanner.core_settings import metrics_window_s
from powerplanner.errors import EndpointError, UserError
from powerplanner.kube.errors import KubeErrorKind, KubernetesError
from powerplanner.live.actuator import KubernetesActuator, check_reachable
from powerplanner.live.admin import AdminServer
from powerplanner.live.admin_settings import AdminSettings, parse_bind
from powerplanner.live.budget import (
    AdminBudget,
    BudgetSource,
    CompositeBudget,
    ConfigFileBudget,
    PromQLBudget,
    ScheduleBudget,
    StaticBudget,
)
from powerplanner.live.budget_store import BudgetStore, ConfigMapBudgetStore
from powerplanner.live.clock import Clock, RealClock
from powerplanner.live.cluster_view import ClusterState
from powerplanner.live.kube_client import build_api_client
from powerplanner.live.leader import LeaderSettings, LeaseElector
from powerplanner.live.leader_gate import LeaderAdminBudget, LeaderGatedApiClient
from powerplanner.live.loop import LiveLoop, LoopSettings, PlannerLike
from powerplanner.live.prometheus import PrometheusClient, PrometheusMetricsSource
from powerplanner.live.telemetry import LoopTelemetry
from powerplanner.model.roles import Role

log = logging.getLogger(__name__)


@dataclass
class Service:
    """A built loop and what must be closed with it."""

    loop: LiveLoop
    admin_budget: AdminBudget
    admin_server: AdminServer | None = None
    closers: list[Callable[[], None]] = field(default_factory=list)
    leader: LeaseElector | None = None  # with leader_election.enabled

    def close(self) -> None:
        for close in reversed(self.closers):
            try:
                close()
            except Exception:  # closing must not mask the real exit reason
                log.debug("error while closing", exc_info=True)


def default_planner(cfg: Config) -> PlannerLike:
    """The configured policy on the configured profile. A DGD whose GPUs per replica differ from the profile's
    TP size is handled on every tick (the planner only cuts power, the loop says why; docs/planner.md)."""
    try:
        from powerplanner.core_settings import build_planner, profile_from_config
    except ImportError as exc:  # pragma: no cover - only in a partial build
        raise UserError(f"the planner core is not available in this build ({exc}); reinstall powerplanner") from None
    return build_planner(cfg, profile_from_config(cfg.profile))


def build_budget(cfg: Config, config_path: Path | None, prom: PrometheusClient,
                 admin: AdminBudget | None = None) -> tuple[CompositeBudget, AdminBudget]:
    sources: list[BudgetSource] = []
    if cfg.budget.reload_config and config_path is not None:
        sources.append(ConfigFileBudget(config_path, cfg.budget.watts))
    else:
        sources.append(StaticBudget(cfg.budget.watts))
    admin = admin or AdminBudget()
    if cfg.budget.admin.enabled:
        sources.append(admin)
    if cfg.budget.promql:
        sources.append(PromQLBudget(prom, cfg.budget.promql))
    if cfg.budget.schedule:
        sources.append(ScheduleBudget(cfg.budget.schedule, cfg.budget.schedule_timezone))
    return CompositeBudget(sources), admin


_STORE_FIXES = {
    KubeErrorKind.SHAPE: "fix data.budget_watts (a positive number of watts, or 'none'), or delete the ConfigMap to "
                         "drop the stored budget",
    KubeErrorKind.FORBIDDEN: "grant the planner get, create and patch on configmaps in that namespace (the Helm "
                             "chart's RBAC)",
}


def restore_admin_budget(store: BudgetStore, *, persist: bool = True,
                         leader: LeaseElector | None = None) -> AdminBudget:
    """The admin budget as the last planner left it. The planner must not start with a budget possibly higher
    than one an operator set, so any failure to read it (other than "never set") stops the start-up with one
    line; meanwhile the agents keep the caps in force (docs/operations.md, "The admin endpoint").
    ``persist=False`` (dry run): later changes stay in memory."""
    try:
        stored = store.load()
    except KubernetesError as exc:
        fix = _STORE_FIXES.get(exc.kind, "the planner does not start without it, so that it never plans with a "
                               "budget possibly higher than the stored one (the agents keep the caps in force); "
                               "it reads it again when restarted")
        line = f"budget.admin.state_configmap: cannot read the stored admin budget ({exc.message}); {fix}"
        if exc.transient:
            raise EndpointError(line) from None
        raise UserError(line) from None
    if stored is None:
        log.info("admin: no stored admin budget in %s", store.where)
    elif stored.watts is None:
        log.info("admin: stored admin budget in %s is cleared (%s)", store.where, stored.updated_at or "no date")
    else:
        log.warning("admin: budget %g W restored from %s (set %s)", stored.watts, store.where,
                    stored.updated_at or "at an unknown time")
    if leader is not None:
        return LeaderAdminBudget(leader, store if persist else None, stored.watts if stored else None)
    return AdminBudget(store if persist else None, stored.watts if stored else None)


def leader_settings(cfg: Config) -> LeaderSettings:
    """The Lease of ``cfg.leader_election``; the identity from its environment variable, else the host name."""
    le = cfg.leader_election
    return LeaderSettings(
        namespace=le.namespace or cfg.kubernetes.namespace,
        lease_name=le.lease_name or f"powerplanner-{cfg.kubernetes.dgd_name}",
        identity=os.environ.get(le.identity_env) or socket.gethostname(),
        lease_duration_s=le.lease_duration_s, renew_deadline_s=le.renew_deadline_s, retry_period_s=le.retry_period_s,
    )


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
    admin_bind: str | None = None,
    budget_store: BudgetStore | None = None,
    elect_in_background: bool = True,
) -> Service:
    """Everything ``powerplanner run`` needs, checked. Injected pieces (clock, API client, planner) are for
    tests and benchmarks; by default they come from the config and the environment. ``watch_pods`` starts
    the pod watch that caps new replicas the moment the operator creates them (never in dry-run); it notices
    ``close()`` within ``pod_watch_read_timeout_s`` (tests use a short one: a server waits for open watches).
    With the admin endpoint on, the budget it last set is read back from ``budget_store`` (default: the
    ConfigMap ``budget.admin.state_configmap``) before anything runs; ``admin_bind`` overrides its address.
    ``elect_in_background=False``: no elector thread, the caller steps ``service.leader`` (tests, fake clock)."""
    clock = clock or RealClock()
    admin_cfg = cfg.budget.admin
    admin_settings = AdminSettings.from_config(admin_cfg, admin_bind) if admin_cfg.enabled else None
    prom = PrometheusClient.from_config(cfg.prometheus)
    closers: list[Callable[[], None]] = [prom.close]
    if start_checks:
        prom.check_reachable()
    client = api_client or build_api_client(cfg.kubernetes)
    telemetry = LoopTelemetry(deployment=cfg.kubernetes.dgd_name, namespace=cfg.kubernetes.namespace)
    leader, client = _elector(cfg, client, clock, telemetry, closers, dry_run=dry_run)
    actuator = KubernetesActuator.from_config(cfg.kubernetes, client)
    if start_checks:
        _log_dgd(check_reachable(actuator))
    metrics = PrometheusMetricsSource(prom, cfg.prometheus, cfg.kubernetes.namespace)
    stored_admin = store = None
    if admin_settings is not None:
        store = budget_store or ConfigMapBudgetStore(client, cfg.kubernetes.namespace, admin_cfg.state_configmap,
                                                     clock.utc_now)
        stored_admin = restore_admin_budget(store, persist=not dry_run, leader=leader)
    budget, admin_budget = build_budget(cfg, config_path, prom, stored_admin)
    settings = LoopSettings(cap_interval_s=cfg.planner.cap_interval_s, window_s=metrics_window_s(cfg), dry_run=dry_run,
                            emit_events=cfg.kubernetes.emit_events, blind_ticks=cfg.planner.blind_ticks,
                            metrics_missing_ticks=cfg.planner.metrics_missing_ticks)
    loop = LiveLoop(planner or default_planner(cfg), metrics, actuator, budget, clock, settings, telemetry,
                    diagnose_feedback=metrics.diagnose_feedback if cfg.prometheus.power_source == "agent" else None,
                    leadership=leader, on_elected=_catch_up(actuator, store, admin_budget))
    service = Service(loop=loop, admin_budget=admin_budget, closers=closers, leader=leader)
    if leader is not None:
        assert isinstance(client, LeaderGatedApiClient)
        closers.append(_start_elector(leader, client, elect_in_background))
    _start_threads(service, cfg, actuator, telemetry, admin_settings, watch_pods=watch_pods and not dry_run,
                   serve_metrics=serve_metrics, pod_watch_read_timeout_s=pod_watch_read_timeout_s)
    return service


def _start_threads(service: Service, cfg: Config, actuator: KubernetesActuator, telemetry: LoopTelemetry,
                   admin_settings: AdminSettings | None, *, watch_pods: bool, serve_metrics: bool,
                   pod_watch_read_timeout_s: float) -> None:
    """The pod watch, /metrics and the admin endpoint, each with its closer in ``service``; when one cannot
    start, those already started are closed before the error propagates."""
    loop = service.loop
    try:
        if watch_pods:
            service.closers.append(_start_pod_watch(actuator, telemetry, pod_watch_read_timeout_s, loop.may_act))
        if serve_metrics:
            service.closers.append(_serve_metrics(cfg, telemetry))
        if admin_settings is not None:
            service.admin_server = AdminServer(admin_settings, service.admin_budget, loop.last_decision_json,
                                               lambda: _budget_json(loop), loop.profile_json).start()
            service.closers.append(service.admin_server.stop)
    except BaseException:
        service.close()
        raise


def _elector(cfg: Config, client: kubernetes.client.ApiClient, clock: Clock, telemetry: LoopTelemetry,
             closers: list[Callable[[], None]], *, dry_run: bool,
             ) -> tuple[LeaseElector | None, kubernetes.client.ApiClient]:
    """With ``leader_election.enabled`` (and not a dry run, which writes nothing): the elector, on ``client``,
    and the gated client every other part writes through; else no elector and ``client`` itself."""
    if not cfg.leader_election.enabled or dry_run:
        return None, client
    leader = LeaseElector(client, leader_settings(cfg), clock, on_change=lambda on: telemetry.leader.set(int(on)))
    telemetry.leader.set(0)
    gated = LeaderGatedApiClient.wrapping(client, leader)
    closers.append(gated.close)
    return leader, gated


def _catch_up(actuator: KubernetesActuator, store: BudgetStore | None,
              admin_budget: AdminBudget) -> Callable[[], None]:
    """What a new leader runs before it acts: what the previous leader may have changed is read again."""
    def on_elected() -> None:
        actuator.forget_caps()
        if store is not None:
            admin_budget.set(restore_admin_budget(store).watts)

    return on_elected


def _start_elector(leader: LeaseElector, gate: LeaderGatedApiClient, background: bool) -> Callable[[], None]:
    """One attempt now (a sole planner acts from its first tick), then the elector's thread; returns what
    stops it and releases the Lease once the writes in flight have ended (closed after every writer)."""
    leader.step()
    stop = threading.Event()
    thread = threading.Thread(target=leader.run, args=(stop,), name="powerplanner-leader", daemon=True)
    if background:
        thread.start()

    def close() -> None:
        stop.set()
        if thread.is_alive():
            thread.join(timeout=leader.settings.renew_deadline_s)
        leader.release(drained=lambda: gate.wait_idle(leader.settings.lease_duration_s))

    return close


def _log_dgd(state: ClusterState) -> None:
    log.info("DGD %s/%s (%s): %s; prefill service %s, decode service %s", state.namespace, state.dgd_name,
             state.api_version, state.ready_detail, state.role(Role.PREFILL).service,
             state.role(Role.DECODE).service)


def _start_pod_watch(actuator: KubernetesActuator, telemetry: LoopTelemetry, read_timeout_s: float,
                     may_act: Callable[[], bool]) -> Callable[[], None]:
    """The pod watch on its own thread, capping a new replica the moment the operator creates it; returns what
    stops it (noticed within ``read_timeout_s``)."""
    stop_watch = threading.Event()

    def on_pod(_kind: str, pod: Any) -> None:
        if may_act() and actuator.cap_new_pod(pod):
            telemetry.steps.labels("set_cap", "new_pod").inc()

    threading.Thread(target=actuator.watch_pods, args=(on_pod, stop_watch),
                     kwargs={"read_timeout_s": read_timeout_s},
                     name="powerplanner-pod-watch", daemon=True).start()
    return stop_watch.set


def _serve_metrics(cfg: Config, telemetry: LoopTelemetry) -> Callable[[], None]:
    """The planner's /metrics on ``serve.metrics_bind``; returns what shuts it down."""
    host, port = parse_bind(cfg.serve.metrics_bind, "serve.metrics_bind")
    try:
        httpd = telemetry.serve(host, port)
    except OSError as exc:
        raise UserError(f"serve.metrics_bind: cannot listen on {cfg.serve.metrics_bind} ({exc.strerror}); "
                        "choose a free address") from None
    return httpd.shutdown


def _budget_json(loop: LiveLoop) -> dict[str, Any]:
    report = loop.last
    if report is None or report.budget is None:
        return {"watts": None}
    return {
        "watts": report.budget.watts,
        "source": report.budget.source,
        "sources": {r.source: r.watts for r in report.budget.readings},
    }


def run_service(config_path: Path, once: bool = False, dry_run: bool = False, admin_bind: str | None = None,
                report: Callable[[dict[str, Any]], None] | None = None) -> int:
    """``powerplanner run``: returns the process exit code. ``report`` gets the last tick (``GET /decision``'s
    body) once the loop stopped: ``run --once --json`` prints it."""
    cfg = load_config(config_path)
    service = build_service(cfg, config_path, dry_run=dry_run, watch_pods=not once,  # one tick: no watch
                            admin_bind=admin_bind)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.warning("signal %d: stopping after the current tick", signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        service.loop.run(stop, once=once)
        if report is not None:
            report(service.loop.last_decision_json())
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        service.close()
    return 0
