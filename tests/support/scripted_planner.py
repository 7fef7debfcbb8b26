"""A planner that follows a script, so the engine's tests pin the engine alone (its profile is
:class:`tests.support.profiles.ClosedFormProfile`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from powerplanner.model.roles import Role
from powerplanner.model.values import Decision, LoadForecast, Observation, Reason, RoleTarget, Step, StepKind


@dataclass
class ScriptedPlanner:
    """Holds replicas and caps, or follows a script {time_s: (prefill replicas, decode replicas, p cap, d cap)}:
    from the first tick at or after a scripted time it emits caps-down, removals, caps-up, additions, and
    keeps re-planning towards that target on later ticks (as the real planner does) until it is reached."""

    policy_name: str = "scripted"
    gpus: int = 4
    script: dict[float, tuple[int, int, float, float]] = field(default_factory=dict)
    observations: list[Observation] = field(default_factory=list)
    oracle_loads: list[LoadForecast | None] = field(default_factory=list)
    target: tuple[int, int, float, float] | None = None

    def tick(self, obs: Observation, oracle_load: LoadForecast | None = None) -> Decision:
        self.observations.append(obs)
        self.oracle_loads.append(oracle_load)
        due = [t for t in self.script if t <= obs.time_s]
        steps: list[Step] = []
        p_now = (obs.prefill.desired_replicas, obs.prefill.applied_cap_watts or 700.0)
        d_now = (obs.decode.desired_replicas, obs.decode.applied_cap_watts or 700.0)
        if due:
            self.target = self.script.pop(max(due))
            for t in due:
                self.script.pop(t, None)
        target = self.target if self.target is not None else (p_now[0], d_now[0], p_now[1], d_now[1])
        if target != (p_now[0], d_now[0], p_now[1], d_now[1]):
            current = {Role.PREFILL: p_now, Role.DECODE: d_now}
            wanted = {Role.PREFILL: (target[0], target[2]), Role.DECODE: (target[1], target[3])}
            for role in (Role.PREFILL, Role.DECODE):
                if wanted[role][1] < current[role][1]:
                    steps.append(Step(StepKind.SET_CAP, role, wanted[role][1], 0.0))
            for role in (Role.PREFILL, Role.DECODE):
                if wanted[role][0] < current[role][0]:
                    steps.append(Step(StepKind.SCALE, role, wanted[role][0], 0.0))
            for role in (Role.PREFILL, Role.DECODE):
                if wanted[role][1] > current[role][1]:
                    steps.append(Step(StepKind.SET_CAP, role, wanted[role][1], 0.0))
            for role in (Role.PREFILL, Role.DECODE):
                if wanted[role][0] > current[role][0]:
                    steps.append(Step(StepKind.SCALE, role, wanted[role][0], 0.0))
        projected = (target[0] * target[2] + target[1] * target[3]) * self.gpus
        return Decision(
            time_s=obs.time_s,
            policy=self.policy_name,
            prefill=RoleTarget(target[0], target[2]),
            decode=RoleTarget(target[1], target[3]),
            budget_watts=obs.budget_watts,
            reasons=(Reason.STATIC,),
            projected_provisioned_watts=projected,
            predicted_draw_watts=projected,
            steps=tuple(steps),
        )
