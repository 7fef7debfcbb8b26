"""The whole loop on this machine, as one object the whole-loop test and the budget fault paths drive.

Traffic -> Dynamo frontend metrics -> a real Prometheus -> the planner (in-process, ``build_service`` with its
real Prometheus source, Kubernetes actuator and admin endpoint) -> pod annotations in the Kubernetes emulator
-> real agent processes (fake NVML, fake kubelets; cluster_sim.py) -> GPU limits -> the latency the frontend
reports. A small operator (tests/fixtures/k8s.py ``reconcile``) and scheduler (cluster_sim.py) turn the DGD
into pods on GPUs.

Time: the planner runs on a fake clock; each :meth:`LoopWorld.tick` advances it by one cap interval while
``tick_real_s`` of real time passes, so the agents, Prometheus and the traffic run in real time. The planner's
configuration is its default except the time scales (intervals, Prometheus window: real minutes would not fit
a test), the replica bounds and GPU pool of this small cluster, and what the environment dictates (URLs,
ports, names). The agents run with the chart's configuration (cluster_sim.py ``agent_section``).

Faults the paths inject: an agent rolling update (:meth:`roll_agents`), a planner restart
(:meth:`restart_planner`), a budget change through the admin endpoint or the config file, a frontend
outage, a stopped (lagging) agent, a Prometheus scraping the agents the way the Prometheus Operator's
PodMonitor does (its ``pod``/``namespace``/``container`` target labels, ``honorLabels`` off).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client import start_http_server

from powerplanner.config import Config, config_from_mapping
from powerplanner.live.clock import FakeClock
from powerplanner.live.loop import TickReport
from powerplanner.live.service import Service, build_service
from tests.fixtures.k8s import PODS
from tests.fixtures.prometheus import PrometheusServer, find_prometheus_binary, serve_registry, start_prometheus
from tests.integration.agent.harness import free_port, wait_for
from tests.integration.e2e.cluster_sim import (
    AGENT_NAMESPACE,
    CAP_ANNOTATION,
    Frontend,
    GpuNode,
    PowerSampler,
    Scheduler,
    add_agent_daemonset,
    register_resources,
)
from tests.integration.verify.world import NODES, AuthzCluster, add_component_pod

NS = "dynamo"
DGD = "llm"
TOKEN = "whole-loop"
MODEL = "e2e"
DYNAMO_NAMESPACE = "dyn"
PLANNER_POD = "pp-powerplanner-planner-0"


@dataclass
class WorldSpec:
    """The shape of one world: cluster, deployment, budget, planner settings and scraping."""

    nodes: int = 2
    gpus_per_node: int = 8
    gpus_per_replica: int = 2  # what the DGD gives each replica (nvidia.com/gpu)
    prefill_replicas: int = 1
    decode_replicas: int = 1
    max_replicas: int = 3
    budget_watts: float = 4000.0
    profile: str = "llama2-70b-h100-tp2"
    cap_interval_s: float = 5.0
    adjustment_interval_s: float = 15.0
    tick_real_s: float = 1.0  # real time between ticks: two Prometheus scrapes of fresh traffic
    operator_scrape: bool = False  # scrape the agents as the Prometheus Operator's PodMonitor does
    config_file: bool = False  # the planner reads its config from a file (a budget change there hot-reloads)
    admin: bool = True
    agent: dict[str, Any] = field(default_factory=dict)  # agent settings on top of the chart's

    @property
    def gpu_pool(self) -> int:
        return self.nodes * self.gpus_per_node


def planner_mapping(spec: WorldSpec, prom_url: str, budget_watts: float | None = None) -> dict[str, Any]:
    budget: dict[str, Any] = {"watts": budget_watts if budget_watts is not None else spec.budget_watts}
    if spec.admin:
        budget["admin"] = {"enabled": True, "bind": "127.0.0.1:0", "token": TOKEN}
    return {
        "budget": budget,
        "sla": {"ttft_ms": 500, "itl_ms": 50},
        "planner": {"adjustment_interval_s": spec.adjustment_interval_s, "cap_interval_s": spec.cap_interval_s,
                    "gpu_pool": spec.gpu_pool,
                    "prefill": {"min_replicas": 1, "max_replicas": spec.max_replicas},
                    "decode": {"min_replicas": 1, "max_replicas": spec.max_replicas}},
        "prometheus": {"url": prom_url, "window_s": 3, "model": MODEL, "dynamo_namespace": DYNAMO_NAMESPACE,
                       "timeout_s": 2, "retries": 1, "backoff_s": 0.05},
        "kubernetes": {"namespace": NS, "dgd_name": DGD},
        "profile": {"name": spec.profile},
    }


def operator_scrape_configs(nodes: list[GpuNode], interval_s: float) -> list[str]:
    """A scrape job for the agents with the target labels a PodMonitor's relabelling gives them (``namespace``,
    ``pod``, ``container``, ``endpoint`` of the agent pod) and ``honor_labels`` false: a scraped label of the
    same name is renamed ``exported_<name>``, as the Prometheus Operator does without ``honorLabels``."""
    ms = f"{int(interval_s * 1000)}ms"
    lines = ["  - job_name: powerplanner/pp-powerplanner-agent", f"    scrape_interval: {ms}",
             f"    scrape_timeout: {ms}", "    honor_labels: false", "    static_configs:"]
    for node in nodes:
        lines += [f"      - targets: ['{node.metrics_target}']",
                  "        labels: {namespace: " + AGENT_NAMESPACE + ", pod: " + node.agent_pod
                  + ", container: agent, endpoint: metrics}"]
    return lines


class LoopWorld:
    """Build with :meth:`start` (or as a context manager); drive with :meth:`tick`; :meth:`close` at the end."""

    def __init__(self, spec: WorldSpec, lib_dir: Path, workdir: Path) -> None:
        self.spec = spec
        self.lib_dir = lib_dir
        self.workdir = workdir
        self.cluster = AuthzCluster()
        self.nodes: list[GpuNode] = []
        self.threads: list[threading.Thread] = []
        self.stop_event = threading.Event()
        self.closers: list[Callable[[], None]] = []
        self.clock = FakeClock()
        self.service: Service | None = None
        self.planner_port = free_port()
        self.planner_restarts = 0
        self._metrics_server: Any = None
        self.config_path = workdir / "planner.yaml"
        self.budget_watts = spec.budget_watts
        self.reports: list[TickReport] = []

    # -- building ----------------------------------------------------------------------------------------
    def start(self) -> LoopWorld:
        if find_prometheus_binary() is None:
            raise FileNotFoundError("prometheus binary not installed (Debian package `prometheus`)")
        spec, cluster = self.spec, self.cluster
        register_resources(cluster)
        add_agent_daemonset(cluster)
        cluster.add_dgd_v1alpha1(name=DGD, namespace=NS, prefill_replicas=spec.prefill_replicas,
                                 decode_replicas=spec.decode_replicas, gpus_per_replica=spec.gpus_per_replica)
        cluster.add_scaling_adapter(DGD, "VllmDecodeWorker", spec.decode_replicas, namespace=NS)
        for i in range(spec.nodes):
            name = f"node-{chr(ord('a') + i)}"
            cluster.put(NODES, {"apiVersion": "v1", "kind": "Node",
                                "metadata": {"name": name, "labels": {"nvidia.com/gpu.present": "true"}},
                                "status": {"allocatable": {"nvidia.com/gpu": str(spec.gpus_per_node)}}})
            self.nodes.append(GpuNode.start(name, i + 1, spec.gpus_per_node, self.lib_dir, self.workdir, cluster.url,
                                            NS, cluster=cluster, agent=spec.agent))
        add_component_pod(cluster, PLANNER_POD, "planner", "cpu-node")
        for node in self.nodes:
            if not node.wait_agent():
                raise AssertionError(f"agent on {node.name} did not come up:\n{node.agent.log()[-3000:]}")
        self.scheduler = Scheduler(cluster, self.nodes, NS, DGD)
        self.frontend = Frontend(MODEL, DYNAMO_NAMESPACE, self.role_view)
        exporter = serve_registry(self.frontend.registry)
        self.closers.append(exporter.stop)
        scrape = 0.5
        if spec.operator_scrape:
            targets = [exporter.target, f"127.0.0.1:{self.planner_port}"]
            extra = operator_scrape_configs(self.nodes, scrape)
        else:
            targets = [exporter.target, *(n.metrics_target for n in self.nodes), f"127.0.0.1:{self.planner_port}"]
            extra = []
        self.prom: PrometheusServer = start_prometheus(self.workdir / "prometheus", targets, scrape_interval_s=scrape,
                                                       wait_scraped=False, extra_scrape_configs=extra)
        self.closers.append(self.prom.stop)
        if spec.config_file:
            self.write_planner_config(spec.budget_watts)
        self._start_planner()
        self.operator_pass()
        self.operator_pass()  # the first pods get their GPUs one pass after they appear
        self.sampler = PowerSampler(cluster, self.scheduler.holdings, self.nodes, NS)
        for target in (self.frontend.run, self.sampler.run):
            self.threads.append(threading.Thread(target=target, args=(self.stop_event,), daemon=True))
            self.threads[-1].start()
        return self

    def __enter__(self) -> LoopWorld:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    def planner_config(self, budget_watts: float | None = None) -> Config:
        return config_from_mapping(planner_mapping(self.spec, self.prom.url, budget_watts))

    def write_planner_config(self, budget_watts: float) -> None:
        """The planner's config file (a ConfigMap mounted as a directory: a change is an atomic swap)."""
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(planner_mapping(self.spec, self.prom.url, budget_watts)), encoding="utf-8")
        os.replace(tmp, self.config_path)

    def _start_planner(self) -> None:
        if self.spec.config_file:
            from powerplanner.config import load_config

            cfg = load_config(self.config_path)
            path: Path | None = self.config_path
        else:
            cfg, path = self.planner_config(), None
        self.service = build_service(cfg, path, clock=self.clock, api_client=self.cluster.api_client(retries=1),
                                     serve_metrics=False, pod_watch_read_timeout_s=1.0)
        # The planner's /metrics on a port that outlives a planner restart (Prometheus scrapes a fixed target).
        httpd, _thread = start_http_server(self.planner_port, addr="127.0.0.1",
                                           registry=self.service.loop.telemetry.registry)
        self._metrics_server = httpd

    def _stop_planner(self) -> None:
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
            self._metrics_server = None
        if self.service is not None:
            self.service.close()
            self.service = None

    def restart_planner(self) -> None:
        """The planner pod is replaced: the process ends (its memory with it) and a new one starts from the
        same configuration, against the same cluster; the clock goes on."""
        self._stop_planner()
        self._start_planner()
        self.planner_restarts += 1

    # -- driving -----------------------------------------------------------------------------------------
    @property
    def loop(self) -> Any:
        assert self.service is not None
        return self.service.loop

    def operator_pass(self, new_pods_ready: bool = True) -> None:
        self.scheduler.release_terminating()
        self.cluster.reconcile(DGD, NS, gpus=self.spec.gpus_per_replica, new_pods_ready=new_pods_ready)
        self.scheduler.step()

    def tick(self, rate_rps: float | None = None) -> TickReport:
        """Real time passes, planner time advances one cap interval, the planner ticks, the operator acts."""
        if rate_rps is not None:
            self.frontend.rate_rps = rate_rps
        time.sleep(self.spec.tick_real_s)
        self.clock.advance(self.spec.cap_interval_s)
        report: TickReport = self.loop.tick()
        self.reports.append(report)
        self.operator_pass(new_pods_ready=False)
        return report

    def put_budget(self, watts: float) -> None:
        assert self.service is not None and self.service.admin_server is not None
        host, port = self.service.admin_server.address
        resp = httpx.put(f"http://{host}:{port}/budget", json={"watts": watts},
                         headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
        if resp.status_code != 200:
            raise AssertionError(f"PUT /budget {watts}: {resp.status_code} {resp.text}")

    def roll_agents(self) -> threading.Thread:
        """The agent DaemonSet's rolling update (maxUnavailable 1), node by node, in the background while the
        planner ticks. ``rollout_ok`` is set when every new agent came up."""
        self.rollout_ok: bool | None = None

        def roll() -> None:
            ok = True
            for node in self.nodes:
                ok = node.roll() and ok
            self.rollout_ok = ok

        thread = threading.Thread(target=roll, name="agent-rollout", daemon=True)
        thread.start()
        return thread

    @contextlib.contextmanager
    def agent_stopped(self, node: GpuNode) -> Iterator[None]:
        """The node's agent is frozen (SIGSTOP: a hung or lagging agent; Prometheus cannot scrape it)."""
        assert node.agent.proc is not None
        os.kill(node.agent.proc.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(node.agent.proc.pid, signal.SIGCONT)

    def role_view(self) -> Any:
        from tests.integration.e2e.cluster_sim import role_view

        return role_view(self.cluster, self.scheduler, NS, DGD)

    def gpus_follow_annotations(self) -> list[str]:
        """Mismatches between each held GPU's limit and its pod's annotation (empty when the agents caught up)."""
        pods = {p["metadata"]["name"]: p for p in self.cluster.list_objects(PODS, NS)}
        limits: dict[str, float] = {}
        for node in self.nodes:
            limits.update(node.limits_watts())
        out = []
        for pod, (node, uuids) in self.scheduler.holdings().items():
            raw = ((pods.get(pod) or {}).get("metadata", {}).get("annotations") or {}).get(CAP_ANNOTATION)
            if raw is None:
                continue
            out += [f"{node.name}/{pod}/{u}: {limits[u]} W != {raw}" for u in uuids
                    if abs(limits[u] - int(raw)) > 0.5]
        return out

    def settle(self, timeout_s: float = 10.0) -> bool:
        return wait_for(lambda: not self.gpus_follow_annotations(), timeout_s, 0.05)

    def spec_replicas(self) -> dict[str, int]:
        state = self.loop.actuator.read_state()
        return {role.value: state.role(role).spec_replicas for role in state.roles}

    def close(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(5)
        with contextlib.suppress(Exception):
            self._stop_planner()
        for close in reversed(self.closers):
            with contextlib.suppress(Exception):  # teardown must not hide the test's own failure
                close()
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.stop()
        with contextlib.suppress(Exception):
            self.cluster.close()
