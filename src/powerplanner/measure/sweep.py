"""The cap sweep: for each cap of a grid, set it, run the fixed load, read the energy counter; then restore.

Measure-then-choose as Zeus (ml.energy) does for training: every power limit of the grid is run and measured
(time and NVML energy), and the choice is left to what reads the result (here: the profile fit, then the
planner). The original limit is restored however the sweep ends (normal exit, Ctrl-C, an NVML or endpoint
error): a node left at a low cap would serve its next traffic slowly with nothing saying why. The GPU is reached
only through the agent's :class:`~powerplanner.agent.gpu.GpuBackend` (NVML in production).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from powerplanner.agent.gpu import GpuBackend, GpuError, GpuInfo, NoPermission
from powerplanner.errors import MeasureError
from powerplanner.measure.load import LoadResult


@dataclass(frozen=True)
class CapMeasurement:
    """One cap of the sweep: the limit read back, the load's result, the energy it took, and the idle draw
    measured before the sweep (None when not measured)."""

    cap_watts: float
    load: LoadResult
    energy_j: float
    duration_s: float
    idle_watts: float | None = None

    @property
    def mean_draw_watts(self) -> float:
        return self.energy_j / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def busy_draw_watts(self) -> float:
        """The draw while requests were in flight: the idle gaps' energy (at the idle draw) taken out; the mean
        draw when the idle draw is unknown."""
        busy = min(self.load.busy_s, self.duration_s)
        if self.idle_watts is None or busy <= 0:
            return self.mean_draw_watts
        return (self.energy_j - self.idle_watts * (self.duration_s - busy)) / busy

    @property
    def energy_per_token_j(self) -> float:
        return self.energy_j / self.load.output_tokens if self.load.output_tokens else float("inf")


def cap_grid(gpu: GpuInfo, caps_watts: Sequence[float] | None, levels: int) -> tuple[float, ...]:
    """The caps given (checked against the GPU's range), else ``levels`` evenly spaced from min to max, ascending."""
    low, high = gpu.min_limit_watts, gpu.max_limit_watts
    if caps_watts:
        bad = [c for c in caps_watts if not (low <= c <= high)]
        if bad:
            raise MeasureError(f"caps {', '.join(f'{c:g}' for c in bad)} W are outside GPU {gpu.index}'s range "
                               f"[{low:g}, {high:g}] W; choose caps in that range")
        return tuple(sorted(set(caps_watts)))
    if levels < 2:
        raise MeasureError(f"--levels {levels}: a sweep needs at least 2 caps; give --levels 2 or more")
    step = (high - low) / (levels - 1)
    return (*(float(round(low + i * step)) for i in range(levels - 1)), high)


def gpu_failure(exc: GpuError, what: str) -> MeasureError:
    """A GPU error as one line naming the fix (setting a limit needs root or CAP_SYS_ADMIN)."""
    if isinstance(exc, NoPermission):
        return MeasureError(f"{what}: NVML refused ({exc}); setting a power limit needs root or CAP_SYS_ADMIN: "
                            "run as root, or try --dry-run, which only reads")
    return MeasureError(f"{what}: {exc}; check the GPU and the driver (nvidia-ml-py, libnvidia-ml.so.1)")


class CapSweep:
    """Runs the sweep on one GPU of ``backend``. ``run_load`` drives the endpoint once (blocking);
    ``on_cap(index, cap)`` is called after each cap is set, before its load (a progress line, or a test hook)."""

    def __init__(self, backend: GpuBackend, gpu: GpuInfo, run_load: Callable[[], LoadResult],
                 on_cap: Callable[[int, float], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self._backend = backend
        self._gpu = gpu
        self._run_load = run_load
        self._on_cap = on_cap
        self._clock = clock
        self._sleep = sleep
        self._idle_watts: float | None = None

    def idle_draw_watts(self, window_s: float) -> float:
        """The draw over ``window_s`` with no load from us (the endpoint must be idle of other traffic)."""
        try:
            e0, t0 = self._backend.energy_joules(self._gpu.uuid), self._clock()
            self._sleep(window_s)
            e1, t1 = self._backend.energy_joules(self._gpu.uuid), self._clock()
        except GpuError as exc:
            raise gpu_failure(exc, f"read the energy counter of GPU {self._gpu.index}") from None
        self._idle_watts = (e1 - e0) / (t1 - t0) if t1 > t0 else None
        return self._idle_watts if self._idle_watts is not None else 0.0

    def run(self, caps_watts: Sequence[float]) -> list[CapMeasurement]:
        """Measure every cap; the original limit is set back in ``finally`` (KeyboardInterrupt included)."""
        uuid = self._gpu.uuid
        try:
            original = self._backend.limit_watts(uuid)
        except GpuError as exc:
            raise gpu_failure(exc, f"read the power limit of GPU {self._gpu.index}") from None
        try:
            return [self._one(i, cap) for i, cap in enumerate(caps_watts)]
        except GpuError as exc:
            raise gpu_failure(exc, f"GPU {self._gpu.index} mid-sweep") from None
        finally:
            self._restore(original)

    def _one(self, index: int, cap_watts: float) -> CapMeasurement:
        applied = self._backend.set_limit_watts(self._gpu.uuid, cap_watts)
        if self._on_cap is not None:
            self._on_cap(index, applied)
        e0, t0 = self._backend.energy_joules(self._gpu.uuid), self._clock()
        load = self._run_load()
        e1, t1 = self._backend.energy_joules(self._gpu.uuid), self._clock()
        return CapMeasurement(applied, load, e1 - e0, t1 - t0, self._idle_watts)

    def _restore(self, original_watts: float) -> None:
        """Set the original limit back unless it is in force (a refused first set changed nothing, and setting
        it again would fail the same way and read as if the GPU had been left capped)."""
        try:
            if self._backend.limit_watts(self._gpu.uuid) == original_watts:
                return
        except GpuError:
            pass  # cannot tell: set it
        try:
            self._backend.set_limit_watts(self._gpu.uuid, original_watts)
        except GpuError as exc:
            raise MeasureError(f"could not restore GPU {self._gpu.index}'s power limit to {original_watts:g} W "
                               f"({exc}); set it back by hand before serving traffic") from None
