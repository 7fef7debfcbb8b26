"""Pod -> GPU mapping from the kubelet PodResources API (``v1.PodResourcesLister/List`` on a unix socket)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from powerplanner.agent.gpu import GpuBackend, GpuInfo
from powerplanner.agent.mapping import MappingError, PodSnapshot, resolve_device_id
from powerplanner.agent.policy import Holding

_LOG = logging.getLogger("powerplanner.agent.podresources")


def _resource_matches(resource_name: str, wanted: str) -> bool:
    """``nvidia.com/gpu`` and, for the MIG "mixed" strategy, ``nvidia.com/mig-<profile>``."""
    prefix = wanted.rsplit("/", 1)[0]
    return resource_name == wanted or resource_name.startswith(f"{prefix}/mig-")


class PodResourcesMapper:
    """Asks the kubelet which device ids each container holds; one short-lived channel per call.

    A fresh channel per call keeps a restarted kubelet (new socket inode) from wedging a cached channel;
    a List on a unix socket costs well under a millisecond to connect.
    """

    def __init__(self, socket_path: str | Path, backend: GpuBackend, timeout_s: float, resource_name: str) -> None:
        self._socket = Path(socket_path)
        self._backend = backend
        self._timeout_s = timeout_s
        self._resource = resource_name

    def list_devices(self) -> list[tuple[str, str, str, list[str]]]:
        """(namespace, pod, container, device ids) for the configured resource, as the kubelet reports them."""
        import grpc

        from powerplanner.agent.proto_stubs import load_podresources_stubs

        stubs = load_podresources_stubs()
        try:
            with grpc.insecure_channel(f"unix://{self._socket}") as channel:
                stub = stubs.pb2_grpc.PodResourcesListerStub(channel)
                reply: Any = stub.List(stubs.pb2.ListPodResourcesRequest(), timeout=self._timeout_s)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            reason = "kubelet_timeout" if code == grpc.StatusCode.DEADLINE_EXCEEDED else "kubelet_error"
            detail = code.name if code is not None else str(exc)
            raise MappingError(f"kubelet PodResources List on {self._socket} failed ({detail})", reason) from None
        out = []
        for pod in reply.pod_resources:
            for container in pod.containers:
                ids = [
                    device_id
                    for devices in container.devices
                    if _resource_matches(devices.resource_name, self._resource)
                    for device_id in devices.device_ids
                ]
                if ids:
                    out.append((pod.namespace, pod.name, container.name, ids))
        return out

    def holdings(self, pods: PodSnapshot, gpus: list[GpuInfo]) -> list[Holding]:
        result = []
        for namespace, pod, container, ids in self.list_devices():
            for device_id in ids:
                uuid = resolve_device_id(device_id, gpus, self._backend)
                if uuid is None:
                    _LOG.warning("pod %s/%s holds device %r that is no GPU of this node", namespace, pod, device_id)
                    continue
                result.append(Holding(uuid, namespace, pod, container))
        return sorted(set(result), key=lambda h: (h.gpu_uuid, h.namespace, h.pod, h.container))
