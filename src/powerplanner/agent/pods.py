"""The pods on this node, kept current by a Kubernetes list + watch in a background thread.

Why list-then-watch with a client-side filter: the field selector ``spec.nodeName=<node>`` keeps the
API server's work small, but an emulator (and a misbehaving proxy) may ignore it, so every object is
checked again here. Any watch failure (dropped connection, 5xx, 410 Gone, read timeout at the resync
period) leads to a fresh list, with exponential backoff while the API is unreachable. Every change
calls ``on_change`` so the reconciler reacts at once rather than at the next resync.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from powerplanner.agent.policy import POWER_LIMIT_ANNOTATION, PodInfo

_LOG = logging.getLogger("powerplanner.agent.pods")

_TERMINAL_PHASES = ("Succeeded", "Failed")


def _container_id(raw: str | None) -> str:
    """``containerd://<id>`` -> ``<id>``."""
    return (raw or "").rpartition("://")[2]


def pod_info(pod: Any) -> PodInfo:
    """A :class:`PodInfo` from a ``kubernetes`` V1Pod."""
    meta = pod.metadata
    annotations = meta.annotations or {}
    statuses = (pod.status.container_statuses if pod.status else None) or []
    return PodInfo(
        namespace=meta.namespace or "",
        name=meta.name or "",
        uid=meta.uid or "",
        annotation=annotations.get(POWER_LIMIT_ANNOTATION),
        containers=tuple((s.name, _container_id(s.container_id)) for s in statuses),
    )


def _on_node(pod: Any, node_name: str) -> bool:
    spec_node = pod.spec.node_name if pod.spec else None
    phase = pod.status.phase if pod.status else None
    return spec_node == node_name and phase not in _TERMINAL_PHASES


class PodWatcher:
    """Maintains ``{(namespace, name): PodInfo}`` for the pods scheduled on ``node_name``."""

    def __init__(
        self,
        core_api: Any,
        node_name: str,
        on_change: Callable[[], None],
        resync_s: float,
        on_restart: Callable[[str], None] = lambda reason: None,
        request_timeout_s: float = 10.0,
        max_backoff_s: float = 5.0,
    ) -> None:
        self._api = core_api
        self._node = node_name
        self._on_change = on_change
        self._on_restart = on_restart
        self._resync_s = resync_s
        self._request_timeout_s = request_timeout_s
        self._max_backoff_s = max_backoff_s
        self._lock = threading.Lock()
        self._pods: dict[tuple[str, str], PodInfo] = {}
        self.synced = threading.Event()
        self._thread: threading.Thread | None = None

    def snapshot(self) -> dict[tuple[str, str], PodInfo]:
        with self._lock:
            return dict(self._pods)

    def start(self, stop: threading.Event) -> None:
        self._thread = threading.Thread(target=self.run, args=(stop,), name="pod-watch", daemon=True)
        self._thread.start()

    def _selector(self) -> str:
        return f"spec.nodeName={self._node}"

    def _list(self) -> str:
        reply = self._api.list_pod_for_all_namespaces(
            field_selector=self._selector(), _request_timeout=self._request_timeout_s
        )
        pods = {}
        for pod in reply.items:
            if _on_node(pod, self._node):
                info = pod_info(pod)
                pods[info.key] = info
        with self._lock:
            changed = pods != self._pods
            self._pods = pods
        self.synced.set()
        if changed:
            self._on_change()
        return str(reply.metadata.resource_version or "") if reply.metadata else ""

    def _apply_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        pod = event.get("object")
        if pod is None or not hasattr(pod, "metadata"):
            return
        info = pod_info(pod)
        with self._lock:
            before = self._pods.get(info.key)
            if kind == "DELETED" or not _on_node(pod, self._node):
                self._pods.pop(info.key, None)
                changed = before is not None
            else:
                self._pods[info.key] = info
                changed = before != info
        if changed:
            self._on_change()

    def _watch(self, resource_version: str, stop: threading.Event) -> str:
        """Stream events until the stream ends or fails; returns the reason for the restart."""
        from kubernetes import watch

        watcher = watch.Watch()
        kwargs: dict[str, Any] = {
            "field_selector": self._selector(),
            "timeout_seconds": max(1, int(self._resync_s)),
            "_request_timeout": (self._request_timeout_s, self._resync_s + self._request_timeout_s),
        }
        if resource_version:
            kwargs["resource_version"] = resource_version
        try:
            for event in watcher.stream(self._api.list_pod_for_all_namespaces, **kwargs):
                if stop.is_set():
                    return "stopped"
                if event.get("type") == "ERROR":
                    raw = event.get("raw_object") or {}
                    return "expired" if raw.get("code") == 410 else "watch_error"
                self._apply_event(event)
        finally:
            watcher.stop()
        return "ended"

    def run(self, stop: threading.Event) -> None:
        from kubernetes.client.exceptions import ApiException

        backoff_s = 0.2
        while not stop.is_set():
            reason = ""
            listed = False
            try:
                resource_version = self._list()
                listed = True
                backoff_s = 0.2
                reason = self._watch(resource_version, stop)
            except ApiException as exc:
                reason = f"http_{exc.status}"
            except Exception as exc:  # urllib3/socket errors: the API server is unreachable or timed out
                name = type(exc).__name__
                reason = "timeout" if "Timeout" in name else "connection"
                _LOG.debug("pod watch: %s: %s", name, exc)
            if stop.is_set():
                return
            self._on_restart(reason)
            if reason in ("ended", "expired") or (listed and reason == "timeout"):
                continue  # a normal end of a watch window (or an idle read timeout): relist now
            _LOG.warning("pod watch on node %s interrupted (%s); relisting in %.1f s", self._node, reason, backoff_s)
            stop.wait(backoff_s)
            backoff_s = min(self._max_backoff_s, backoff_s * 2)
