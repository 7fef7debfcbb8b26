"""The closed loop: observe the simulated cluster as the live metrics source would, ask the planner, actuate.

Observations are built the way :mod:`powerplanner.live` builds them from Prometheus: window averages
``increase(X_sum[W]) / increase(X_count[W])`` of counters that the simulated frontend increments, with
``None`` when a window holds no sample:

- request rate and ISL from requests that *arrived* in the window (``requests_total``, ISL histogram);
- TTFT from requests whose first token was emitted in the window;
- OSL and ITL from requests that *completed* in the window; ITL is token-weighted (the frontend's ITL
  histogram has one sample per inter-token gap), i.e. decode time / decode iterations;
- per-role measured draw = mean draw over the last cap interval (the agent's per-GPU power metric).

Decisions are executed by :class:`SimActuator` through the step-execution rules the live actuator uses
(:mod:`powerplanner.planning.execution`): after a cap cut of the decision, its later steps that add power
(cap raise, scale-up) are not run, a later tick re-plans them from the state then in force, so "lower caps
first, then add replicas" stays power-safe even though the agents apply caps on their own time (here
``cap_apply_s`` later); a ``wait_for_drain`` step is skipped while any replica drains, including those the
decision's own scale-down started draining (as the live actuator, which cannot see them released, counts
them). The simulated DGD is always Ready: the simulator models no operator whose rollout could stall, so the
live rule "DGD not Ready: only power cuts" never applies here. Cap changes already issued still land.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable
from typing import Protocol

import numpy as np

from powerplanner.model.roles import ROLES, Role
from powerplanner.model.values import Decision, LoadForecast, Observation, RoleState, Step, StepKind
from powerplanner.planning.execution import (
    CATCH_UP,
    ClusterView,
    Outcome,
    RoleView,
    StepOutcome,
    catch_up_roles,
    run_steps,
)
from powerplanner.sim.cluster import (
    DECODE,
    DRAINING,
    EV_CAP_APPLY,
    PREFILL,
    READY,
    STARTING,
    Cluster,
)
from powerplanner.sim.settings import EngineSettings, SimSettings


class TickingPlanner(Protocol):
    """What the simulator needs of a planner (``powerplanner.planning.planner.Planner`` satisfies it)."""

    policy_name: str

    def tick(self, obs: Observation, oracle_load: LoadForecast | None = None) -> Decision: ...


_ROLE_INDEX = {Role.PREFILL: PREFILL, Role.DECODE: DECODE}


class ClosedLoop:
    """Ticks the planner against a :class:`Cluster` and records the time series."""

    def __init__(
        self,
        cluster: Cluster,
        planner: TickingPlanner,
        engine: EngineSettings,
        settings: SimSettings,
        budget_at: Callable[[float], float],
        oracle: bool,
        prefix_isl: list[float],
        prefix_osl: list[float],
    ) -> None:
        self.cluster = cluster
        self.planner = planner
        self.settings = settings
        self.budget_at = budget_at
        self.oracle = oracle
        self.cap_interval_s = engine.cap_interval_s
        self.adjustment_interval_s = engine.adjustment_interval_s
        self.window_ticks = max(1, round(engine.window_s / self.cap_interval_s))
        self.grace_s = settings.budget_cut_grace_s if settings.budget_cut_grace_s is not None else self.cap_interval_s
        self.prefix_isl = prefix_isl
        self.prefix_osl = prefix_osl
        self.mean_isl = prefix_isl[-1] / max(1, len(prefix_isl) - 1)
        self.mean_osl = prefix_osl[-1] / max(1, len(prefix_osl) - 1)
        self.snapshots: list[tuple[float, ...]] = []
        self.max_kv_tokens = max(1, cluster.profile.max_batch(1.0))  # max_batch = KV tokens // context
        self.actuator = SimActuator(cluster, settings)
        self.reasons: Counter[str] = Counter()
        self.decisions = 0
        # time series
        self.ts_time: list[float] = []
        self.ts_budget: list[float] = []
        self.ts_prov: list[float] = []
        self.ts_drawn: list[float] = []
        self.ts_prefill: list[int] = []
        self.ts_decode: list[int] = []
        self.ts_prefill_cap: list[float] = []
        self.ts_decode_cap: list[float] = []
        self.ts_waiting: list[int] = []
        self.ts_decoding: list[int] = []
        self._last_sample_t = 0.0
        self._last_sample_energy = 0.0

    # ------------------------------------------------------------------ ticks

    def tick(self, t: float) -> Decision:
        c = self.cluster
        budget = float(self.budget_at(t))
        c.set_budget(t, budget, self.grace_s)
        c.accumulate(t)
        self.snapshots.append((t, c.arrived, c.isl_sum, c.first_tokens, c.ttft_sum_s, c.completed, c.osl_sum,
                               c.decode_time_sum_s, c.decode_tokens, c.energy_role_j[0], c.energy_role_j[1]))
        obs = self.observation(t, budget)
        load = self.oracle_load(t) if self.oracle else None
        decision = self.planner.tick(obs, load)
        self.decisions += 1
        for reason in decision.reasons:
            self.reasons[str(reason)] += 1
        self.actuator.execute(decision, t)
        self.sample(t)
        return decision

    def observation(self, t: float, budget_watts: float) -> Observation:
        snaps = self.snapshots
        k = len(snaps) - 1
        now = snaps[k]
        then = snaps[max(0, k - self.window_ticks)]
        window_s = now[0] - then[0]
        rate = isl = osl = ttft_ms = itl_ms = isl_p90 = None
        if window_s > 0:
            arrived = now[1] - then[1]
            rate = arrived / window_s
            if arrived > 0:
                isl = (now[2] - then[2]) / arrived
                isl_p90 = _p90(self.cluster.isl[int(then[1]):int(now[1])])
            first = now[3] - then[3]
            if first > 0:
                ttft_ms = 1000.0 * (now[4] - then[4]) / first
            done = now[5] - then[5]
            if done > 0:
                osl = (now[6] - then[6]) / done
            tokens = now[8] - then[8]
            if tokens > 0:
                itl_ms = 1000.0 * (now[7] - then[7]) / tokens
        draw: list[float | None] = [None, None]
        if k > 0:
            prev = snaps[k - 1]
            dt = now[0] - prev[0]
            if dt > 0:
                draw = [(now[9] - prev[9]) / dt, (now[10] - prev[10]) / dt]
        total = None if draw[0] is None or draw[1] is None else draw[0] + draw[1]
        return Observation(
            time_s=t,
            window_s=window_s if window_s > 0 else self.window_ticks * self.cap_interval_s,
            request_rate_per_s=rate,
            isl_tokens=isl,
            osl_tokens=osl,
            ttft_ms=ttft_ms,
            itl_ms=itl_ms,
            prefill=self._role_state(PREFILL, draw[0], t),
            decode=self._role_state(DECODE, draw[1], t),
            budget_watts=budget_watts,
            measured_power_watts=total,
            isl_p90_tokens=isl_p90,
        )

    def _role_state(self, role: int, draw_watts: float | None, t: float) -> RoleState:
        """The role's counts and caps, and the bottleneck gauges its workers would export now (vLLM's
        ``num_requests_waiting`` and KV usage, docs/planner.md "Which role is short"): requests in the role's
        queue, and (decode) the ready replicas' KV tokens in use over their capacity."""
        c = self.cluster
        counts = c.counts[role]
        kv_usage = None
        if role == DECODE and c.ready_decode:
            used = 0.0
            for inst in c.ready_decode:
                if inst.batch > 0:
                    used += inst.s_ctx + inst.batch * (inst.v + (t - inst.t_last) / inst.itl_s)
            kv_usage = min(1.0, used / (len(c.ready_decode) * self.max_kv_tokens))
        return RoleState(
            ready_replicas=counts[READY],
            starting_replicas=counts[STARTING],
            draining_replicas=counts[DRAINING],
            applied_cap_watts=c.cap_watts[role],
            measured_draw_watts=draw_watts,
            waiting_requests=float(len(c.prefill_queue if role == PREFILL else c.decode_queue)),
            kv_usage=kv_usage,
        )

    def oracle_load(self, t: float) -> LoadForecast:
        """The true load of the interval the decision governs: arrivals in [t, t + adjustment interval)."""
        arrival = self.cluster.arrival_s
        lo = bisect.bisect_left(arrival, t)
        hi = bisect.bisect_left(arrival, t + self.adjustment_interval_s)
        count = hi - lo
        if count == 0:
            return LoadForecast(request_rate_per_s=0.0, isl_tokens=self.mean_isl, osl_tokens=self.mean_osl)
        return LoadForecast(
            request_rate_per_s=count / self.adjustment_interval_s,
            isl_tokens=(self.prefix_isl[hi] - self.prefix_isl[lo]) / count,
            osl_tokens=(self.prefix_osl[hi] - self.prefix_osl[lo]) / count,
            isl_p90_tokens=_p90(self.cluster.isl[lo:hi]),
        )

    # ------------------------------------------------------------------ actuation

    def cap_applied(self, payload: tuple[int, float], t: float) -> None:
        role, cap = payload
        self.cluster.set_cap(role, cap, t)
        self.sample(t)

    # ------------------------------------------------------------------ recording

    def sample(self, t: float) -> None:
        """Record the state in force at ``t``; drawn power is the mean since the previous sample."""
        c = self.cluster
        c.accumulate(t)
        if self.ts_time and self.ts_time[-1] == t:
            drawn = self.ts_drawn[-1]  # same instant: the later state replaces the earlier one
            for series in self._all_series():
                series.pop()
        else:
            dt = t - self._last_sample_t
            drawn = (c.energy_j - self._last_sample_energy) / dt if self.ts_time and dt > 0 else c.draw_total
            self._last_sample_t = t
            self._last_sample_energy = c.energy_j
        self.ts_time.append(t)
        self.ts_budget.append(c.budget_watts)
        self.ts_prov.append(c.provisioned_watts)
        self.ts_drawn.append(drawn)
        self.ts_prefill.append(c.holding(PREFILL))
        self.ts_decode.append(c.holding(DECODE))
        self.ts_prefill_cap.append(c.cap_watts[PREFILL])
        self.ts_decode_cap.append(c.cap_watts[DECODE])
        self.ts_waiting.append(c.arrived - c.first_tokens)
        self.ts_decoding.append(c.first_tokens - c.completed)

    def _all_series(self) -> tuple[list[float] | list[int], ...]:
        return (self.ts_time, self.ts_budget, self.ts_prov, self.ts_drawn, self.ts_prefill, self.ts_decode,
                self.ts_prefill_cap, self.ts_decode_cap, self.ts_waiting, self.ts_decoding)


class SimActuator:
    """Performs a decision's steps on the simulated cluster as the shared rules allow (planning/execution.py).

    The view it shows the rules: replicas starting + ready (desired) and draining, the caps in force (what the
    planner observed, so what the plan counted) and the caps last commanded (the annotation of the role's live
    pods, when it has any). A cap change is in force ``cap_apply_s`` later, clamped to the GPU's settable range
    as NVML would; a scale-up that does not fit the GPU pool starts only the replicas that fit."""

    def __init__(self, cluster: Cluster, settings: SimSettings) -> None:
        self.cluster = cluster
        self.cap_apply_s = settings.cap_apply_s
        self.commanded_cap = list(cluster.cap_watts)
        self.clamp = cluster.profile.gpu.clamp

    def view(self) -> ClusterView:
        c = self.cluster
        roles = {}
        for role in ROLES:
            i = _ROLE_INDEX[role]
            desired = c.counts[i][STARTING] + c.counts[i][READY]
            written = self.commanded_cap[i] if desired > 0 else None  # no live pod holds an annotation
            roles[role] = RoleView(desired, c.counts[i][DRAINING], c.cap_watts[i], written)
        return ClusterView(roles)

    def execute(self, decision: Decision, t: float) -> list[StepOutcome]:
        """Run the decision's steps in order, then write back the targets the rules' catch-up names."""
        view = self.view()
        outcomes = run_steps(decision.steps, view, lambda step: self.run_step(step, t))
        written = {role: self.clamp(decision.target(role).cap_watts) for role in ROLES}
        for role in catch_up_roles(written, view, outcomes):
            step = Step(StepKind.SET_CAP, role, decision.target(role).cap_watts, decision.projected_provisioned_watts)
            done = self.run_step(step, t)
            outcomes.append(StepOutcome(step, done.outcome, CATCH_UP, changed=done.changed))
        return outcomes

    def run_step(self, step: Step, t: float) -> StepOutcome:
        c = self.cluster
        role = _ROLE_INDEX[step.role]
        if step.kind == StepKind.SET_CAP:
            cap = self.clamp(step.value)
            if cap == self.commanded_cap[role]:
                return StepOutcome(step, Outcome.DONE)
            self.commanded_cap[role] = cap
            if self.cap_apply_s == 0.0:
                c.set_cap(role, cap, t)
            else:
                c.push(t + self.cap_apply_s, EV_CAP_APPLY, (role, cap))
            live_pods = c.counts[role][STARTING] + c.counts[role][READY]  # what the live actuator would patch
            return StepOutcome(step, Outcome.DONE, changed=live_pods > 0)
        target = max(0, round(step.value))
        counts = c.counts[role]
        desired = counts[STARTING] + counts[READY]
        if target < desired:
            c.remove_replicas(role, desired - target, t)
            return StepOutcome(step, Outcome.DONE, changed=True)
        add = target - desired
        free = c.free_gpus()
        if free is not None:
            add = min(add, max(0, free // c.gpus[role]))
        for _ in range(add):
            c.start_replica(role, t)
        return StepOutcome(step, Outcome.DONE, changed=add > 0)


def _p90(lengths: list[int]) -> float | None:
    """The 90th percentile of a window's prompt lengths (what the frontend's ISL histogram gives live)."""
    return float(np.percentile(lengths, 90)) if lengths else None
