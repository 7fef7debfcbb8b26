"""The pieces of a two-node GPU cluster around the Kubernetes emulator, for the whole-loop test.

- :class:`GpuNode`: one node = a fake NVML (its own state file, loaded by its own agent process through
  ``LD_LIBRARY_PATH``), a fake kubelet (PodResources over a unix socket) and the real ``powerplanner agent``
  subprocess (tests/integration/agent/harness.py) watching the emulator through a kubeconfig.
- :class:`Scheduler`: stands in for kube-scheduler plus the NVIDIA device plugin. It binds a worker pod to a
  node with free GPUs and tells that node's kubelet which GPU UUIDs the pod holds; it frees them when the pod
  is gone. GPUs are handed out when a pod has existed for ``bind_after`` operator passes: a model server's
  containers (which is when the device plugin allocates GPUs) start long after the pod object is created, so
  the planner's next cap tick has annotated the pod by then, as it would in a real cluster.
- :class:`Frontend`: Dynamo's frontend metrics (``dynamo_frontend_*`` with ``model``, ``dynamo_namespace``) fed
  by a traffic thread. Each request's TTFT and ITL come from the *applied* limits read back from the fake
  GPUs the role's ready pods hold, with the physics of DESIGN.md section 4 (prefill slows roughly with
  the clock, decode is flat down to about half of TDP) and queueing from the load per replica.
"""

from __future__ import annotations

import math
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes.client
from prometheus_client import CollectorRegistry, Counter, Histogram

from powerplanner.contract import DGD_LABEL as LABEL_DGD
from powerplanner.contract import POWER_LIMIT_ANNOTATION as CAP_ANNOTATION
from powerplanner.contract import SUB_COMPONENT_LABEL as LABEL_SUBTYPE
from tests.fixtures.k8s import PODS, EmulatedCluster
from tests.fixtures.kubelet import FakeKubelet, PodDevices, short_socket_dir
from tests.fixtures.nvml import FakeGpu, FakeNvml, make_uuid, new_fake_nvml
from tests.integration.agent.harness import AgentProcess, free_port, write_agent_config

MAX_WATTS = 700.0
MIN_WATTS = 200.0


@dataclass
class GpuNode:
    name: str
    nvml: FakeNvml
    kubelet: FakeKubelet
    agent: AgentProcess
    socket_dir: Path
    held: dict[str, list[str]] = field(default_factory=dict)  # pod -> GPU UUIDs

    @classmethod
    def start(cls, name: str, index: int, gpus: int, lib_dir: Path, workdir: Path, api_url: str,
              namespace: str, **agent_overrides: Any) -> GpuNode:
        node_dir = workdir / name
        devices = tuple(FakeGpu(uuid=make_uuid(index * 100 + i), demand_mw=450_000, energy_mj=1_000_000)
                        for i in range(gpus))
        nvml = new_fake_nvml(lib_dir, node_dir / "nvml", devices)
        socket_dir = short_socket_dir()
        kubelet = FakeKubelet(socket_path=socket_dir / "kubelet.sock")
        kubelet.start()
        port = free_port()
        # The agent's defaults (parking on: GPUs no pod holds sit at their minimum, so a GPU handed to a new pod
        # is never briefly at its default, 700 W, before the pod's annotation is applied), with the DGD's
        # namespace allowed, as the chart sets it.
        config = write_agent_config(node_dir, api_url, kubelet.socket_path, port, node_name=name, resync_s=2.0,
                                    allowed_namespaces=[namespace], **agent_overrides)
        agent = AgentProcess(config, nvml, port, node_dir / "agent.log")
        agent.start()
        return cls(name, nvml, kubelet, agent, socket_dir)

    @property
    def metrics_target(self) -> str:
        return f"127.0.0.1:{self.agent.metrics_port}"

    def free(self) -> list[str]:
        used = {u for uuids in self.held.values() for u in uuids}
        return [g.uuid for g in self.nvml.read().gpus if g.uuid not in used]

    def publish(self, namespace: str) -> None:
        self.kubelet.set_pods([PodDevices(namespace, pod, "main", tuple(uuids)) for pod, uuids in self.held.items()])

    def limits_watts(self) -> dict[str, float]:
        return {g.uuid: g.limit_mw / 1000.0 for g in self.nvml.read().gpus}

    def stop(self) -> int | None:
        code = None
        if self.agent.proc is not None and self.agent.proc.poll() is None:
            code = self.agent.terminate()
        self.agent.kill()
        self.kubelet.stop()
        shutil.rmtree(self.socket_dir, ignore_errors=True)
        return code


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
                # Bound first, devices later: the kubelet reports a pod's GPUs only once its containers run.
                self._core.patch_namespaced_pod(name, self.namespace, {"spec": {"nodeName": target.name}})
                target.held[name] = target.free()[:need]
                target.publish(self.namespace)
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
    """Dynamo-shaped frontend metrics; :meth:`run` serves ``rate()`` requests per second until stopped."""

    def __init__(self, model: str, dynamo_namespace: str, view: Callable[[], dict[str, RoleView]],
                 isl: int = 2000, osl: int = 200, base_ttft_s: float = 0.12, base_itl_s: float = 0.02,
                 prefill_rps_per_replica: float = 4.0, decode_rps_per_replica: float = 4.0) -> None:
        self.registry = CollectorRegistry()
        labels = ["model", "dynamo_namespace"]
        r = self.registry
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


class PowerSampler:
    """Samples, every ``period_s``, the sum of the applied limits of the GPUs the worker pods hold."""

    def __init__(self, cluster: EmulatedCluster, scheduler: Scheduler, namespace: str, period_s: float = 0.05):
        self.cluster, self.scheduler, self.namespace, self.period_s = cluster, scheduler, namespace, period_s
        self.phase = "start"
        self.budget_watts = math.inf
        self.samples: list[PowerSample] = []
        self._t0 = time.monotonic()

    def sample(self) -> PowerSample:
        holdings = self.scheduler.holdings()
        limits: dict[str, float] = {}
        for node in self.scheduler.nodes:
            limits.update(node.limits_watts())
        annotation = {p["metadata"]["name"]: (p["metadata"].get("annotations") or {}).get(CAP_ANNOTATION)
                      for p in self.cluster.list_objects(PODS, self.namespace)}
        annotated = {name for name, value in annotation.items() if value}
        total = sum(limits[u] for _node, uuids in holdings.values() for u in uuids)
        known = sum(limits[u] for pod, (_node, uuids) in holdings.items() if pod in annotated for u in uuids)
        s = PowerSample(time.monotonic() - self._t0, self.phase, self.budget_watts, total, known,
                        sum(1 for pod in holdings if pod not in annotated),
                        " ".join(f"{pod}:{[limits[u] for u in uuids]}@{annotation.get(pod)}"
                                 for pod, (_n, uuids) in sorted(holdings.items())))
        self.samples.append(s)
        return s

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.period_s):
            self.sample()
