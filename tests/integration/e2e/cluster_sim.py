"""The pieces of a GPU cluster around the Kubernetes emulator, for the whole-loop test and the budget fault paths.

- :class:`GpuNode`: one node = a fake NVML (its own state file, loaded by its own agent process through
  ``LD_LIBRARY_PATH``), a fake kubelet (PodResources over a unix socket) and the real ``powerplanner agent``
  subprocess (tests/integration/agent/harness.py) watching the emulator through a kubeconfig, with the config
  file the Helm chart renders for its default values (:func:`agent_section`). The agent runs as the chart's
  DaemonSet runs it: a pod object owned by the DaemonSet, ``POD_NAME``/``POD_NAMESPACE`` in its environment, and
  a rolling update (:meth:`GpuNode.roll`) is SIGTERM to the old process, then a new pod and process.
- :class:`Scheduler`: stands in for kube-scheduler plus the NVIDIA device plugin. It binds a worker pod to a
  node with free GPUs and tells that node's kubelet which GPU UUIDs the pod holds; it frees them when the pod
  is gone. GPUs are handed out when a pod has existed for ``bind_after`` operator passes: a model server's
  containers (which is when the device plugin allocates GPUs) start long after the pod object is created, so
  the planner's next cap tick has annotated the pod by then, as it would in a real cluster.
- :class:`Frontend`: Dynamo's frontend metrics (``dynamo_frontend_*`` with ``model``, ``dynamo_namespace``) fed
  by a traffic thread. Each request's TTFT and ITL come from the *applied* limits read back from the fake
  GPUs the role's ready pods hold, with the physics of DESIGN.md section 4 (prefill slows roughly with
  the clock, decode is flat down to about half of TDP) and queueing from the load per replica. Its export can
  break (no series, NaN) while traffic goes on.
- :class:`PowerSampler`: provisioned power (the limits in force on the GPUs the deployment's pods hold, a
  time-sliced GPU once) against the budget the scenario says is in force, every 50 ms; :func:`excess_figures`.
- :class:`TcpProxy`: a relay in front of the API server that a test can cut (one agent loses its API access).
"""

from __future__ import annotations

import contextlib
import math
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes.client
import yaml
from kmock import ResourceInfo
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from powerplanner.contract import DGD_LABEL as LABEL_DGD
from powerplanner.contract import POWER_LIMIT_ANNOTATION as CAP_ANNOTATION
from powerplanner.contract import SUB_COMPONENT_LABEL as LABEL_SUBTYPE
from tests.fixtures.k8s import PODS, EmulatedCluster
from tests.fixtures.kubelet import FakeKubelet, PodDevices, short_socket_dir
from tests.fixtures.nvml import FakeGpu, FakeNvml, make_uuid, new_fake_nvml
from tests.integration.agent.harness import AgentProcess, free_port, write_kubeconfig
from tests.integration.e2e.chart_render import default_agent_settings

MAX_WATTS = 700.0
MIN_WATTS = 200.0


AGENT_NAMESPACE = "powerplanner"  # where the chart installs the agent DaemonSet
AGENT_DAEMONSET = "pp-powerplanner-agent"
DAEMONSETS = "apps/v1/daemonsets"
CONFIGMAPS = "v1/configmaps"
COMPONENT_LABELS = {"app.kubernetes.io/name": "powerplanner", "app.kubernetes.io/component": "agent"}


def register_resources(cluster: EmulatedCluster) -> None:
    """The emulator serves only the resources it was told about: add the agent's DaemonSet and the planner's
    ConfigMaps (the admin budget is kept in one) to what tests/fixtures/k8s.py registers."""

    def register() -> None:
        for resource in (DAEMONSETS, CONFIGMAPS):
            cluster.emulator.resources[resource] = ResourceInfo()

    cluster.call(register)


def add_agent_daemonset(cluster: EmulatedCluster) -> None:
    """The agent's DaemonSet as the chart creates it (an agent checks it at exit: gone means uninstalled)."""
    cluster.put(DAEMONSETS, {"apiVersion": "apps/v1", "kind": "DaemonSet",
                             "metadata": {"name": AGENT_DAEMONSET, "namespace": AGENT_NAMESPACE, "uid": "ds-uid",
                                          "labels": dict(COMPONENT_LABELS)},
                             "spec": {"selector": {"matchLabels": dict(COMPONENT_LABELS)}}})


def agent_section(node_dir: Path, kubelet_socket: Path, metrics_port: int, node_name: str) -> dict[str, Any]:
    """The agent's configuration as the chart renders it for its default values (chart_render.py), with the
    host-specific keys pointed at this node: name, state file, kubelet socket, metrics port, /proc."""
    section = default_agent_settings()
    section.update({
        "node_name": node_name,
        "state_file": str(node_dir / "agent-state.json"),
        "kubelet_socket": str(kubelet_socket),
        "metrics_bind": f"127.0.0.1:{metrics_port}",
        "proc_root": str(node_dir / "proc"),
    })
    return section


def write_config(path: Path, kubeconfig: Path, section: dict[str, Any], extra: dict[str, Any] | None = None) -> Path:
    """An agent config file: the Kubernetes connection and the agent section (``extra``: more top-level keys)."""
    body: dict[str, Any] = {"kubernetes": {"kubeconfig": str(kubeconfig)}, "agent": section, **(extra or {})}
    path.write_text(yaml.safe_dump(body), encoding="utf-8")
    return path


@dataclass
class GpuNode:
    """One GPU node: fake NVML, fake kubelet and the real agent process, run as the chart's DaemonSet runs it
    (its own pod object, ``POD_NAME``/``POD_NAMESPACE`` from the downward API, a rolling update = SIGTERM,
    then a new pod and process)."""

    name: str
    nvml: FakeNvml
    kubelet: FakeKubelet
    agent: AgentProcess
    socket_dir: Path
    node_dir: Path
    cluster: EmulatedCluster | None = None
    held: dict[str, list[str]] = field(default_factory=dict)  # pod -> device ids the kubelet reports
    pod_namespace: dict[str, str] = field(default_factory=dict)  # pod -> its namespace (default: the DGD's)
    generation: int = 0
    exits: list[int | None] = field(default_factory=list)  # exit status of every agent process stopped

    @classmethod
    def start(cls, name: str, index: int, gpus: int, lib_dir: Path, workdir: Path, api_url: str,
              namespace: str, cluster: EmulatedCluster | None = None, agent: dict[str, Any] | None = None,
              start_agent: bool = True) -> GpuNode:
        """``agent``: settings on top of the chart's (see :func:`agent_section`). With ``cluster`` the agent
        gets a pod object owned by the agent DaemonSet (create it with :func:`add_agent_daemonset`)."""
        node_dir = workdir / name
        devices = tuple(FakeGpu(uuid=make_uuid(index * 100 + i), demand_mw=450_000, energy_mj=1_000_000)
                        for i in range(gpus))
        nvml = new_fake_nvml(lib_dir, node_dir / "nvml", devices)
        socket_dir = short_socket_dir()
        kubelet = FakeKubelet(socket_path=socket_dir / "kubelet.sock")
        kubelet.start()
        port = free_port()
        section = agent_section(node_dir, kubelet.socket_path, port, name)
        section.update(agent or {})
        kubeconfig = write_kubeconfig(node_dir / "kubeconfig.yaml", api_url)
        config = write_config(node_dir / "agent.yaml", kubeconfig, section)
        process = AgentProcess(config, nvml, port, node_dir / "agent.log")
        node = cls(name, nvml, kubelet, process, socket_dir, node_dir, cluster)
        if start_agent:
            node.start_agent()
        return node

    # -- the agent as a DaemonSet pod --------------------------------------------------------------------
    @property
    def agent_pod(self) -> str:
        return f"{AGENT_DAEMONSET}-{self.name}-{self.generation}"

    @property
    def state_file(self) -> Path:
        return self.node_dir / "agent-state.json"

    def start_agent(self) -> None:
        """A new agent pod and process (``wait_agent`` waits for its /metrics)."""
        self.generation += 1
        if self.cluster is not None:
            self.cluster.put(PODS, {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": self.agent_pod, "namespace": AGENT_NAMESPACE, "labels": dict(COMPONENT_LABELS),
                             "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": AGENT_DAEMONSET,
                                                  "uid": "ds-uid", "controller": True}]},
                "spec": {"nodeName": self.name, "containers": [{"name": "agent"}]},
                "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
            })
        self.agent = AgentProcess(self.agent.config_path, self.nvml, self.agent.metrics_port,
                                  self.node_dir / f"agent-{self.generation}.log",
                                  extra_env={"POD_NAME": self.agent_pod, "POD_NAMESPACE": AGENT_NAMESPACE})
        self.agent.start()

    def wait_agent(self, timeout_s: float = 30.0) -> bool:
        """True once the agent serves /metrics; False when it exited (or never came up)."""
        try:
            self.agent.wait_ready(timeout_s)
        except AssertionError:
            return False
        return True

    def agent_running(self) -> bool:
        return self.agent.proc is not None and self.agent.proc.poll() is None

    def stop_agent(self, timeout_s: float = 20.0) -> int | None:
        """What the kubelet does to the old pod of a rolling update: mark it terminating, SIGTERM, wait for the
        exit, and the pod object goes. Returns the exit status (None when it had already exited)."""
        if self.cluster is not None:
            self.cluster.patch(PODS, AGENT_NAMESPACE, self.agent_pod,
                               {"metadata": {"deletionTimestamp": now_rfc3339()}})
        code: int | None = None
        if self.agent_running():
            code = self.agent.terminate(timeout_s)
        else:
            self.agent.kill()
            code = self.agent.proc.returncode if self.agent.proc is not None else None
        if self.cluster is not None:
            self.cluster.delete(PODS, AGENT_NAMESPACE, self.agent_pod)
        self.exits.append(code)
        return code

    def roll(self, timeout_s: float = 30.0) -> bool:
        """One node's step of the DaemonSet's rolling update; True when the new agent came up."""
        self.stop_agent()
        self.start_agent()
        return self.wait_agent(timeout_s)

    def rewrite_config(self, transform: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """Change the agent's config file (a new ConfigMap version; the next agent process reads it)."""
        path = self.agent.config_path
        body = transform(yaml.safe_load(path.read_text(encoding="utf-8")))
        path.write_text(yaml.safe_dump(body), encoding="utf-8")

    @property
    def metrics_target(self) -> str:
        return f"127.0.0.1:{self.agent.metrics_port}"

    # -- the kubelet's view --------------------------------------------------------------------------------
    def free(self) -> list[str]:
        used = {physical_uuid(u) for uuids in self.held.values() for u in uuids}
        return [g.uuid for g in self.nvml.read().gpus if g.uuid not in used]

    def publish(self, namespace: str) -> None:
        self.kubelet.set_pods([PodDevices(self.pod_namespace.get(pod, namespace), pod, "main", tuple(uuids))
                               for pod, uuids in self.held.items()])

    def limits_watts(self) -> dict[str, float]:
        return {g.uuid: g.limit_mw / 1000.0 for g in self.nvml.read().gpus}

    def uuids(self) -> list[str]:
        return [g.uuid for g in self.nvml.read().gpus]

    def stop(self) -> int | None:
        code = None
        if self.agent_running():
            code = self.agent.terminate()
        self.agent.kill()
        self.kubelet.stop()
        shutil.rmtree(self.socket_dir, ignore_errors=True)
        return code


def physical_uuid(device_id: str) -> str:
    """The GPU behind a kubelet device id: ``<UUID>::<n>`` is a time-sliced replica of ``<UUID>``."""
    return device_id.split("::", 1)[0]


def pod_gpu_count(pod: dict[str, Any]) -> int:
    return sum(int(((c.get("resources") or {}).get("limits") or {}).get("nvidia.com/gpu", 0))
               for c in (pod.get("spec") or {}).get("containers") or [])


class Scheduler:
    """Binds worker pods to nodes and GPUs (see the module docstring), one call per operator pass."""

    def __init__(self, cluster: EmulatedCluster, nodes: list[GpuNode], namespace: str, dgd: str,
                 bind_after: int = 1) -> None:
        self.cluster = cluster
        # Binding goes through the API (as kube-scheduler's does), so the agents' watches see it.
        self._core = kubernetes.client.CoreV1Api(cluster.api_client())
        self.nodes = nodes
        self.namespace = namespace
        self.dgd = dgd
        self.bind_after = bind_after
        self._age: dict[str, int] = {}
        self._lock = threading.Lock()

    def worker_pods(self) -> list[dict[str, Any]]:
        return [p for p in self.cluster.list_objects(PODS, self.namespace)
                if (p["metadata"].get("labels") or {}).get(LABEL_DGD) == self.dgd]

    def step(self) -> None:
        with self._lock:
            pods = {p["metadata"]["name"]: p for p in self.worker_pods()}
            for node in self.nodes:  # pods that are gone release their GPUs
                for name in [n for n in node.held if n not in pods]:
                    del node.held[name]
            for name, pod in sorted(pods.items()):
                self._age[name] = self._age.get(name, 0) + 1
                if pod.get("spec", {}).get("nodeName") or pod["metadata"].get("deletionTimestamp"):
                    continue
                if self._age[name] <= self.bind_after:
                    continue
                need = pod_gpu_count(pod)
                target = next((n for n in self.nodes if len(n.free()) >= need), None)
                if target is None:
                    continue  # Pending: no room (the planner's gpu_pool keeps this from happening)
                # Bound first, devices later: the kubelet reports a pod's GPUs only once its containers run,
                # and then reports the started containers in the pod's status (an event the agents see).
                self._core.patch_namespaced_pod(name, self.namespace, {"spec": {"nodeName": target.name}})
                target.held[name] = target.free()[:need]
                target.publish(self.namespace)
                self._core.patch_namespaced_pod(name, self.namespace, {"status": {"containerStatuses": [
                    {"name": "main", "containerID": f"containerd://{name}", "image": "vllm", "imageID": "vllm",
                     "restartCount": 0, "ready": False, "started": True, "state": {"running": {}}}]}})
            for node in self.nodes:
                node.publish(self.namespace)

    def release_terminating(self) -> None:
        """Terminating pods finish: the kubelet forgets their devices, then the pod object is deleted through
        the API (as the kubelet does), so the agents see the deletion and park the freed GPUs."""
        with self._lock:
            gone = [p["metadata"]["name"] for p in self.worker_pods() if p["metadata"].get("deletionTimestamp")]
            for node in self.nodes:
                for name in gone:
                    node.held.pop(name, None)
                node.publish(self.namespace)
            for name in gone:
                self._core.delete_namespaced_pod(name, self.namespace)

    def holdings(self) -> dict[str, tuple[GpuNode, list[str]]]:
        with self._lock:
            return {pod: (node, list(uuids)) for node in self.nodes for pod, uuids in node.held.items()}


# -- the frontend -------------------------------------------------------------------------------------------

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TOKEN_BUCKETS = (16, 64, 256, 1024, 4096, 16384)


def prefill_slowdown(cap_watts: float) -> float:
    """Compute-bound: about +30 % latency at half of TDP (DESIGN.md section 4)."""
    return float((MAX_WATTS / max(cap_watts, MIN_WATTS)) ** 0.4)


def decode_slowdown(cap_watts: float) -> float:
    """Memory-bound: flat down to about half of TDP, steep towards the minimum."""
    knee = MAX_WATTS / 2
    return 1.0 if cap_watts >= knee else 1.0 + 2.0 * (knee - cap_watts) / (knee - MIN_WATTS)


@dataclass
class RoleView:
    """What the frontend sees of one role right now: ready replicas and their applied per-GPU limits."""

    replicas: int
    caps_watts: list[float]

    @property
    def cap_watts(self) -> float:
        return min(self.caps_watts) if self.caps_watts else MAX_WATTS


class Frontend:
    """Dynamo-shaped frontend metrics; :meth:`run` serves ``rate()`` requests per second until stopped.

    ``outage`` breaks the export while traffic goes on: ``"empty"`` serves no series (a relabelled or
    renamed metric, a dropped target), ``"nan"`` serves every sample as NaN (a broken exporter)."""

    def __init__(self, model: str, dynamo_namespace: str, view: Callable[[], dict[str, RoleView]],
                 isl: int = 2000, osl: int = 200, base_ttft_s: float = 0.12, base_itl_s: float = 0.02,
                 prefill_rps_per_replica: float = 4.0, decode_rps_per_replica: float = 4.0) -> None:
        self.metrics = CollectorRegistry()
        labels = ["model", "dynamo_namespace"]
        r = self.metrics
        self.ttft = Histogram("dynamo_frontend_time_to_first_token_seconds", "TTFT", labels,
                              buckets=LATENCY_BUCKETS, registry=r)
        self.itl = Histogram("dynamo_frontend_inter_token_latency_seconds", "ITL", labels, buckets=LATENCY_BUCKETS,
                             registry=r)
        self.isl = Histogram("dynamo_frontend_input_sequence_tokens", "ISL", labels, buckets=TOKEN_BUCKETS,
                             registry=r)
        self.osl = Histogram("dynamo_frontend_output_sequence_tokens", "OSL", labels, buckets=TOKEN_BUCKETS,
                             registry=r)
        self.duration = Histogram("dynamo_frontend_request_duration_seconds", "duration", labels,
                                  buckets=LATENCY_BUCKETS, registry=r)
        self.requests = Counter("dynamo_frontend_requests", "requests", labels, registry=r)
        self.labels = (model, dynamo_namespace)
        for h in (self.ttft, self.itl, self.isl, self.osl, self.duration):
            h.labels(*self.labels)
        self.requests.labels(*self.labels)
        self.outage: str = "none"
        self.registry = CollectorRegistry(auto_describe=False)  # what the exporter serves
        self.registry.register(_FrontendExport(self))
        self.view = view
        self.isl_tokens, self.osl_tokens = isl, osl
        self.base_ttft_s, self.base_itl_s = base_ttft_s, base_itl_s
        self.prefill_rps, self.decode_rps = prefill_rps_per_replica, decode_rps_per_replica
        self.rate_rps = 0.0
        self.served = 0
        self.last_latency: tuple[float, float] = (0.0, 0.0)

    def latencies(self, rate_rps: float, roles: dict[str, RoleView]) -> tuple[float, float]:
        """(TTFT s, ITL s) at this load with these replicas and applied caps."""
        p, d = roles["prefill"], roles["decode"]
        p_slow, d_slow = prefill_slowdown(p.cap_watts), decode_slowdown(d.cap_watts)
        p_util = min(0.95, rate_rps * p_slow / max(1e-9, p.replicas * self.prefill_rps))
        d_util = min(0.95, rate_rps * d_slow / max(1e-9, d.replicas * self.decode_rps))
        ttft = self.base_ttft_s * p_slow / (1.0 - p_util) if p.replicas else 10.0
        itl = self.base_itl_s * d_slow * (1.0 + 0.5 * d_util) if d.replicas else 1.0
        return ttft, itl

    def run(self, stop: threading.Event, step_s: float = 0.2) -> None:
        debt = 0.0
        while not stop.wait(step_s):
            debt += self.rate_rps * step_s
            count = math.floor(debt)
            debt -= count
            if count <= 0:
                continue
            ttft, itl = self.latencies(self.rate_rps, self.view())
            self.last_latency = (ttft, itl)
            for _ in range(count):
                self.ttft.labels(*self.labels).observe(ttft)
                self.itl.labels(*self.labels).observe(itl)
                self.isl.labels(*self.labels).observe(self.isl_tokens)
                self.osl.labels(*self.labels).observe(self.osl_tokens)
                self.duration.labels(*self.labels).observe(ttft + itl * self.osl_tokens)
                self.requests.labels(*self.labels).inc()
            self.served += count


class _FrontendExport(Collector):
    """The frontend's metrics as served, through its ``outage`` switch."""

    def __init__(self, frontend: Frontend) -> None:
        self._frontend = frontend

    def collect(self) -> Iterator[Metric]:
        outage = self._frontend.outage
        if outage == "empty":
            return
        for family in self._frontend.metrics.collect():
            if outage == "nan":
                family.samples = [s._replace(value=math.nan) for s in family.samples]
            yield family


def role_view(cluster: EmulatedCluster, scheduler: Scheduler, namespace: str, dgd: str) -> dict[str, RoleView]:
    """Ready, non-terminating worker pods per role and the limits their GPUs really have (fake NVML)."""
    holdings = scheduler.holdings()
    limits: dict[str, float] = {}
    for node in scheduler.nodes:
        limits.update(node.limits_watts())
    out = {"prefill": RoleView(0, []), "decode": RoleView(0, [])}
    for pod in cluster.list_objects(PODS, namespace):
        meta = pod["metadata"]
        role = (meta.get("labels") or {}).get(LABEL_SUBTYPE)
        if (meta.get("labels") or {}).get(LABEL_DGD) != dgd or role not in out or meta.get("deletionTimestamp"):
            continue
        ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in (pod.get("status") or {}).get("conditions") or [])
        if not ready or meta["name"] not in holdings:
            continue
        _node, uuids = holdings[meta["name"]]
        out[role].replicas += 1
        out[role].caps_watts.append(min(limits[u] for u in uuids))
    return out


@dataclass
class PowerSample:
    t_s: float
    phase: str
    budget_watts: float
    applied_sum_watts: float  # every GPU held by a worker pod, as read back from the fake GPUs
    annotated_sum_watts: float  # the same, without pods the planner has not annotated yet
    unannotated_pods: int
    detail: str = ""  # pod: [GPU limits] annotation, for the report of an excursion

    @property
    def bounded(self) -> bool:
        """Whether the budget bounds this sample: not while the world starts, nor while a cut is carried out
        (a cut cannot be instant: caps drop on the next tick, removed replicas hold their GPUs until they go)."""
        return self.phase not in UNBOUNDED_PHASES and math.isfinite(self.budget_watts)

    @property
    def over(self) -> bool:
        return self.bounded and self.applied_sum_watts > self.budget_watts + 1e-6


UNBOUNDED_PHASES = ("start", "cutting")

Holdings = Callable[[], Mapping[str, tuple[GpuNode, list[str]]]]


class PowerSampler:
    """Samples, every ``period_s``, provisioned power: the sum of the limits in force (read back from the fake
    GPUs) of the GPUs the deployment's worker pods hold (``holdings``: pod -> node and kubelet device ids; a
    time-sliced GPU counts once). ``phase`` and ``budget_watts`` are set by the scenario as it goes."""

    def __init__(self, cluster: EmulatedCluster, holdings: Holdings, nodes: Sequence[GpuNode], namespace: str,
                 period_s: float = 0.05) -> None:
        self.cluster, self.holdings, self.nodes, self.namespace = cluster, holdings, nodes, namespace
        self.period_s = period_s
        self.phase = "start"
        self.budget_watts = math.inf
        self.samples: list[PowerSample] = []
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def bound(self, budget_watts: float, phase: str = "steady") -> None:
        with self._lock:
            self.budget_watts, self.phase = budget_watts, phase

    def sample(self) -> PowerSample:
        holdings = self.holdings()
        limits: dict[str, float] = {}
        for node in self.nodes:
            limits.update(node.limits_watts())
        annotation = {p["metadata"]["name"]: (p["metadata"].get("annotations") or {}).get(CAP_ANNOTATION)
                      for p in self.cluster.list_objects(PODS, self.namespace)}
        annotated = {name for name, value in annotation.items() if value}
        held = {physical_uuid(u) for _node, ids in holdings.values() for u in ids}
        known = {physical_uuid(u) for pod, (_node, ids) in holdings.items() if pod in annotated for u in ids}
        with self._lock:
            phase, budget = self.phase, self.budget_watts
        s = PowerSample(time.monotonic() - self._t0, phase, budget, sum(limits[u] for u in held),
                        sum(limits[u] for u in known), sum(1 for pod in holdings if pod not in annotated),
                        " ".join(f"{pod}:{[limits[physical_uuid(u)] for u in ids]}@{annotation.get(pod)}"
                                 for pod, (_n, ids) in sorted(holdings.items())))
        with self._lock:
            self.samples.append(s)
        return s

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.period_s):
            self.sample()

    def start(self) -> PowerSampler:
        self._thread = threading.Thread(target=self.run, args=(self._stop,), name="power-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def figures(self) -> ExcessFigures:
        with self._lock:
            samples = list(self.samples)
        return excess_figures(samples)


@dataclass(frozen=True)
class ExcessFigures:
    """How far and how long provisioned power went over the budget in force, over the bounded samples."""

    worst_ratio: float  # largest provisioned / budget (0 when no sample was bounded)
    seconds_over: float  # time between a sample and the one before it, summed over samples over the budget
    bounded_samples: int
    excursions: tuple[str, ...]  # the first few: time, the sample before, the sample over

    def as_dict(self) -> dict[str, Any]:
        return {"worst_ratio": round(self.worst_ratio, 4), "seconds_over": round(self.seconds_over, 3),
                "samples": self.bounded_samples, "excursions": list(self.excursions)}


def excess_figures(samples: Sequence[PowerSample]) -> ExcessFigures:
    bounded = [s for s in samples if s.bounded]
    worst = max((s.applied_sum_watts / s.budget_watts for s in bounded), default=0.0)
    over_s = 0.0
    excursions: list[str] = []
    previous: PowerSample | None = None
    for s in samples:
        if s.over:
            over_s += s.t_s - previous.t_s if previous is not None else 0.0
            if len(excursions) < 3 and (previous is None or not previous.over):
                before = f"{previous.t_s:.2f}s {previous.applied_sum_watts:g} W ({previous.detail}) -> " if previous \
                    else ""
                excursions.append(f"{before}{s.t_s:.2f}s {s.applied_sum_watts:g} W > {s.budget_watts:g} W "
                                  f"[{s.phase}] ({s.detail})")
        previous = s
    return ExcessFigures(worst, over_s, len(bounded), tuple(excursions))


def now_rfc3339(ago_s: float = 0.0) -> str:
    """A ``metadata`` timestamp as the API server writes it (UTC, whole seconds), ``ago_s`` in the past."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - ago_s))


class TcpProxy:
    """A loopback TCP relay in front of the API server, so a test can cut one agent's API access (a broken
    network path, an expired credential) while the rest of the cluster goes on: :meth:`cut` closes every
    relayed connection and refuses new ones (accepted, then closed at once)."""

    def __init__(self, upstream_url: str) -> None:
        host_port = upstream_url.split("://", 1)[-1].rstrip("/")
        host, _, port = host_port.rpartition(":")
        self._upstream = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._cut = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        threading.Thread(target=self._accept, name="api-proxy", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _addr = self._listener.accept()
            except OSError:
                return
            if self._cut.is_set():
                client.close()
                continue
            try:
                server = socket.create_connection(self._upstream, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.update((client, server))
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def cut(self) -> None:
        self._cut.set()
        with self._lock:
            sockets, self._sockets = list(self._sockets), set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def restore(self) -> None:
        self._cut.clear()

    def close(self) -> None:
        self._closed.set()
        self.cut()
        self._listener.close()
