"""An in-memory GPU backend that behaves like NVML for the simulator, the demo and fast unit tests.

It keeps the same contract as the NVML backend: limits outside a GPU's constraints are refused with
:class:`InvalidArgument`, sets are read back, and faults can be injected per GPU and operation
(``fail(uuid, "set", NoPermission)``) or a GPU marked lost. Thread-safe, because the agent's exporter
reads it from the scrape thread while the reconciler writes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from powerplanner.agent.gpu import GpuError, GpuInfo, GpuLost, GpuNotFound, InvalidArgument
from powerplanner.model.gpu import gpu_by_name


@dataclass
class SimGpu:
    """Mutable state of one simulated GPU."""

    info: GpuInfo
    limit_watts: float
    demand_watts: float = 100.0
    energy_joules: float = 0.0
    pids: list[int] = field(default_factory=list)
    mig_uuids: list[str] = field(default_factory=list)
    lost: bool = False


def sim_gpus(count: int, gpu: str = "H100-SXM") -> list[SimGpu]:
    """``count`` identical GPUs of type ``gpu`` (the GPU table in model/gpu.py) at their default limit, with
    stable fake UUIDs."""
    spec = gpu_by_name(gpu)
    return [
        SimGpu(
            info=GpuInfo(i, f"GPU-sim-{i:04d}", spec.name, spec.min_limit_watts, spec.max_limit_watts,
                         spec.default_limit_watts),
            limit_watts=spec.default_limit_watts,
        )
        for i in range(count)
    ]


class SimGpuBackend:
    """A :class:`~powerplanner.agent.gpu.GpuBackend` over :class:`SimGpu` records."""

    def __init__(self, gpus: Iterable[SimGpu]) -> None:
        self._gpus = {g.info.uuid: g for g in gpus}
        self._lock = threading.Lock()
        self._faults: dict[tuple[str, str], list[type[GpuError]]] = {}
        self.set_calls: list[tuple[str, float]] = []

    def fail(self, uuid: str, operation: str, error: type[GpuError], times: int = 1) -> None:
        """Make the next ``times`` calls of ``operation`` ("set", "read", "pids") on ``uuid`` raise ``error``."""
        with self._lock:
            self._faults.setdefault((uuid, operation), []).extend([error] * times)

    def pending_faults(self) -> int:
        """How many injected faults have not been raised yet (tests bound their retries with it)."""
        with self._lock:
            return sum(len(queue) for queue in self._faults.values())

    def lose(self, uuid: str, lost: bool = True) -> None:
        with self._lock:
            self._gpu(uuid).lost = lost

    def set_pids(self, uuid: str, pids: list[int]) -> None:
        with self._lock:
            self._gpu(uuid).pids = list(pids)

    def _gpu(self, uuid: str) -> SimGpu:
        try:
            return self._gpus[uuid]
        except KeyError:
            raise GpuNotFound(f"no GPU {uuid}", uuid) from None

    def _check(self, uuid: str, operation: str) -> SimGpu:
        gpu = self._gpu(uuid)
        if gpu.lost:
            raise GpuLost(f"{operation} on {uuid}: GPU is lost", uuid)
        queue = self._faults.get((uuid, operation))
        if queue:
            raise queue.pop(0)(f"{operation} on {uuid}: injected fault", uuid)
        return gpu

    def gpus(self) -> list[GpuInfo]:
        return [g.info for g in sorted(self._gpus.values(), key=lambda g: g.info.index)]

    def limit_watts(self, uuid: str) -> float:
        with self._lock:
            return self._check(uuid, "read").limit_watts

    def enforced_limit_watts(self, uuid: str) -> float:
        return self.limit_watts(uuid)

    def power_draw_watts(self, uuid: str) -> float:
        with self._lock:
            gpu = self._check(uuid, "read")
            return min(gpu.demand_watts, gpu.limit_watts)

    def energy_joules(self, uuid: str) -> float:
        with self._lock:
            return self._check(uuid, "read").energy_joules

    def running_pids(self, uuid: str) -> list[int]:
        with self._lock:
            return list(self._check(uuid, "pids").pids)

    def parent_uuid(self, device_uuid: str) -> str | None:
        with self._lock:
            if device_uuid in self._gpus:
                return device_uuid
            for gpu in self._gpus.values():
                if device_uuid in gpu.mig_uuids:
                    return gpu.info.uuid
        return None

    def set_limit_watts(self, uuid: str, watts: float) -> float:
        with self._lock:
            gpu = self._check(uuid, "set")
            if not gpu.info.min_limit_watts <= watts <= gpu.info.max_limit_watts:
                raise InvalidArgument(
                    f"set power limit on {uuid}: {watts} W outside "
                    f"[{gpu.info.min_limit_watts}, {gpu.info.max_limit_watts}] W",
                    uuid,
                )
            gpu.limit_watts = float(round(watts * 1000) / 1000)
            self.set_calls.append((uuid, gpu.limit_watts))
            return gpu.limit_watts

    def advance(self, seconds: float) -> None:
        """Integrate energy over ``seconds`` at the current draw (for the simulator and the demo)."""
        with self._lock:
            for gpu in self._gpus.values():
                gpu.energy_joules += min(gpu.demand_watts, gpu.limit_watts) * seconds

    def close(self) -> None:
        return None
