"""The cluster as the live loop sees it on one tick, and the :class:`Actuator` protocol that reads and changes
it. Plain frozen values: the loop, the cap ledger (live/ledger.py), the feedback watch (live/feedback.py) and
the tests use them without a Kubernetes client; :class:`~powerplanner.live.actuator.KubernetesActuator` builds
them from the API."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from powerplanner.model.roles import ROLES, Role


@dataclass(frozen=True)
class PodInfo:
    name: str
    ready: bool
    terminating: bool
    cap_watts: int | None  # the power-limit annotation, when it is a valid positive integer
    created: str = ""
    cap_revision: int | None = None  # contract.REVISION_ANNOTATION, when a valid positive integer


@dataclass(frozen=True)
class RoleCluster:
    """One role of the DGD as the cluster shows it now."""

    service: str
    spec_replicas: int
    ready_replicas: int
    starting_replicas: int
    draining_replicas: int
    gpus_per_replica: int | None
    pods: tuple[PodInfo, ...] = ()
    adapter: str | None = None  # name of its scaling adapter, when one exists

    @property
    def annotated_cap_watts(self) -> float | None:
        """Highest cap annotation among the role's pods, draining ones included (the worst case for
        provisioned power); None when a live pod has none (it runs at its GPU's default limit until the
        next cap tick)."""
        live = [p for p in self.pods if not p.terminating]
        if not live or any(p.cap_watts is None for p in live):
            return None
        return float(max(p.cap_watts for p in self.pods if p.cap_watts is not None))


@dataclass(frozen=True)
class ClusterState:
    dgd_name: str
    namespace: str
    api_version: str
    ready: bool
    ready_detail: str
    roles: Mapping[Role, RoleCluster]
    resource_version: str | None = None
    uid: str | None = None

    def role(self, role: Role) -> RoleCluster:
        return self.roles[role]

    def pod_names(self) -> dict[Role, list[str]]:
        return {r: [p.name for p in self.roles[r].pods] for r in ROLES}


class Actuator(Protocol):
    """What the live loop needs from the cluster. Failures raise
    :class:`~powerplanner.kube.errors.KubernetesError`."""

    def read_state(self) -> ClusterState: ...

    def scale(self, role: Role, replicas: int) -> None: ...

    def set_cap(self, role: Role, cap_watts: float) -> int:
        """Write the per-GPU cap on every live pod of ``role``; returns how many pods were patched."""
        ...

    def emit_event(self, reason: str, message: str, warning: bool = False) -> None: ...
