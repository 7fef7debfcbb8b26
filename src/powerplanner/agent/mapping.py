"""Which pod holds which GPU: the :class:`PodGpuMapper` protocol, device-id resolution and the fallback chain.

The kubelet's PodResources API is the source of truth (:mod:`powerplanner.agent.podresources`): it says
which device ids the device plugin gave each container. Device ids come in several shapes, all resolved
to the physical GPU's UUID here: ``GPU-<uuid>``; an index (``"3"``, the plugin's ``index`` strategy);
``<id>::<n>`` under time-slicing; ``MIG-<uuid>`` (asked to the GPU backend: MIG handle -> parent); and the
old ``MIG-GPU-<uuid>/<gi>/<ci>`` form. When the socket is absent, NVML's process list plus each process's
cgroup path is the fallback (:mod:`powerplanner.agent.cgroup`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

from powerplanner.agent.gpu import GpuBackend, GpuInfo
from powerplanner.agent.policy import Holding, PodInfo

_LOG = logging.getLogger("powerplanner.agent.mapping")

PodSnapshot = Mapping[tuple[str, str], PodInfo]


class MappingError(Exception):
    """The pod -> GPU source could not answer (socket missing, timeout, RPC error)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class PodGpuMapper(Protocol):
    def holdings(self, pods: PodSnapshot, gpus: list[GpuInfo]) -> list[Holding]:
        """Every (GPU, pod, container) pair currently on the node."""
        ...


def resolve_device_id(device_id: str, gpus: list[GpuInfo], backend: GpuBackend) -> str | None:
    """The physical GPU UUID behind a device plugin id, or None when it names no GPU of this node."""
    base = device_id.split("::", 1)[0].strip()
    by_uuid = {g.uuid: g for g in gpus}
    if base in by_uuid:
        return base
    if base.isascii() and base.isdigit():
        for gpu in gpus:
            if gpu.index == int(base):
                return gpu.uuid
        return None
    if base.startswith("MIG-GPU-"):  # pre-R470 MIG ids: MIG-GPU-<parent uuid>/<gi>/<ci>
        parent = base[len("MIG-") :].split("/", 1)[0]
        return parent if parent in by_uuid else None
    if base.startswith("MIG-"):
        return backend.parent_uuid(base)
    return None


class FallbackMapper:
    """PodResources first; if its socket is absent, the cgroup mapper; if it errors, the last good answer.

    Why keep the last answer on errors: a kubelet that hangs for a moment must not make every GPU look
    free (which would release or park GPUs under running pods). The last answer is filtered to pods still
    on the node, so deleted pods still release their GPUs.
    """

    def __init__(
        self,
        primary: PodGpuMapper,
        fallback: PodGpuMapper,
        socket_path: str | Path,
        on_failure: Callable[[MappingError], None] = lambda error: None,
    ) -> None:
        self._primary = primary
        self._fallback = fallback
        self._socket = Path(socket_path)
        self._on_failure = on_failure
        self._last: list[Holding] | None = None
        self.last_source = "none"
        self.last_error: MappingError | None = None

    def holdings(self, pods: PodSnapshot, gpus: list[GpuInfo]) -> list[Holding]:
        self.last_error = None
        if not self._socket.exists():
            self.last_source = "cgroup"
            return self._fallback.holdings(pods, gpus)
        try:
            result = self._primary.holdings(pods, gpus)
        except MappingError as exc:
            self.last_error = exc
            self._on_failure(exc)
            if self._last is not None:
                _LOG.warning("%s; keeping the last pod->GPU mapping for pods still on the node", exc)
                self.last_source = "podresources-stale"
                return [h for h in self._last if (h.namespace, h.pod) in pods]
            _LOG.warning("%s; mapping pods to GPUs through NVML processes and cgroups instead", exc)
            self.last_source = "cgroup"
            return self._fallback.holdings(pods, gpus)
        self._last = result
        self.last_source = "podresources"
        return result
