"""In-memory stand-ins for the live loop's collaborators (unit tests only; integration tests use real peers)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from powerplanner.live.kubernetes import ClusterState, KubernetesError, PodInfo, RoleCluster
from powerplanner.live.prometheus import MetricsReading
from powerplanner.model.roles import ROLES, Role
from powerplanner.model.values import Decision, LoadForecast, Observation, Reason, RoleTarget, Step, StepKind


@dataclass
class FakeActuator:
    replicas: dict[Role, int] = field(default_factory=lambda: {Role.PREFILL: 1, Role.DECODE: 1})
    caps: dict[Role, int | None] = field(default_factory=lambda: {Role.PREFILL: None, Role.DECODE: None})
    ready: bool = True
    draining: int = 0
    calls: list[tuple[str, Role, float]] = field(default_factory=list)
    events: list[tuple[str, str, bool]] = field(default_factory=list)
    fail_on: set[str] = field(default_factory=set)
    read_error: KubernetesError | None = None
    revisions: dict[Role, int] = field(default_factory=lambda: {Role.PREFILL: 0, Role.DECODE: 0})  # +1 per cap write
    gpus_per_replica: int = 4  # what the DGD states for both roles

    def read_state(self) -> ClusterState:
        if self.read_error is not None:
            raise self.read_error
        roles = {}
        for role in ROLES:
            pods = tuple(PodInfo(f"{role.value}-{i}", True, False, self.caps[role],
                                 cap_revision=self.revisions[role] or None) for i in range(self.replicas[role]))
            roles[role] = RoleCluster(service=role.value, spec_replicas=self.replicas[role],
                                      ready_replicas=self.replicas[role], starting_replicas=0,
                                      draining_replicas=self.draining if role is Role.DECODE else 0,
                                      gpus_per_replica=self.gpus_per_replica, pods=pods)
        return ClusterState("llm", "default", "v1alpha1", self.ready, "Ready" if self.ready else "state=pending",
                            roles)

    def scale(self, role: Role, replicas: int) -> None:
        if "scale" in self.fail_on:
            raise KubernetesError("server", "injected")
        self.calls.append(("scale", role, replicas))
        self.replicas[role] = replicas

    def set_cap(self, role: Role, cap_watts: float) -> int:
        if "set_cap" in self.fail_on:
            raise KubernetesError("server", "injected")
        self.calls.append(("set_cap", role, cap_watts))
        changed = self.caps[role] != int(cap_watts)
        self.caps[role] = int(cap_watts)
        self.revisions[role] += 1 if changed else 0
        return self.replicas[role] if changed else 0

    def emit_event(self, reason: str, message: str, warning: bool = False) -> None:
        self.events.append((reason, message, warning))


@dataclass
class FakeMetrics:
    readings: list[MetricsReading] = field(default_factory=list)
    default: MetricsReading = field(default_factory=lambda: MetricsReading(1.0, 1000.0, 100.0, 100.0, 20.0))
    seen_pods: list[Mapping[Role, Sequence[str]]] = field(default_factory=list)

    def read(self, window_s: float, pods: Mapping[Role, Sequence[str]]) -> MetricsReading:
        self.seen_pods.append(pods)
        return self.readings.pop(0) if self.readings else self.default


class StepPlanner:
    """Returns a fixed decision (with the given steps) and remembers the observations."""

    def __init__(self, steps: tuple[Step, ...] = (), replicas: int = 1, cap: float = 400.0) -> None:
        self.steps = steps
        self.replicas = replicas
        self.cap = cap
        self.observations: list[Observation] = []

    def tick(self, obs: Observation, oracle_load: LoadForecast | None = None) -> Decision:
        self.observations.append(obs)
        target = RoleTarget(self.replicas, self.cap)
        return Decision(time_s=obs.time_s, policy="fake", prefill=target, decode=target,
                        budget_watts=obs.budget_watts, reasons=(Reason.SLA_SIZED,),
                        projected_provisioned_watts=2 * 4 * self.replicas * self.cap, predicted_draw_watts=0.0,
                        steps=self.steps)


def cap(role: Role, watts: float, wait: bool = False) -> Step:
    return Step(StepKind.SET_CAP, role, watts, 0.0, wait)


def scale(role: Role, replicas: int, wait: bool = False) -> Step:
    return Step(StepKind.SCALE, role, replicas, 0.0, wait)
