"""The Planner: one object per deployment, called every cap tick, returning a self-explaining Decision.

The same object runs in the simulator, in the live loop and in tests: it is pure (no I/O, no clock; time
comes from ``Observation.time_s``). It owns what every policy shares:

- validation of the observation (bad values never crash; they are named in the decision's notes);
- the two timescales: replicas may change only when ``time_s - last_adjust >= adjustment_interval_s``
  (or on the first tick); caps may change on every tick, so a budget cut is honoured on the next cap tick;
- prediction (rate, ISL, OSL) and correction factors, updated on adjustment ticks with good data;
- idle handling: no traffic for ``idle_ticks_to_min`` consecutive adjustment ticks scales to the minimum.
  "No traffic" needs positive evidence: a request rate of 0 (the requests counter present, no increase).
  A window with no arrivals whose observed TTFT or ITL is above its target is a backlog still being served,
  not idle;
- holding the previous targets when data is missing (no rate: absent or NaN series; no ISL/OSL while
  requests arrive), bad or the source failed: replicas hold, caps never rise above the held ones, and both
  still obey a lowered budget (``metrics_missing`` / ``source_error_hold``);
- failing closed when the deployment's GPUs per replica (``RoleState.gpus_per_replica``, from the DGD)
  differ from the profile's: the policy is not asked, targets only cut power, counted with the deployed GPUs
  (:mod:`powerplanner.planning.fail_closed`, ``gpu_count_mismatch``);
- the power-safe transition plan from the observed state to the targets, re-planned every tick, so a
  scale-up deferred because draining replicas still hold power proceeds on a later cap tick;
- the explanation: reasons, projected provisioned power, predicted draw and attainment per role.

``Planner.tick`` runs these as stages that return values, each in the module named after what it holds:
sanitise (:mod:`~powerplanner.planning.sanitise`), classify (:mod:`~powerplanner.planning.data_state`), forecast
(:mod:`~powerplanner.planning.forecaster`), choose (the policy, or :mod:`~powerplanner.planning.fail_closed`),
transition (:mod:`~powerplanner.planning.transitions`) and explain. docs/planner.md ("One tick") walks through
them. Its settings are plain values (:mod:`~powerplanner.planning.settings`), built from the config at the edge.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from powerplanner.errors import UserError
from powerplanner.model.capped import CappedProfile
from powerplanner.model.profile import PowerProfile
from powerplanner.model.roles import ROLES, Role
from powerplanner.model.values import Decision, LoadForecast, Observation, Reason, RoleState, RoleTarget, Step
from powerplanner.planning.calibration import Calibrator
from powerplanner.planning.data_state import DataState, classify, holds_without_data, state_explanation
from powerplanner.planning.fail_closed import mismatch_choice, without_cap_raise
from powerplanner.planning.forecaster import Forecaster
from powerplanner.planning.optimizer import Allocation, evaluate
from powerplanner.planning.policy import Choice, PlanContext, Policy, Toolkit
from powerplanner.planning.probing import safe_probe
from powerplanner.planning.registry import policy_entry
from powerplanner.planning.sanitise import Sanitised, finite, sanitise
from powerplanner.planning.settings import PlannerSettings
from powerplanner.planning.sizing import Corrections, SizingRules, dynamo_corrections, observed_corrections
from powerplanner.planning.transitions import current_provisioned_watts, plan_transition

_EPS_S = 1e-9
_EPS_W = 1e-6


@dataclass(frozen=True)
class _Chosen:
    """The choose stage's result: the targets, the context they were chosen in, and the planner's own reasons
    and notes (before the choice's)."""

    choice: Choice
    ctx: PlanContext  # its forecast is None when the policy could not plan for this load
    reasons: tuple[Reason, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Transition:
    """The transition stage's result: the ordered steps and what they add to the explanation."""

    steps: tuple[Step, ...]
    projected_watts: float  # provisioned power at the targets, with the deployed GPUs
    reasons: tuple[Reason, ...]
    notes: tuple[str, ...]


class Planner:
    """Keeps the predictor state, the last adjustment time and the replica target between ticks."""

    def __init__(self, settings: PlannerSettings, profile: PowerProfile, policy: Policy, kit: Toolkit,
                 sizing_rules: SizingRules, receives_oracle_load: bool = False) -> None:
        self.policy_name = policy.name
        self.receives_oracle_load = receives_oracle_load  # planning/registry.py: the oracle's entry says so
        self._settings = settings
        self._policy = policy
        self._kit = kit
        self._rules = sizing_rules
        self._profile = profile
        self._forecaster = Forecaster(settings)
        self._last_adjust_s: float | None = None
        self._targets: dict[Role, RoleTarget] | None = None
        self._corrections = Corrections()
        self._profile_corrections = Corrections()
        self._budget_fallback_watts = settings.budget_watts  # the last good budget, else the configured one
        # planning/calibration.py: the learned profile replaces the given one in the toolkit (needs a cap model)
        self.calibration: Calibrator | None = (
            Calibrator(settings.calibration, profile)
            if settings.calibration.enabled and isinstance(profile, CappedProfile) else None
        )

    @property
    def targets(self) -> Mapping[Role, RoleTarget] | None:
        """The replica/cap targets in force (None before the first tick)."""
        return self._targets

    def tick(self, obs: Observation, oracle_load: LoadForecast | None = None) -> Decision:
        """Plan one tick, stage by stage (docs/planner.md, "One tick"): sanitise, classify, forecast, choose,
        transition, explain. ``oracle_load`` (the true next-interval load) is used only by ``oracle``."""
        sane = self._sanitise(obs)
        clean = sane.obs
        adjust, clock_notes = self._timescale(obs, clean)
        state = classify(obs, clean, self._kit.sla_ttft_s, self._kit.sla_itl_s)
        state_reasons, state_notes = state_explanation(state, obs.source_error)
        oracle = oracle_load if self.receives_oracle_load else None
        if self.calibration is not None and state is DataState.OK:
            self._calibrate(clean)
        forecast = self._forecast(clean, state, adjust, oracle)
        ctx = PlanContext(
            obs=clean,
            budget_watts=clean.budget_watts,
            forecast=forecast,
            peak_forecast=self._forecaster.peak(forecast) if adjust else None,
            corrections=self._corrections,
            profile_corrections=self._profile_corrections,
            adjust=adjust,
            held=self._targets,
            current_replicas={role: clean.role(role).desired_replicas for role in ROLES},
        )
        current = {role: clean.role(role) for role in ROLES}
        deployed = self._deployed_gpus(clean)
        mismatch = {role: deployed[role] for role in ROLES if deployed[role] != self._kit.gpus_per_replica[role]}
        probe = None
        if self.calibration is not None and state is DataState.OK and not mismatch:
            probe = safe_probe(self.calibration, self._kit, ctx, self._evaluate)
        if probe is None:
            chosen = self._choose(ctx, state, oracle is not None, current, deployed, mismatch)
        else:
            with self._kit.only_level(probe.role, probe.cap_watts):
                chosen = self._choose(ctx, state, oracle is not None, current, deployed, mismatch)
            chosen = dataclasses.replace(chosen, notes=(*chosen.notes, f"calibration probe: {probe.role.value} at "
                                                        f"{probe.cap_watts:g} W until t={probe.until_s:g} s"))
        reasons = [*((Reason.BAD_OBSERVATION,) if sane.problems else ()), *state_reasons, *chosen.reasons]
        for reason in chosen.choice.reasons:
            if reason not in reasons:
                reasons.append(reason)
        notes = [*sane.problems, *clock_notes, *state_notes, *chosen.notes, *chosen.choice.notes]
        targets = dict(chosen.choice.targets)
        moves = self._transition(current, targets, deployed, clean.budget_watts, chosen.choice, bool(mismatch),
                                 tuple(reasons))
        self._targets = targets
        return self._explain(chosen, moves, targets, bool(mismatch), (*reasons, *moves.reasons),
                             (*notes, *moves.notes))

    # -- stages ---------------------------------------------------------------------------------

    def _sanitise(self, obs: Observation) -> Sanitised:
        """Stage 1: unusable values become explicit "no data" (:mod:`powerplanner.planning.sanitise`)."""
        previous_s = self._last_adjust_s if self._last_adjust_s is not None else 0.0
        sane = sanitise(obs, self._budget_fallback_watts, previous_s)
        self._budget_fallback_watts = sane.obs.budget_watts
        return sane

    def _timescale(self, raw: Observation, clean: Observation) -> tuple[bool, tuple[str, ...]]:
        """Whether replicas may change on this tick: the first tick, and once per adjustment interval. A clock
        that went backwards restarts the interval (and says so)."""
        notes: tuple[str, ...] = ()
        if self._last_adjust_s is not None and finite(raw.time_s) and clean.time_s < self._last_adjust_s:
            notes = (f"time went backwards ({clean.time_s:g} s < {self._last_adjust_s:g} s); restarting the "
                     "adjustment clock",)
            self._last_adjust_s = None
        adjust = self._last_adjust_s is None or (
            finite(raw.time_s)
            and clean.time_s - self._last_adjust_s >= self._settings.adjustment_interval_s - _EPS_S
        )
        if adjust and finite(raw.time_s):
            self._last_adjust_s = clean.time_s
        return adjust, notes

    def _forecast(self, obs: Observation, state: DataState, adjust: bool,
                  oracle_load: LoadForecast | None) -> LoadForecast | None:
        """Stage 3: the load this tick plans for. Correction factors follow the observed latency on every tick
        with good data (the profile's, as Dynamo computes them, once per adjustment interval); the oracle's
        cap ticks use the true load and learn nothing."""
        if adjust:
            if state is DataState.OK:
                self._update_corrections(obs)
            return self._forecaster.adjust(obs, state, oracle_load)
        if state is DataState.OK and oracle_load is None:
            self._update_corrections(obs, dynamo=False)
        return self._forecaster.cap_tick(obs, state, oracle_load)

    def _choose(self, ctx: PlanContext, state: DataState, oracle: bool, current: dict[Role, RoleState],
                deployed: dict[Role, int], mismatch: dict[Role, int]) -> _Chosen:
        """Stage 4: the targets. A GPU-count mismatch fails closed without asking the policy; a profile that
        refuses this load (e.g. a measured table that ends before this ISL) must not stop the planner: it
        holds the replicas at caps that fit the budget, and says why."""
        if mismatch:
            return _Chosen(mismatch_choice(self._kit, current, deployed, mismatch, ctx.budget_watts), ctx)
        held = (
            {role: t.replicas for role, t in self._targets.items()} if self._targets is not None
            else {role: self._kit.clamp_replicas(role, ctx.current_replicas[role]) for role in ROLES}
        )
        reasons, notes, ask = self._policy_call(ctx, state, oracle, held)
        try:
            choice = ask()
        except UserError as exc:
            notes += (f"planning failed for this load ({'; '.join(exc.lines)}); holding the replica target",)
            reasons += (Reason.BAD_OBSERVATION,)
            ctx = dataclasses.replace(ctx, forecast=None)
            choice = self._policy.hold(ctx, held)
        if holds_without_data(state):
            ceiling: dict[Role, float | None] = (
                {role: t.cap_watts for role, t in self._targets.items()} if self._targets is not None
                else {role: current[role].applied_cap_watts for role in ROLES}
            )
            choice = without_cap_raise(choice, ceiling)
        return _Chosen(choice, ctx, reasons, notes)

    def _policy_call(self, ctx: PlanContext, state: DataState, oracle: bool, held: Mapping[Role, int]
                     ) -> tuple[tuple[Reason, ...], tuple[str, ...], Callable[[], Choice]]:
        """Which question the policy is asked this tick, with the planner's reasons and notes for it."""
        if ctx.adjust and (state is DataState.OK or oracle) and ctx.forecast is not None:
            return (), (), lambda: self._policy.adjust(ctx)
        if ctx.adjust and state is DataState.IDLE and self._forecaster.idle_ticks >= self._settings.idle_ticks_to_min:
            idle_ctx = dataclasses.replace(ctx, forecast=self._forecaster.restart_for_idle())
            minimum = {role: self._kit.bounds[role].min_replicas for role in ROLES}
            return (Reason.IDLE_SCALE_TO_MIN,), (), lambda: self._policy.hold(idle_ctx, minimum)
        notes: tuple[str, ...] = ()
        if ctx.adjust and state is DataState.BACKLOG:
            notes = (f"no arrivals this interval but latency above target (TTFT {_ms(ctx.obs.ttft_ms)}, ITL "
                     f"{_ms(ctx.obs.itl_ms)}): a backlog is still being served, so not idle; holding the replica "
                     "target",)
        elif ctx.adjust and state in (DataState.IDLE, DataState.OK):
            notes = ("no usable traffic data this interval; holding the replica target",)
        hold_reasons = (Reason.HOLD_NO_DATA,) if ctx.adjust and state is not DataState.SOURCE_ERROR else ()
        return hold_reasons, notes, lambda: self._policy.hold(ctx, held)

    def _transition(self, current: dict[Role, RoleState], targets: dict[Role, RoleTarget], deployed: dict[Role, int],
                    budget: float, choice: Choice, mismatch: bool, reasons_so_far: tuple[Reason, ...]) -> _Transition:
        """Stage 5: the power-safe steps from the observed state to the targets, re-planned every tick. In
        measured mode the limit is the higher of the budget and the provisioned power now and at the target
        (the draw, not the caps, is held to the budget), except under a GPU-count mismatch."""
        kit = self._kit
        current_prov = current_provisioned_watts(current, deployed, kit.max_cap_watts)
        projected = sum(targets[r].replicas * deployed[r] * targets[r].cap_watts for r in ROLES)
        limit: float | None = budget if choice.power_safe else None
        if limit is not None and self._settings.measured_budget and not mismatch:
            limit = max(budget, projected, current_prov)
        steps = plan_transition(current, targets, deployed, limit,
                                self._settings.gpu_pool if choice.power_safe else None, kit.max_cap_watts)
        reasons: list[Reason] = []
        if current_prov > budget + _EPS_W and choice.power_safe and Reason.BUDGET_CUT not in reasons_so_far:
            reasons.append(Reason.BUDGET_CUT)
        if any(s.wait_for_drain for s in steps):
            reasons.append(Reason.WAIT_FOR_DRAIN)
        notes: tuple[str, ...] = ()
        settled = [s.provisioned_after_watts for s in steps if not s.wait_for_drain]
        if choice.power_safe and settled and settled[-1] > budget + _EPS_W:
            notes = (f"provisioned {settled[-1]:,.0f} W stays above the {budget:,.0f} W budget until draining "
                     "replicas release their GPUs (worst case counted)",)
        return _Transition(steps, projected, tuple(reasons), notes)

    def _explain(self, chosen: _Chosen, moves: _Transition, targets: dict[Role, RoleTarget], mismatch: bool,
                 reasons: tuple[Reason, ...], notes: tuple[str, ...]) -> Decision:
        """Stage 6: the decision, with what the targets are predicted to draw and attain. Under a GPU-count
        mismatch the profile describes another deployment: no prediction, the worst case (the caps)."""
        choice, ctx = chosen.choice, chosen.ctx
        alloc = None if mismatch else (choice.allocation or self._evaluate(targets, ctx))
        if mismatch:
            draw = moves.projected_watts
        else:
            draw = alloc.predicted_draw_watts if alloc is not None else self._idle_draw(targets)
        return Decision(
            time_s=ctx.obs.time_s,
            policy=self.policy_name,
            prefill=targets[Role.PREFILL],
            decode=targets[Role.DECODE],
            budget_watts=ctx.budget_watts,
            reasons=reasons,
            projected_provisioned_watts=moves.projected_watts,
            predicted_draw_watts=draw,
            predicted_attainment=(
                {"prefill": alloc.attainment_prefill, "decode": alloc.attainment_decode} if alloc is not None else {}
            ),
            forecast=ctx.forecast,
            steps=moves.steps,
            replicas_may_change=ctx.adjust or choice.replicas_changed_on_cap_tick,
            budget_limited=choice.budget_limited,
            infeasible=choice.infeasible,
            notes=notes,
        )

    # -- helpers --------------------------------------------------------------------------------

    def _deployed_gpus(self, obs: Observation) -> dict[Role, int]:
        """GPUs per replica as deployed; the profile's where the observation does not say."""
        out = {}
        for role in ROLES:
            stated = obs.role(role).gpus_per_replica
            out[role] = stated if stated is not None else self._kit.gpus_per_replica[role]
        return out

    def _caps_in_force(self, obs: Observation) -> dict[Role, float]:
        caps = {}
        for role in ROLES:
            applied = obs.role(role).applied_cap_watts
            held = self._targets[role].cap_watts if self._targets is not None else self._kit.tdp_watts
            caps[role] = self._kit.profile.gpu.clamp(applied if applied is not None else held)
        return caps

    def _calibrate(self, obs: Observation) -> None:
        """Absorb this tick into the belief; plan with the learned profile when it moved (our corrections are
        then measured against it, so they only carry what the belief still misses, plus the backlog term)."""
        assert self.calibration is not None
        if self.calibration.observe(obs, self._caps_in_force(obs)):
            self._kit.use_profile(self.calibration.profile)

    def _update_corrections(self, obs: Observation, dynamo: bool = True) -> None:
        caps = self._caps_in_force(obs)
        self._corrections = observed_corrections(
            self._kit.profile, obs, caps[Role.PREFILL], caps[Role.DECODE], self._corrections,
            ttft_target_s=self._kit.sla_ttft_s, drain_interval_s=self._settings.adjustment_interval_s,
        )
        if dynamo:  # Dynamo computes its factors once per adjustment interval
            tdp = self._kit.tdp_watts
            self._profile_corrections = dynamo_corrections(self._profile, obs, tdp, self._profile_corrections)

    def _evaluate(self, targets: Mapping[Role, RoleTarget], ctx: PlanContext) -> Allocation | None:
        forecast = ctx.forecast
        if forecast is None:
            return None
        corrections = ctx.corrections if not self._rules.dynamo_prefill_correction else ctx.profile_corrections
        p, d = self._kit.capacities(forecast, corrections, self._rules)
        t_p, t_d = targets[Role.PREFILL], targets[Role.DECODE]
        return evaluate(p, d, t_p.replicas, t_p.cap_watts, t_d.replicas, t_d.cap_watts)

    def _idle_draw(self, targets: Mapping[Role, RoleTarget]) -> float:
        idle = self._profile.idle_watts()
        return sum(t.replicas * self._kit.gpus_per_replica[r] * idle for r, t in targets.items())


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} ms"


def make_planner(
    settings: PlannerSettings,
    profile: PowerProfile,
    policy: str | None = None,
    static_caps_watts: Mapping[Role, float] | None = None,
) -> Planner:
    """Build the Planner for ``policy`` (default ``settings.policy``). The edges build ``settings`` from the
    config (``powerplanner.core_settings.build_planner`` does both).

    ``static_caps_watts`` fixes per-role caps for ``dynamo-power``/``proportional`` (default: TDP or
    ``settings.static_caps_watts``); ours also considers them, so it can always do at least as
    well as a static allocation.
    """
    entry = policy_entry(policy or settings.policy)
    learns = entry.calibrates or (entry.may_calibrate and settings.calibration.enabled)
    if learns != settings.calibration.enabled:
        settings = dataclasses.replace(settings, calibration=dataclasses.replace(settings.calibration, enabled=learns))
    kit = Toolkit(settings, profile, static_caps_watts)
    rules = entry.sizing(settings.target_utilization)
    return Planner(settings, profile, entry.build(kit, entry.name), kit, rules, entry.receives_oracle_load)
