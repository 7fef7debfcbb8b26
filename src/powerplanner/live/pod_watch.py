"""The watch on a DGD's worker pods: it lets the actuator cap a replica the operator just created at once
(:meth:`~powerplanner.live.actuator.KubernetesActuator.cap_new_pod`) instead of at the next cap tick, when its
GPUs would run at their default limit meanwhile. An optimisation only: the cap tick still covers every pod, so
a failing watch is logged and retried, never raised."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import kubernetes.client
import urllib3.exceptions

from powerplanner import contract

log = logging.getLogger(__name__)


def watch_pods(core: kubernetes.client.CoreV1Api, namespace: str, dgd_name: str, on_pod: Callable[[str, Any], None],
               stop: threading.Event, read_timeout_s: float = 5.0, backoff_s: float = 1.0) -> None:
    """Stream the DGD's pod events (ADDED, MODIFIED) to ``on_pod(type, pod)`` until ``stop`` is set; reconnects
    after errors and after ``read_timeout_s`` without events (so ``stop`` is noticed)."""
    from kubernetes import watch

    while not stop.is_set():
        stream = watch.Watch()
        try:
            for event in stream.stream(
                core.list_namespaced_pod, namespace, label_selector=f"{contract.DGD_LABEL}={dgd_name}",
                timeout_seconds=60, _request_timeout=read_timeout_s,
            ):
                if stop.is_set():
                    break
                if isinstance(event, dict) and event.get("type") in ("ADDED", "MODIFIED"):
                    on_pod(str(event["type"]), event.get("object"))
        except (urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.ProtocolError):
            continue  # quiet stream or server closed it: reconnect
        except Exception as exc:  # the watch is an optimisation; the cap tick still covers every pod
            log.warning("pod watch failed, retrying in %g s: %s", backoff_s, exc)
            stop.wait(backoff_s)
        finally:
            stream.stop()
