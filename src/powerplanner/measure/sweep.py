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
    """One cap of the sweep: the limit read back, the load's result, the energy the GPUs took (summed), how many
    GPUs, and the idle draw per GPU measured before the sweep (None when not measured). Draws are per GPU."""

    cap_watts: float
    load: LoadResult
    energy_j: float
    duration_s: float
    idle_watts: float | None = None
    gpus: int = 1

    @property
    def mean_draw_watts(self) -> float:
        return self.energy_j / self.duration_s / self.gpus if self.duration_s > 0 else 0.0

    @property
    def busy_draw_watts(self) -> float:
        """The draw while requests were in flight: the idle gaps' energy (at the idle draw) taken out; the mean
        draw when the idle draw is unknown."""
        busy = min(self.load.busy_s, self.duration_s)
        if self.idle_watts is None or busy <= 0:
            return self.mean_draw_watts
        return (self.energy_j / self.gpus - self.idle_watts * (self.duration_s - busy)) / busy

    @property
    def energy_per_token_j(self) -> float:
        return self.energy_j / self.load.output_tokens if self.load.output_tokens else float("inf")


def cap_grid(gpus: Sequence[GpuInfo], caps_watts: Sequence[float] | None, levels: int) -> tuple[float, ...]:
    """The caps given (checked against the range every GPU accepts), else ``levels`` evenly spaced from its min
    to its max, ascending."""
    low, high = max(g.min_limit_watts for g in gpus), min(g.max_limit_watts for g in gpus)
    names = ", ".join(str(g.index) for g in gpus)
    if low > high:
        raise MeasureError(f"GPUs {names} accept no common power limit; measure them one at a time")
    if caps_watts:
        bad = [c for c in caps_watts if not (low <= c <= high)]
        if bad:
            raise MeasureError(f"caps {', '.join(f'{c:g}' for c in bad)} W are outside the range of GPU {names} "
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
    """Runs the sweep on ``gpus`` of ``backend``, all at the same cap (one worker's GPUs: a TP group runs at the
    pace of its slowest GPU). ``run_load`` drives the endpoint once (blocking); ``on_cap(index, cap)`` is called
    after each cap is set, before its load (a progress line, or a test hook)."""

    def __init__(self, backend: GpuBackend, gpus: Sequence[GpuInfo], run_load: Callable[[], LoadResult],
                 on_cap: Callable[[int, float], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self._backend = backend
        self._gpus = tuple(gpus)
        self._run_load = run_load
        self._on_cap = on_cap
        self._clock = clock
        self._sleep = sleep
        self._idle_watts: float | None = None

    def _energy_j(self) -> float:
        return sum(self._backend.energy_joules(g.uuid) for g in self._gpus)

    def idle_draw_watts(self, window_s: float) -> float:
        """The draw per GPU over ``window_s`` with no load from us (the endpoint must be idle of other traffic)."""
        try:
            e0, t0 = self._energy_j(), self._clock()
            self._sleep(window_s)
            e1, t1 = self._energy_j(), self._clock()
        except GpuError as exc:
            raise gpu_failure(exc, "read the energy counters") from None
        self._idle_watts = (e1 - e0) / (t1 - t0) / len(self._gpus) if t1 > t0 else None
        return self._idle_watts if self._idle_watts is not None else 0.0

    def run(self, caps_watts: Sequence[float]) -> list[CapMeasurement]:
        """Measure every cap; the original limits are set back in ``finally`` (KeyboardInterrupt included)."""
        try:
            originals = {g.uuid: self._backend.limit_watts(g.uuid) for g in self._gpus}
        except GpuError as exc:
            raise gpu_failure(exc, "read the power limits") from None
        try:
            return [self._one(i, cap) for i, cap in enumerate(caps_watts)]
        except GpuError as exc:
            raise gpu_failure(exc, "mid-sweep") from None
        finally:
            self._restore(originals)

    def _one(self, index: int, cap_watts: float) -> CapMeasurement:
        applied = min(self._backend.set_limit_watts(g.uuid, cap_watts) for g in self._gpus)
        if self._on_cap is not None:
            self._on_cap(index, applied)
        e0, t0 = self._energy_j(), self._clock()
        load = self._run_load()
        e1, t1 = self._energy_j(), self._clock()
        return CapMeasurement(applied, load, e1 - e0, t1 - t0, self._idle_watts, len(self._gpus))

    def _restore(self, originals: dict[str, float]) -> None:
        """Set every original limit back unless it is in force (a refused first set changed nothing, and setting
        it again would fail the same way and read as if the GPU had been left capped); every GPU is tried."""
        failed: list[str] = []
        for gpu in self._gpus:
            original = originals[gpu.uuid]
            try:
                if self._backend.limit_watts(gpu.uuid) == original:
                    continue
            except GpuError:
                pass  # cannot tell: set it
            try:
                self._backend.set_limit_watts(gpu.uuid, original)
            except GpuError as exc:
                failed.append(f"GPU {gpu.index} to {original:g} W ({exc})")
        if failed:
            raise MeasureError(f"could not restore the power limit of {'; '.join(failed)}; set it back by hand "
                               "before serving traffic")
