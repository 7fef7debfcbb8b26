"""The agent's view of a node's GPUs: the :class:`GpuBackend` protocol, its values and its typed errors.

The reconciler only ever talks to this protocol. The real implementation is NVML
(:mod:`powerplanner.agent.nvml_backend`); the simulator, the demo and unit tests use the in-memory
:mod:`powerplanner.agent.sim_backend`. Errors are typed so that the reconciler can count them by reason
(``powerplanner_agent_apply_failures_total{reason}``) without knowing NVML's numeric codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class GpuInfo:
    """One physical GPU and the power-limit range its driver accepts (watts)."""

    index: int
    uuid: str
    name: str
    min_limit_watts: float
    max_limit_watts: float
    default_limit_watts: float


class GpuError(Exception):
    """A GPU operation failed. ``reason`` is a short, stable label for metrics."""

    reason: str = "error"

    def __init__(self, message: str, uuid: str | None = None) -> None:
        super().__init__(message)
        self.uuid = uuid


class NoPermission(GpuError):
    """The driver refused the change (setting a power limit needs root / CAP_SYS_ADMIN)."""

    reason = "no_permission"


class NotSupported(GpuError):
    """This GPU (or a MIG slice of it) does not support the operation."""

    reason = "not_supported"


class GpuLost(GpuError):
    """The GPU fell off the bus or needs a reset; the agent keeps going with the other GPUs."""

    reason = "gpu_lost"


class InvalidArgument(GpuError):
    """The driver rejected a value (e.g. a limit outside the constraints) or a stale handle."""

    reason = "invalid_argument"


class GpuNotFound(GpuError):
    """No GPU with that UUID on this node."""

    reason = "not_found"


class ReadbackMismatch(GpuError):
    """The limit read back after a set differs from the one requested."""

    reason = "readback_mismatch"


class BackendUnavailable(GpuError):
    """The GPU library could not be loaded or initialised (no driver, no devices)."""

    reason = "unavailable"


@runtime_checkable
class GpuBackend(Protocol):
    """What the agent needs from a GPU library. All power values in watts, energy in joules."""

    def gpus(self) -> list[GpuInfo]:
        """The node's physical GPUs, in index order."""
        ...

    def limit_watts(self, uuid: str) -> float:
        """The power limit currently configured."""
        ...

    def enforced_limit_watts(self, uuid: str) -> float:
        """The limit the GPU actually enforces (may be lower than the configured one)."""
        ...

    def power_draw_watts(self, uuid: str) -> float:
        ...

    def energy_joules(self, uuid: str) -> float:
        """Total energy since the driver was loaded (a monotonic counter)."""
        ...

    def running_pids(self, uuid: str) -> list[int]:
        """Process ids of the compute processes on the GPU (host PID namespace)."""
        ...

    def parent_uuid(self, device_uuid: str) -> str | None:
        """The physical GPU of a MIG device UUID (or of a GPU UUID: itself); None if unknown."""
        ...

    def set_limit_watts(self, uuid: str, watts: float) -> float:
        """Set the power limit, read it back and return the value read back."""
        ...

    def close(self) -> None:
        ...
