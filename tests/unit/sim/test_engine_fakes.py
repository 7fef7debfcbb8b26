"""Small stand-ins for the profile and the planner, so the engine's tests pin the engine alone.

The fake profile has simple closed forms (so tests can compute expected latencies by hand) and obeys the
:class:`~powerplanner.model.profile.PowerProfile` contract: prefill slows in proportion to the clock lost to
the cap, decode is flat above its natural draw, draw never exceeds the cap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from powerplanner.model.gpu import GpuSpec, gpu_by_name
from powerplanner.model.roles import Role
from powerplanner.model.values import Decision, LoadForecast, Observation, Reason, RoleTarget, Step, StepKind


@dataclass
class FakeProfile:
    """TP-``gpus`` replicas on H100: prefill ``a + b*N`` seconds at TDP, decode ``c + d*B + e*B*L``."""

    name: str = "fake-h100"
    gpu: GpuSpec = field(default_factory=lambda: gpu_by_name("H100-SXM"))
    gpus: int = 4
    prefill_a_s: float = 0.02
    prefill_b_s: float = 5e-5
    decode_c_s: float = 0.02
    decode_d_s: float = 1e-4
    decode_e_s: float = 1e-8
    kv_tokens: float = 400_000.0
    natural_watts: tuple[float, float] = (700.0, 380.0)

    def gpus_per_replica(self, role: Role) -> int:
        return self.gpus

    def cap_levels(self, role: Role, count: int) -> tuple[float, ...]:
        lo, hi = self.gpu.min_limit_watts, self.gpu.max_limit_watts
        return tuple(lo + (hi - lo) * i / (count - 1) for i in range(count))

    def natural_draw_watts(self, role: Role) -> float:
        return self.natural_watts[0 if role is Role.PREFILL else 1]

    def slowdown(self, role: Role, cap_watts: float) -> float:
        natural = self.natural_draw_watts(role)
        if cap_watts >= natural:
            return 1.0
        return 1.0 + 0.6 * (natural - cap_watts) / natural  # 50% cap on prefill: +30%

    def prefill_time_s(self, tokens: float, cap_watts: float) -> float:
        self.gpu.check_cap(cap_watts)
        return (self.prefill_a_s + self.prefill_b_s * tokens) * self.slowdown(Role.PREFILL, cap_watts)

    def ttft_s(self, isl_tokens: float, requests_per_s: float, cap_watts: float) -> float:
        service = self.prefill_time_s(isl_tokens, cap_watts)
        rho = requests_per_s * service
        return float("inf") if rho >= 1 else service + rho * service / (2 * (1 - rho))

    def prefill_throughput_tokens_per_s_per_gpu(
        self, isl_tokens: float, cap_watts: float, ttft_target_s: float | None = None
    ) -> float:
        return isl_tokens / self.prefill_time_s(isl_tokens, cap_watts) / self.gpus

    def decode_itl_s(self, batch: float, context_tokens: float, cap_watts: float) -> float:
        self.gpu.check_cap(cap_watts)
        base = self.decode_c_s + self.decode_d_s * batch + self.decode_e_s * batch * context_tokens
        return base * self.slowdown(Role.DECODE, cap_watts)

    def max_batch(self, context_tokens: float) -> int:
        return max(1, int(self.kv_tokens / max(1.0, context_tokens)))

    def decode_throughput_tokens_per_s_per_gpu(
        self, context_tokens: float, cap_watts: float, itl_target_s: float | None = None
    ) -> float:
        best = 0.0
        for batch in range(1, self.max_batch(context_tokens) + 1):
            itl = self.decode_itl_s(batch, context_tokens, cap_watts)
            if itl_target_s is None or itl <= itl_target_s:
                best = max(best, batch / itl / self.gpus)
        return best

    def draw_watts(self, role: Role, cap_watts: float, utilization: float) -> float:
        idle = self.idle_watts()
        return idle + utilization * (min(self.natural_draw_watts(role), cap_watts) - idle)

    def idle_watts(self) -> float:
        return self.gpu.idle_watts


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
