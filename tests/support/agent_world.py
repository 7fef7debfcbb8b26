"""The agent's unit tests' world: one reconciler over simulated GPUs, a pod table and a static pod->GPU
mapper, so a test drives the agent's decisions without NVML, a kubelet or an API server."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from powerplanner.agent.exporter import AgentMetrics
from powerplanner.agent.gpu import GpuInfo
from powerplanner.agent.mapping import PodSnapshot
from powerplanner.agent.policy import AgentPolicy, Holding, PodInfo
from powerplanner.agent.reconciler import Reconciler
from powerplanner.agent.sim_backend import SimGpuBackend, sim_gpus
from powerplanner.agent.state import StateStore

# Most reconciler tests are about caps and releases: namespace "llm" allowed, parking off, so a GPU without a
# cap goes back to its original limit (700 W). Tests of parking (the default) say park=True.
RELEASE_POLICY = AgentPolicy(allowed_namespaces=frozenset({"llm"}), park=False)


def agent_policy(**changes: Any) -> AgentPolicy:
    """:data:`RELEASE_POLICY` with ``changes``."""
    return replace(RELEASE_POLICY, **changes)


@dataclass
class StaticMapper:
    """The pod->GPU table the test sets."""

    table: list[Holding] = field(default_factory=list)

    def holdings(self, pods: PodSnapshot, gpus: list[GpuInfo]) -> list[Holding]:
        return list(self.table)


@dataclass
class World:
    backend: SimGpuBackend
    mapper: StaticMapper
    pods: dict[tuple[str, str], PodInfo]
    state: StateStore
    metrics: AgentMetrics
    reconciler: Reconciler

    def uuid(self, index: int) -> str:
        return self.backend.gpus()[index].uuid

    def put_pod(self, name: str, gpus: list[int], watts: str | None, namespace: str = "llm",
                revision: int | None = None, dgd_worker: bool = True) -> None:
        """A pod holding ``gpus``; a Dynamo worker (DGD label) unless ``dgd_worker=False``."""
        self.pods[(namespace, name)] = PodInfo(namespace, name, uid=f"uid-{namespace}-{name}", annotation=watts,
                                               revision=revision, dgd_worker=dgd_worker)
        self.mapper.table = [h for h in self.mapper.table if (h.namespace, h.pod) != (namespace, name)]
        self.mapper.table += [Holding(self.uuid(i), namespace, name, "main") for i in gpus]

    def delete_pod(self, name: str, namespace: str = "llm") -> None:
        self.pods.pop((namespace, name), None)
        self.mapper.table = [h for h in self.mapper.table if (h.namespace, h.pod) != (namespace, name)]

    def limits(self) -> list[float]:
        return [self.backend.limit_watts(g.uuid) for g in self.backend.gpus()]

    def counter(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, labels)
        return value or 0.0

    def restart(self, policy: AgentPolicy | None = None, dry_run: bool = False) -> World:
        """A new agent process over the same GPUs, pods and state file."""
        return make_world(self.state.path, policy or RELEASE_POLICY, backend=self.backend, mapper=self.mapper,
                          pods=self.pods, dry_run=dry_run)


def make_world(
    state_path: Path,
    policy: AgentPolicy | None = None,
    gpu_count: int = 4,
    backend: SimGpuBackend | None = None,
    mapper: StaticMapper | None = None,
    pods: dict[tuple[str, str], PodInfo] | None = None,
    dry_run: bool = False,
    wall_clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = lambda _s: None,
) -> World:
    backend = backend or SimGpuBackend(sim_gpus(gpu_count))
    mapper = mapper or StaticMapper()
    pods = pods if pods is not None else {}
    state = StateStore(state_path, "node-a", backend.gpus())
    metrics = AgentMetrics(backend)
    snapshot = pods
    reconciler = Reconciler(backend, mapper, lambda: dict(snapshot), state, metrics, policy or RELEASE_POLICY,
                            dry_run=dry_run, sleep=sleep, wall_clock=wall_clock)
    return World(backend, mapper, pods, state, metrics, reconciler)
