"""At exit: hand the GPUs over to the next agent, or restore their original limits (an uninstall).

Why hand over: the limits in force when the agent stops are the budget-safe ones (the planner's caps, the park
limit). Restoring the originals (700 W on an H100) while the workloads keep running put a node at 2.3x its
share for the seconds until the next agent started, on every restart and, node by node, on every DaemonSet
rollout (docs/operations.md, "Restarts, rollouts and uninstall"). So SIGTERM leaves the limits and the state
file for the successor, which reads the originals from it and carries on.

The originals are restored only when nobody will come after: the agent's DaemonSet is gone (404) or being
deleted (``deletionTimestamp``), read through the API from the agent's own pod (env ``POD_NAME`` /
``POD_NAMESPACE``, the downward API) and its ``ownerReferences``; or when ``agent.restore_on_exit`` is
``always``. Any doubt (no env, the API unreachable, no owner, a DaemonSet re-created under the same name) means
hand over: a GPU left capped costs performance until someone resets it, a GPU restored under a running
workload costs the budget.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from powerplanner.agent.kubeapi import KubeApiError, NotFound

RestoreOnExit = Literal["uninstall", "always", "never"]
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")  # DNS-1123 subdomain (pod and namespace names)


class OwnerApi(Protocol):
    """The two reads the decision needs (:class:`~powerplanner.agent.kubeapi.PodApi` has them)."""

    def get_pod(self, namespace: str, name: str, timeout_s: float | None = None) -> dict[str, Any]: ...

    def get_daemonset(self, namespace: str, name: str, timeout_s: float | None = None) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ExitDecision:
    """Whether to restore the original limits at exit, and the one line that says why."""

    restore: bool
    reason: str


def decide_exit(
    mode: RestoreOnExit,
    api: OwnerApi | None,
    environ: Mapping[str, str] | None = None,
    timeout_s: float = 3.0,
) -> ExitDecision:
    """Restore only for ``always``, or for ``uninstall`` when the owning DaemonSet is gone or being deleted."""
    if mode == "always":
        return ExitDecision(True, "agent.restore_on_exit is always")
    if mode == "never":
        return ExitDecision(False, "agent.restore_on_exit is never")
    env = os.environ if environ is None else environ
    pod_name, namespace = env.get("POD_NAME", ""), env.get("POD_NAMESPACE", "")
    if not pod_name or not namespace:
        return ExitDecision(False, "POD_NAME or POD_NAMESPACE is not set (the chart sets both from the downward "
                                   "API), so an uninstall cannot be told from a restart")
    if not _NAME.match(pod_name) or not _NAME.match(namespace):
        return ExitDecision(False, f"POD_NAME {pod_name[:64]!r} or POD_NAMESPACE {namespace[:64]!r} is not a "
                                   "Kubernetes name")
    if api is None:
        return ExitDecision(False, "no Kubernetes API client")
    try:
        pod = api.get_pod(namespace, pod_name, timeout_s)
    except KubeApiError as exc:
        return ExitDecision(False, f"cannot read the agent's own pod {namespace}/{pod_name} ({exc})")
    owner = _daemonset_owner(pod)
    if owner is None:
        return ExitDecision(False, f"pod {namespace}/{pod_name} has no owning DaemonSet in its ownerReferences")
    ds_name, ds_uid = owner
    where = f"DaemonSet {namespace}/{ds_name}"
    try:
        daemonset = api.get_daemonset(namespace, ds_name, timeout_s)
    except NotFound:
        return ExitDecision(True, f"{where} is gone: uninstall")
    except KubeApiError as exc:
        return ExitDecision(False, f"cannot read {where} ({exc})")
    meta = daemonset.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    if ds_uid and meta.get("uid") and meta.get("uid") != ds_uid:
        return ExitDecision(False, f"{where} was re-created (another uid); its new agent takes over")
    if meta.get("deletionTimestamp"):
        return ExitDecision(True, f"{where} is being deleted: uninstall")
    return ExitDecision(False, f"{where} is still there: a restart or a rollout")


def _daemonset_owner(pod: Mapping[str, Any]) -> tuple[str, str] | None:
    """The (name, uid) of the DaemonSet that controls ``pod``, if any."""
    meta = pod.get("metadata")
    refs = meta.get("ownerReferences") if isinstance(meta, dict) else None
    if not isinstance(refs, list):
        return None
    candidates = [
        ref for ref in refs
        if isinstance(ref, dict) and ref.get("kind") == "DaemonSet"
        and str(ref.get("apiVersion", "")).startswith("apps/") and isinstance(ref.get("name"), str)
        and _NAME.match(ref["name"])
    ]
    if not candidates:
        return None
    chosen = next((ref for ref in candidates if ref.get("controller") is True), candidates[0])
    uid = chosen.get("uid")
    return str(chosen["name"]), uid if isinstance(uid, str) else ""
