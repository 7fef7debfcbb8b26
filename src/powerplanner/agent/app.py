"""The agent process: wires the GPU backend, the pod watch, the mapper, the reconciler and the exporter.

The main thread runs the reconcile loop: a pass on every pod change (the watch thread wakes it) and
at least every ``resync_s``. SIGTERM/SIGINT stop the loop. The limits in force then stay, and so does the state
file: the next agent on the node takes over from them, so a restart or a DaemonSet rollout never lifts a node
over its budget. The original limits are restored only when the agent is being uninstalled (its DaemonSet is
gone or being deleted) or ``agent.restore_on_exit`` says ``always``: :mod:`powerplanner.agent.handover`,
docs/operations.md "Restarts, rollouts and uninstall".
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from powerplanner.agent.cgroup import CgroupMapper
from powerplanner.agent.exporter import AgentMetrics, serve_metrics
from powerplanner.agent.gpu import GpuBackend
from powerplanner.agent.handover import RestoreOnExit, decide_exit
from powerplanner.agent.kubeapi import PodApi, endpoint_from
from powerplanner.agent.mapping import FallbackMapper
from powerplanner.agent.podresources import PodResourcesMapper
from powerplanner.agent.pods import PodWatcher
from powerplanner.agent.policy import AgentPolicy
from powerplanner.agent.reconciler import Reconciler
from powerplanner.agent.state import StateFileError, StateStore
from powerplanner.config import AgentConfig, AgentFileConfig, Config
from powerplanner.errors import ConfigError, EndpointError
from powerplanner.hostport import HostPortError, split_host_port

_LOG = logging.getLogger("powerplanner.agent")


def policy_from_config(agent: AgentConfig) -> AgentPolicy:
    return AgentPolicy(
        allowed_namespaces=frozenset(agent.allowed_namespaces),
        floor_watts=agent.floor_watts,
        ceiling_watts=agent.ceiling_watts,
        park=agent.park,
        park_watts=agent.park_watts,
        new_pod_grace_s=agent.new_pod_grace_s,
    )


def node_name_from(agent: AgentConfig, environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    name = agent.node_name or env.get("NODE_NAME", "")
    if not name:
        raise ConfigError(
            "agent.node_name: not set and NODE_NAME is empty; set agent.node_name in the config or export "
            "NODE_NAME (the Helm chart sets it from spec.nodeName)"
        )
    return name


def pod_api_from(config: Config | AgentFileConfig) -> PodApi:
    """The agent's small pod list/watch client (in-cluster credentials, else a kubeconfig)."""
    return PodApi(endpoint_from(config.kubernetes.kubeconfig))


@dataclass
class AgentLoop:
    """The reconcile loop and its wake-up signal; separate from start-up so tests can drive it."""

    reconciler: Reconciler
    resync_s: float
    ready: Callable[[], bool]
    stop: threading.Event
    wake: threading.Event

    def run(self) -> None:
        while not self.stop.is_set():
            self.wake.wait(timeout=self.resync_s)
            if self.stop.is_set():
                break
            self.wake.clear()
            if not self.ready():
                continue
            try:
                self.reconciler.reconcile()
            except Exception:  # keep the node agent alive; the failure is logged with its traceback
                _LOG.exception("reconcile pass failed; retrying at the next event or resync")


def run_agent(
    config: Config | AgentFileConfig, backend: GpuBackend, dry_run: bool, pod_api: PodApi | None = None
) -> int:
    """Run until SIGTERM/SIGINT; return the process exit code."""
    agent = config.agent
    node = node_name_from(agent)
    api = pod_api if pod_api is not None else pod_api_from(config)
    stop = threading.Event()
    wake = threading.Event()
    metrics = AgentMetrics(backend)
    gpus = backend.gpus()
    state = StateStore(agent.state_file, node, gpus)
    watcher = PodWatcher(
        api,
        node,
        on_change=wake.set,
        resync_s=agent.resync_s,
        on_restart=lambda reason: metrics.watch_restarts.labels(reason).inc(),
    )
    mapper = FallbackMapper(
        PodResourcesMapper(agent.kubelet_socket, backend, agent.kubelet_timeout_s, agent.resource_name),
        CgroupMapper(backend, agent.proc_root),
        agent.kubelet_socket,
        on_failure=lambda error: metrics.mapping_failures.labels(error.reason).inc(),
    )
    dry_run = dry_run or agent.dry_run
    reconciler = Reconciler(backend, mapper, watcher.snapshot, state, metrics, policy_from_config(agent), dry_run)

    def _stop(signum: int, _frame: FrameType | None) -> None:
        _LOG.info("received %s; stopping", signal.Signals(signum).name)
        stop.set()
        wake.set()

    server = _serve(metrics, agent.metrics_bind)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    _LOG.info(
        "agent on node %s: %d GPU(s), metrics on %s, state file %s%s",
        node,
        len(gpus),
        agent.metrics_bind,
        agent.state_file,
        " (dry run: no limit is changed)" if dry_run else "",
    )
    watcher.start(stop)
    loop = AgentLoop(reconciler, agent.resync_s, watcher.synced.is_set, stop, wake)
    try:
        loop.run()
    finally:
        failures = _exit(reconciler, state, api, agent.restore_on_exit, dry_run)
        shutdown = getattr(server, "shutdown", None)
        if callable(shutdown):
            shutdown()
        backend.close()
        api.close()
    if failures:
        _LOG.error("could not restore %d GPU(s): %s", len(failures), ", ".join(sorted(failures)))
        return 1
    return 0


def _exit(
    reconciler: Reconciler, state: StateStore, api: PodApi, mode: RestoreOnExit, dry_run: bool
) -> dict[str, str]:
    """Restore the originals on an uninstall (or when configured); else hand over. Failures by GPU uuid."""
    decision = decide_exit(mode, api)
    if decision.restore:
        _LOG.info("restoring the original limits: %s", decision.reason)
        return reconciler.restore_all()
    if not dry_run:
        try:
            state.flush()
        except StateFileError as exc:
            _LOG.error("%s", exc)
    _LOG.info("leaving the limits in force and the state file %s for the next agent: %s", state.path,
              decision.reason)
    return {}


def _serve(metrics: AgentMetrics, bind: str) -> object:
    try:
        split_host_port(bind)
    except HostPortError as exc:
        raise ConfigError(f"agent.metrics_bind: {exc}") from None
    try:
        return serve_metrics(metrics, bind)
    except OSError as exc:
        raise EndpointError(f"agent.metrics_bind: cannot listen on {bind} ({exc}); choose a free host:port") from None
