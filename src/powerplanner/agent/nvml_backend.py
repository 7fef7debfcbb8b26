"""The real GPU backend: NVML through ``nvidia-ml-py`` (imported as ``pynvml``).

Why the v1 setter: ``nvmlDeviceSetPowerManagementLimit`` (milliwatts) reports errors; the ``_v2`` wrapper of
nvidia-ml-py 13.615.71 swallows them. Every set is followed by a read-back, and the value read back is what
the agent reports as applied. NVML error codes become the typed errors of :mod:`powerplanner.agent.gpu`.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from powerplanner.agent.gpu import (
    BackendUnavailable,
    GpuError,
    GpuInfo,
    GpuLost,
    GpuNotFound,
    InvalidArgument,
    NoPermission,
    NotSupported,
    ReadbackMismatch,
)


def _translate(exc: Exception, what: str, uuid: str | None = None) -> GpuError:
    import pynvml

    code = getattr(exc, "value", None)
    text = f"{what}: {exc}"
    mapping: dict[int, type[GpuError]] = {
        pynvml.NVML_ERROR_NO_PERMISSION: NoPermission,
        pynvml.NVML_ERROR_NOT_SUPPORTED: NotSupported,
        pynvml.NVML_ERROR_GPU_IS_LOST: GpuLost,
        pynvml.NVML_ERROR_RESET_REQUIRED: GpuLost,
        pynvml.NVML_ERROR_INVALID_ARGUMENT: InvalidArgument,
        pynvml.NVML_ERROR_NOT_FOUND: GpuNotFound,
        pynvml.NVML_ERROR_UNINITIALIZED: BackendUnavailable,
        pynvml.NVML_ERROR_DRIVER_NOT_LOADED: BackendUnavailable,
        pynvml.NVML_ERROR_LIBRARY_NOT_FOUND: BackendUnavailable,
    }
    cls = mapping.get(code, GpuError) if isinstance(code, int) else GpuError
    return cls(text, uuid)


class NvmlBackend:
    """GPU backend on NVML. Construct it with :meth:`open`; the inventory is read once at start-up."""

    def __init__(self, pynvml_module: Any, gpus: list[GpuInfo], handles: dict[str, Any]) -> None:
        self._nvml = pynvml_module
        self._gpus = gpus
        self._handles = handles
        self._lock = threading.Lock()  # serialises set + read-back per process

    @classmethod
    def open(cls) -> NvmlBackend:
        """Initialise NVML and enumerate the GPUs; raises :class:`BackendUnavailable` with a clear message."""
        import pynvml

        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise BackendUnavailable(
                f"cannot initialise NVML ({exc}); run the agent on a GPU node with the NVIDIA driver "
                "(libnvidia-ml.so.1 on the library path, /dev/nvidia* visible)"
            ) from None
        try:
            gpus: list[GpuInfo] = []
            handles: dict[str, Any] = {}
            for index in range(pynvml.nvmlDeviceGetCount()):
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                uuid = str(pynvml.nvmlDeviceGetUUID(handle))
                min_mw, max_mw = pynvml.nvmlDeviceGetPowerManagementLimitConstraints(handle)
                default_mw = pynvml.nvmlDeviceGetPowerManagementDefaultLimit(handle)
                gpus.append(
                    GpuInfo(
                        index=index,
                        uuid=uuid,
                        name=str(pynvml.nvmlDeviceGetName(handle)),
                        min_limit_watts=min_mw / 1000.0,
                        max_limit_watts=max_mw / 1000.0,
                        default_limit_watts=default_mw / 1000.0,
                    )
                )
                handles[uuid] = handle
        except pynvml.NVMLError as exc:
            pynvml.nvmlShutdown()
            raise BackendUnavailable(f"cannot enumerate the GPUs through NVML ({exc}); check the driver") from None
        return cls(pynvml, gpus, handles)

    def _handle(self, uuid: str) -> Any:
        try:
            return self._handles[uuid]
        except KeyError:
            raise GpuNotFound(f"no GPU {uuid} on this node", uuid) from None

    def _call(self, what: str, uuid: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(self._handle(uuid), *args)
        except self._nvml.NVMLError as exc:
            raise _translate(exc, f"{what} on {uuid}", uuid) from None

    def gpus(self) -> list[GpuInfo]:
        return list(self._gpus)

    def limit_watts(self, uuid: str) -> float:
        return float(self._call("read limit", uuid, self._nvml.nvmlDeviceGetPowerManagementLimit)) / 1000.0

    def enforced_limit_watts(self, uuid: str) -> float:
        return float(self._call("read enforced limit", uuid, self._nvml.nvmlDeviceGetEnforcedPowerLimit)) / 1000.0

    def power_draw_watts(self, uuid: str) -> float:
        return float(self._call("read power", uuid, self._nvml.nvmlDeviceGetPowerUsage)) / 1000.0

    def energy_joules(self, uuid: str) -> float:
        return float(self._call("read energy", uuid, self._nvml.nvmlDeviceGetTotalEnergyConsumption)) / 1000.0

    def running_pids(self, uuid: str) -> list[int]:
        procs = self._call("list processes", uuid, self._nvml.nvmlDeviceGetComputeRunningProcesses)
        return [int(p.pid) for p in procs]

    def parent_uuid(self, device_uuid: str) -> str | None:
        if device_uuid in self._handles:
            return device_uuid
        nvml = self._nvml
        try:
            handle = nvml.nvmlDeviceGetHandleByUUID(device_uuid)
            parent = nvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(handle)
            uuid = str(nvml.nvmlDeviceGetUUID(parent))
        except nvml.NVMLError:
            return None
        return uuid if uuid in self._handles else None

    def set_limit_watts(self, uuid: str, watts: float) -> float:
        milliwatts = round(watts * 1000)
        with self._lock:
            self._call("set power limit", uuid, self._nvml.nvmlDeviceSetPowerManagementLimit, milliwatts)
            readback_mw = int(self._call("read limit", uuid, self._nvml.nvmlDeviceGetPowerManagementLimit))
        if readback_mw != milliwatts:
            raise ReadbackMismatch(
                f"set power limit on {uuid}: asked {milliwatts} mW, read back {readback_mw} mW", uuid
            )
        return readback_mw / 1000.0

    def close(self) -> None:
        with contextlib.suppress(self._nvml.NVMLError):
            self._nvml.nvmlShutdown()
