"""Fallback pod -> GPU mapping: NVML's compute processes per GPU, then each process's cgroup path.

Used when the kubelet PodResources socket is absent. The pod UID appears in the cgroup path in every
common layout, which is what is parsed here:

- cgroup v2, systemd driver:
  ``0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_with_>.slice/cri-containerd-<id>.scope``
- cgroup v1, cgroupfs driver: ``11:memory:/kubepods/burstable/pod<uid>/<container id>``
- guaranteed QoS drops the class: ``/kubepods/pod<uid>/...`` or ``kubepods-pod<uid>.slice``

The agent needs the host PID namespace for the PIDs to be visible (``proc_root`` is configurable for tests
and for a host /proc mounted elsewhere).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from powerplanner.agent.gpu import GpuBackend, GpuError, GpuInfo
from powerplanner.agent.mapping import PodSnapshot
from powerplanner.agent.policy import Holding

_LOG = logging.getLogger("powerplanner.agent.cgroup")

_POD_UID = re.compile(
    r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})(?:\.slice)?(?:/|$)", re.ASCII
)
_CONTAINER_ID = re.compile(r"(?:^|/)(?:[a-z-]+-)?([0-9a-f]{64})(?:\.scope)?$", re.ASCII)


def parse_cgroup(text: str) -> tuple[str, str] | None:
    """(pod UID, container id or "") from the contents of ``/proc/<pid>/cgroup``; None for non-pod processes."""
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        path = parts[2].strip()
        match = _POD_UID.search(path)
        if match is None:
            continue
        uid = match.group(1).replace("_", "-")
        container = _CONTAINER_ID.search(path)
        return uid, container.group(1) if container else ""
    return None


class CgroupMapper:
    """Maps GPUs to pods through the PIDs NVML reports and ``<proc_root>/<pid>/cgroup``."""

    def __init__(self, backend: GpuBackend, proc_root: str | Path = "/proc") -> None:
        self._backend = backend
        self._proc = Path(proc_root)

    def holdings(self, pods: PodSnapshot, gpus: list[GpuInfo]) -> list[Holding]:
        by_uid = {pod.uid: pod for pod in pods.values() if pod.uid}
        result: set[Holding] = set()
        for gpu in gpus:
            try:
                pids = self._backend.running_pids(gpu.uuid)
            except GpuError as exc:
                _LOG.warning("cannot list processes on GPU %s: %s", gpu.uuid, exc)
                continue
            for pid in pids:
                try:
                    text = (self._proc / str(pid) / "cgroup").read_text(encoding="utf-8", errors="replace")
                except OSError:
                    continue  # the process exited, or is not in our PID namespace
                parsed = parse_cgroup(text)
                if parsed is None:
                    continue
                uid, container_id = parsed
                pod = by_uid.get(uid)
                if pod is None:
                    continue
                container = next((name for name, cid in pod.containers if cid and cid == container_id), "")
                result.add(Holding(gpu.uuid, pod.namespace, pod.name, container))
        return sorted(result, key=lambda h: (h.gpu_uuid, h.namespace, h.pod, h.container))
