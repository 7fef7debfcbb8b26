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
from datetime import datetime
from typing import Any

from powerplanner.agent.kubeapi import PodApi
from powerplanner.agent.policy import PodInfo
from powerplanner.contract import DGD_LABEL, POWER_LIMIT_ANNOTATION, REVISION_ANNOTATION, parse_revision
from powerplanner.kube.errors import ApiStatusError, KubernetesError, Timeout
from powerplanner.retry import retrying

_LOG = logging.getLogger("powerplanner.agent.pods")

_TERMINAL_PHASES = ("Succeeded", "Failed")
_FIRST_BACKOFF_S = 0.2


def _container_id(raw: str | None) -> str:
    """``containerd://<id>`` -> ``<id>``."""
    return (raw or "").rpartition("://")[2]


def pod_info(pod: dict[str, Any]) -> PodInfo:
    """A :class:`PodInfo` from a pod object (JSON as the API serves it)."""
    meta = pod.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    raw = annotations.get(POWER_LIMIT_ANNOTATION)
    return PodInfo(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        uid=str(meta.get("uid") or ""),
        annotation=str(raw) if raw is not None else None,
        revision=parse_revision(annotations.get(REVISION_ANNOTATION)),
        dgd_worker=bool((meta.get("labels") or {}).get(DGD_LABEL)),
        containers=tuple((str(s.get("name", "")), _container_id(s.get("containerID"))) for s in statuses),
        created_s=_timestamp_s(meta.get("creationTimestamp")),
    )


def _timestamp_s(raw: object) -> float | None:
    """An RFC 3339 timestamp (``2026-12-01T10:00:00Z``) as Unix seconds; None when absent or unreadable."""
    if not isinstance(raw, str) or not raw:
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _on_node(pod: dict[str, Any], node_name: str) -> bool:
    spec_node = (pod.get("spec") or {}).get("nodeName")
    phase = (pod.get("status") or {}).get("phase")
    return spec_node == node_name and phase not in _TERMINAL_PHASES


class PodWatcher:
    """Maintains ``{(namespace, name): PodInfo}`` for the pods scheduled on ``node_name``."""

    def __init__(
        self,
        api: PodApi,
        node_name: str,
        on_change: Callable[[], None],
        resync_s: float,
        on_restart: Callable[[str], None] = lambda reason: None,
        max_backoff_s: float = 5.0,
    ) -> None:
        self._api = api
        self._node = node_name
        self._on_change = on_change
        self._on_restart = on_restart
        self._resync_s = resync_s
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
        items, resource_version = self._api.list_pods(self._selector())
        pods = {}
        for pod in items:
            if _on_node(pod, self._node):
                info = pod_info(pod)
                pods[info.key] = info
        with self._lock:
            # The first list always triggers a pass, even on a node without pods: that pass restores GPUs
            # left changed by a previous run (state file) and parks idle GPUs.
            changed = pods != self._pods or not self.synced.is_set()
            self._pods = pods
        self.synced.set()
        if changed:
            self._on_change()
        return resource_version

    def _apply_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        pod = event.get("object")
        if not isinstance(pod, dict) or kind not in ("ADDED", "MODIFIED", "DELETED"):
            return  # BOOKMARK and unknown types carry no pod change
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
        """Apply events until the stream ends or fails; returns the reason for the restart."""
        for event in self._api.watch_pods(self._selector(), resource_version, self._resync_s):
            if stop.is_set():
                return "stopped"
            if event.get("type") == "ERROR":
                status = event.get("object") or {}
                return "expired" if status.get("code") == 410 else "watch_error"
            self._apply_event(event)
        return "ended"

    def run(self, stop: threading.Event) -> None:
        """List (retried with backoff while it fails: 0.2 s doubling to ``max_backoff_s``, restarting from 0.2 s
        after a good list), then watch until the window ends; relist at once after a normal end, after a pause
        of the first backoff after a failed watch."""
        def announce(exc: BaseException | None, wait_s: float) -> None:
            reason = _reason(exc)
            self._on_restart(reason)
            _LOG.warning("pod watch on node %s interrupted (%s); relisting in %.1f s", self._node, reason, wait_s)

        list_with_retries = retrying(sleep=stop.wait, first_wait_s=_FIRST_BACKOFF_S, max_wait_s=self._max_backoff_s,
                                     until=stop.is_set, retry_on=lambda exc: isinstance(exc, KubernetesError),
                                     before_sleep=announce)
        while not stop.is_set():
            try:
                resource_version: str = list_with_retries(self._list)
            except KubernetesError:
                return  # stopped while the list was failing
            try:
                reason = self._watch(resource_version, stop)
            except KubernetesError as exc:
                reason = _reason(exc)
                _LOG.debug("pod watch: %s: %s", type(exc).__name__, exc)
            if stop.is_set():
                return
            self._on_restart(reason)
            if reason in ("ended", "expired", "timeout"):
                continue  # a normal end of a watch window (or an idle read timeout): relist now
            _LOG.warning("pod watch on node %s interrupted (%s); relisting in %.1f s", self._node, reason,
                         _FIRST_BACKOFF_S)
            stop.wait(_FIRST_BACKOFF_S)


def _reason(exc: BaseException | None) -> str:
    """The ``powerplanner_agent_watch_restarts_total`` reason of a failed list or watch."""
    if isinstance(exc, ApiStatusError):
        return f"http_{exc.status}"
    if isinstance(exc, Timeout):
        return "timeout"
    return "connection"  # connection refused/reset, a torn stream, bad JSON, credentials
