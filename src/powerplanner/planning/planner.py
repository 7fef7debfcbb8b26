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
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from powerplanner.config import Config
from powerplanner.errors import UserError
from powerplanner.model.profile import PowerProfile
from powerplanner.model.roles import ROLES, Role
from powerplanner.model.values import Decision, LoadForecast, Observation, Reason, RoleState, RoleTarget
from powerplanner.planning.fail_closed import cut_only_targets
from powerplanner.planning.optimizer import Allocation, evaluate
from powerplanner.planning.policy import Choice, PlanContext, Policy, Toolkit
from powerplanner.planning.predictors import LoadPredictor
from powerplanner.planning.registry import policy_entry
from powerplanner.planning.sizing import Corrections, SizingRules, dynamo_corrections, observed_corrections
from powerplanner.planning.transitions import current_provisioned_watts, plan_transition

_EPS_S = 1e-9


def _finite(x: float | None) -> bool:
    return x is not None and isinstance(x, int | float) and math.isfinite(x)


class Planner:
    """Keeps the predictor state, the last adjustment time and the replica target between ticks."""

    def __init__(self, config: Config, profile: PowerProfile, policy: Policy, kit: Toolkit,
                 sizing_rules: SizingRules, receives_oracle_load: bool = False) -> None:
        self.policy_name = policy.name
        self.receives_oracle_load = receives_oracle_load  # planning/registry.py: the oracle's entry says so
        self._config = config
        self._policy = policy
        self._kit = kit
        self._rules = sizing_rules
        self._profile = profile
        self._predictor = LoadPredictor(config.planner.predictor)
        self._last_adjust_s: float | None = None
        self._targets: dict[Role, RoleTarget] | None = None
        self._forecast: LoadForecast | None = None
        self._corrections = Corrections()
        self._profile_corrections = Corrections()
        self._idle_ticks = 0
        self._last_budget_watts: float | None = None
        self._last_isl: float | None = None
        self._last_osl: float | None = None
        # observed rate and its one-step prediction error over the last burst_window_intervals adjustments
        self._recent_rates: list[float] = []
        self._recent_errors: list[float] = []

    @property
    def targets(self) -> Mapping[Role, RoleTarget] | None:
        """The replica/cap targets in force (None before the first tick)."""
        return self._targets

    def tick(self, obs: Observation, oracle_load: LoadForecast | None = None) -> Decision:
        """Plan one tick. ``oracle_load`` (the true next-interval load) is used only by ``oracle``."""
        clean, problems = self._sanitise(obs)
        reasons: list[Reason] = []
        notes: list[str] = list(problems)
        if problems:
            reasons.append(Reason.BAD_OBSERVATION)
        budget = clean.budget_watts
        if self._last_adjust_s is not None and _finite(obs.time_s) and clean.time_s < self._last_adjust_s:
            notes.append(f"time went backwards ({clean.time_s:g} s < {self._last_adjust_s:g} s); restarting the "
                         "adjustment clock")
            self._last_adjust_s = None
        first = self._last_adjust_s is None
        adjust = first or (
            _finite(obs.time_s)
            and self._last_adjust_s is not None
            and clean.time_s - self._last_adjust_s >= self._config.planner.adjustment_interval_s - _EPS_S
        )
        current_desired = {role: clean.role(role).desired_replicas for role in ROLES}
        held_replicas = (
            {role: t.replicas for role, t in self._targets.items()}
            if self._targets is not None
            else {role: self._kit.clamp_replicas(role, current_desired[role]) for role in ROLES}
        )
        state = self._data_state(obs, clean)
        if state == "source_error":
            reasons.append(Reason.SOURCE_ERROR_HOLD)
            notes.append(f"metrics source failed: {obs.source_error or 'unknown error'}; holding targets")
        elif state == "missing":
            reasons.append(Reason.METRICS_MISSING)
            notes.append("no load data this window (request rate absent or NaN, or no ISL/OSL while requests "
                         "arrive): holding the replica target, caps not raised; only a requests counter present "
                         "with zero increase counts as idle")
        deployed = self._deployed_gpus(clean)
        mismatch = {role: deployed[role] for role in ROLES if deployed[role] != self._kit.gpus_per_replica[role]}
        oracle = self.receives_oracle_load and oracle_load is not None

        if adjust:
            if _finite(obs.time_s):
                self._last_adjust_s = clean.time_s
            predicted = self._predictor.forecast()
            if state == "ok":
                self._idle_ticks = 0
                self._update_corrections(clean)
                self._predictor.observe(clean.request_rate_per_s, clean.isl_tokens, clean.osl_tokens)
                self._last_isl, self._last_osl = clean.isl_tokens, clean.osl_tokens
                self._remember_rate(clean.request_rate_per_s, predicted)
            elif state == "idle":
                self._idle_ticks += 1
                self._remember_rate(0.0, predicted)
            else:  # backlog, missing or failed data: no evidence of idleness, the idle count restarts
                self._idle_ticks = 0
            self._forecast = oracle_load if oracle else self._predictor.forecast()
        forecast = self._forecast
        if not adjust:
            forecast = self._cap_tick_forecast(clean, state, oracle_load if oracle else None)

        ctx = PlanContext(
            obs=clean,
            budget_watts=budget,
            forecast=forecast,
            peak_forecast=self._peak_forecast(forecast) if adjust else None,
            corrections=self._corrections,
            profile_corrections=self._profile_corrections,
            adjust=adjust,
            first=first,
            held=self._targets,
            current_replicas=current_desired,
        )
        current_states = {role: clean.role(role) for role in ROLES}
        if mismatch:
            choice = self._cut_only(current_states, deployed, mismatch, budget)
        else:
            try:
                choice = self._choose(ctx, adjust, state, oracle, held_replicas, reasons, notes)
            except UserError as exc:
                # A profile that refuses this load (e.g. a measured table that ends before this ISL) must not
                # stop the planner: hold the replicas, caps that fit the budget, and say why.
                notes.append(f"planning failed for this load ({'; '.join(exc.lines)}); holding the replica target")
                reasons.append(Reason.BAD_OBSERVATION)
                ctx = dataclasses.replace(ctx, forecast=None)
                choice = self._policy.hold(ctx, held_replicas)
            if state in ("missing", "source_error"):
                choice = self._no_cap_raise(choice, current_states)
        targets = dict(choice.targets)
        reasons.extend(r for r in choice.reasons if r not in reasons)
        notes.extend(choice.notes)

        current_prov = current_provisioned_watts(current_states, deployed, self._kit.max_cap_watts)
        limit: float | None = budget if choice.power_safe else None
        projected = sum(targets[r].replicas * deployed[r] * targets[r].cap_watts for r in ROLES)
        if limit is not None and self._config.budget.mode == "measured" and not mismatch:
            limit = max(budget, projected, current_prov)
        steps = plan_transition(
            current_states, targets, deployed, limit,
            self._config.planner.gpu_pool if choice.power_safe else None, self._kit.max_cap_watts,
        )
        if current_prov > budget + 1e-6 and choice.power_safe and Reason.BUDGET_CUT not in reasons:
            reasons.append(Reason.BUDGET_CUT)
        if any(s.wait_for_drain for s in steps):
            reasons.append(Reason.WAIT_FOR_DRAIN)
        settled = [s.provisioned_after_watts for s in steps if not s.wait_for_drain]
        if choice.power_safe and settled and settled[-1] > budget + 1e-6:
            notes.append(
                f"provisioned {settled[-1]:,.0f} W stays above the {budget:,.0f} W budget until draining "
                "replicas release their GPUs (worst case counted)"
            )
        # Under a GPU-count mismatch the profile describes another deployment: no prediction, the worst case.
        alloc = None if mismatch else (choice.allocation or self._evaluate(targets, ctx))
        self._targets = targets
        draw = alloc.predicted_draw_watts if alloc is not None else self._idle_draw(targets)
        if mismatch:
            draw = projected
        return Decision(
            time_s=clean.time_s,
            policy=self.policy_name,
            prefill=targets[Role.PREFILL],
            decode=targets[Role.DECODE],
            budget_watts=budget,
            reasons=tuple(reasons),
            projected_provisioned_watts=projected,
            predicted_draw_watts=draw,
            predicted_attainment=(
                {"prefill": alloc.attainment_prefill, "decode": alloc.attainment_decode} if alloc is not None else {}
            ),
            forecast=ctx.forecast,
            steps=steps,
            replicas_may_change=adjust or choice.replicas_changed_on_cap_tick,
            budget_limited=choice.budget_limited,
            infeasible=choice.infeasible,
            notes=tuple(notes),
        )

    def _deployed_gpus(self, obs: Observation) -> dict[Role, int]:
        """GPUs per replica as deployed; the profile's where the observation does not say."""
        out = {}
        for role in ROLES:
            stated = obs.role(role).gpus_per_replica
            out[role] = stated if stated is not None else self._kit.gpus_per_replica[role]
        return out

    def _cut_only(self, current: Mapping[Role, RoleState], deployed: Mapping[Role, int],
                  mismatch: Mapping[Role, int], budget_watts: float) -> Choice:
        """Fail closed on a GPU-count mismatch (:mod:`powerplanner.planning.fail_closed`): the policy, sized on
        the profile's TP, is not asked; the targets only cut, counted with the deployed GPUs."""
        kit = self._kit
        fc = cut_only_targets(
            current, deployed, kit.cap_levels, {role: kit.bounds[role].min_replicas for role in ROLES},
            budget_watts, kit.max_cap_watts,
        )
        said = "; ".join(
            f"{role.value}: the deployment has {gpus} GPU(s) per replica, profile {self._profile.name} assumes "
            f"{kit.gpus_per_replica[role]}" for role, gpus in mismatch.items()
        )
        notes = [f"{said}; only cutting power (no scale-up, no cap raise), counted with the deployed GPUs, until "
                 "a profile with the deployment's TP size is given"]
        reasons = [Reason.GPU_COUNT_MISMATCH]
        if not fc.fits:
            notes.append(f"even every replica removal allowed leaves {fc.provisioned_watts:,.0f} W over the "
                         f"{budget_watts:,.0f} W budget")
        if fc.infeasible:
            reasons.append(Reason.INFEASIBLE_MIN_REPLICAS)
        return Choice(targets=fc.targets, reasons=tuple(reasons), infeasible=fc.infeasible,
                      budget_limited=fc.infeasible, notes=tuple(notes), replicas_changed_on_cap_tick=True)

    def _no_cap_raise(self, choice: Choice, current: Mapping[Role, RoleState]) -> Choice:
        """Missing or failed data is no reason to add power: caps stay at or below the held targets' (before
        the first decision: the caps in force, where known)."""
        if not choice.power_safe:
            return choice
        ceiling: dict[Role, float | None] = (
            {role: t.cap_watts for role, t in self._targets.items()} if self._targets is not None
            else {role: current[role].applied_cap_watts for role in ROLES}
        )
        targets = {}
        for role, t in choice.targets.items():
            top = ceiling[role]
            targets[role] = t if top is None or t.cap_watts <= top else dataclasses.replace(t, cap_watts=top)
        if targets == dict(choice.targets):
            return choice
        return dataclasses.replace(choice, targets=targets, allocation=None)

    def _remember_rate(self, rate_per_s: float | None, predicted: LoadForecast | None) -> None:
        """Keep the observed rate and the predictor's error on it (observed - predicted) for the burst window."""
        window = self._config.planner.burst_window_intervals
        if rate_per_s is None or window == 0:
            return
        self._recent_rates.append(rate_per_s)
        del self._recent_rates[:-window]
        if predicted is not None:
            self._recent_errors.append(rate_per_s - predicted.request_rate_per_s)
            del self._recent_errors[:-window]

    def _peak_forecast(self, forecast: LoadForecast | None) -> LoadForecast | None:
        """The load ours sizes replicas for: the forecast with burst headroom; ``None`` when there is none.

        Why: a replica takes minutes to start, a cap seconds to change. Sized for the forecast (a mean that
        lags bursts), a bursty deployment sheds replicas in every lull and meets the next burst with too few
        for an interval plus a start-up. The headroom is ``planner.burst_error_multiple`` times the mean
        under-forecast (``max(0, observed - predicted)``) over the last ``planner.burst_window_intervals``
        adjustments, so it appears only where the predictor has recently been caught out, and it grows with
        how badly. The rate ``forecast + headroom`` is sized at full SLA capacity (the target utilisation's
        own headroom is not added on top of it) and capped at the window's peak observed rate (sized like any
        forecast), so a steady or smoothly changing load (small errors) keeps its mean sizing and its energy.
        Caps still follow the current load on every cap tick; replicas kept for a burst draw idle power.
        """
        if forecast is None or not self._recent_errors:
            return None
        planner = self._config.planner
        under = sum(max(0.0, e) for e in self._recent_errors) / len(self._recent_errors)
        upper = (forecast.request_rate_per_s + planner.burst_error_multiple * under) * planner.target_utilization
        peak = min(max(self._recent_rates), upper)
        if peak <= forecast.request_rate_per_s:
            return None
        return dataclasses.replace(forecast, request_rate_per_s=peak)

    def _cap_tick_forecast(self, obs: Observation, state: str, oracle_load: LoadForecast | None) -> LoadForecast | None:
        """The load caps are sized for between adjustments.

        Caps change within seconds, so a cap tick reacts to what is happening now: the interval's forecast,
        raised to the currently observed rate if that is higher (a surge mid-interval is met with higher
        caps on the replicas already there), with the latency corrections refreshed from this window (the
        TTFT backlog term among them). The oracle sees the true load of the coming interval instead.
        Nothing here feeds the predictors, which stay on the adjustment timescale.
        """
        if oracle_load is not None:
            return oracle_load
        forecast = self._forecast
        if state != "ok" or obs.request_rate_per_s is None:
            return forecast
        if forecast is None:
            # No interval forecast yet (warm-up, or traffic resuming after an idle reset): size the caps for
            # the load observed now rather than holding caps chosen for no load.
            assert obs.isl_tokens is not None and obs.osl_tokens is not None  # state "ok" guarantees them
            self._update_corrections(obs, dynamo=False)
            return LoadForecast(obs.request_rate_per_s, obs.isl_tokens, obs.osl_tokens)
        self._update_corrections(obs, dynamo=False)
        if obs.request_rate_per_s <= forecast.request_rate_per_s:
            return forecast
        return dataclasses.replace(forecast, request_rate_per_s=obs.request_rate_per_s)

    # -- the shared decision flow -------------------------------------------------------------------

    def _choose(self, ctx: PlanContext, adjust: bool, state: str, oracle: bool, held: dict[Role, int],
                reasons: list[Reason], notes: list[str]) -> Choice:
        if adjust and (state == "ok" or oracle) and ctx.forecast is not None:
            return self._policy.adjust(ctx)
        if adjust and state == "idle" and self._idle_ticks >= self._config.planner.idle_ticks_to_min:
            reasons.append(Reason.IDLE_SCALE_TO_MIN)
            self._predictor.reset()
            self._recent_rates.clear()
            self._recent_errors.clear()
            self._forecast = None
            minimum = {role: self._kit.bounds[role].min_replicas for role in ROLES}
            idle_ctx = dataclasses.replace(
                ctx, forecast=LoadForecast(0.0, self._last_isl or 1.0, self._last_osl or 1.0)
            )
            return self._policy.hold(idle_ctx, minimum)
        if adjust and state == "backlog":
            reasons.append(Reason.HOLD_NO_DATA)
            notes.append(
                f"no arrivals this interval but latency above target (TTFT {_ms(ctx.obs.ttft_ms)}, ITL "
                f"{_ms(ctx.obs.itl_ms)}): a backlog is still being served, so not idle; holding the replica target"
            )
        elif adjust and state in ("idle", "ok", "missing"):
            reasons.append(Reason.HOLD_NO_DATA)
            if state != "missing":  # missing data has its own note
                notes.append("no usable traffic data this interval; holding the replica target")
        return self._policy.hold(ctx, held)

    def _data_state(self, raw: Observation, clean: Observation) -> str:
        """ok / idle / backlog / missing / source_error for the load fields of this observation.

        ``idle`` needs positive evidence: a rate of exactly 0 (the requests counter is there and did not grow).
        No rate at all (``None``: absent series, NaN), a bad one, or requests without ISL/OSL is ``missing``:
        it says nothing about traffic, so it never moves replicas toward the minimum.
        ``backlog``: nothing arrived in the window, yet requests finished in it (TTFT or ITL samples exist)
        with latency above the target. Those requests queued behind earlier work; scaling to the minimum
        now would strand them, so it is not idle.
        """
        if not raw.source_ok:
            return "source_error"
        rate = raw.request_rate_per_s
        if rate is None or not (_finite(rate) and rate >= 0):
            return "missing"
        if rate == 0:
            ttft_s = clean.ttft_ms / 1000.0 if clean.ttft_ms is not None else None
            itl_s = clean.itl_ms / 1000.0 if clean.itl_ms is not None else None
            if (ttft_s is not None and ttft_s > self._kit.sla_ttft_s) or (
                itl_s is not None and itl_s > self._kit.sla_itl_s
            ):
                return "backlog"
            return "idle"
        if clean.isl_tokens is None or clean.osl_tokens is None:
            return "missing"
        return "ok"

    def _sanitise(self, obs: Observation) -> tuple[Observation, list[str]]:
        """Replace unusable values with explicit ``None``/0 and say what was wrong."""
        problems: list[str] = []
        changes: dict[str, object] = {}
        budget = obs.budget_watts
        if not (_finite(budget) and budget > 0):
            fallback = self._last_budget_watts if self._last_budget_watts is not None else self._config.budget.watts
            problems.append(f"budget_watts={budget!r} is not a positive number; using {fallback:g} W")
            changes["budget_watts"] = fallback
        else:
            self._last_budget_watts = budget
        if not _finite(obs.time_s):
            previous = self._last_adjust_s if self._last_adjust_s is not None else 0.0
            problems.append(f"time_s={obs.time_s!r} is not a number; treated as a cap tick")
            changes["time_s"] = previous
        rate = obs.request_rate_per_s
        if rate is not None and not (_finite(rate) and rate >= 0):
            problems.append(f"request_rate_per_s={rate!r} is not a non-negative number; holding")
            changes["request_rate_per_s"] = None
        for name in ("isl_tokens", "osl_tokens"):
            value = getattr(obs, name)
            if value is not None and not (_finite(value) and value > 0):
                problems.append(f"{name}={value!r} is not a positive number; ignored")
                changes[name] = None
        if obs.source_ok and _finite(rate) and rate is not None and rate > 0:
            for name in ("isl_tokens", "osl_tokens"):
                if getattr(obs, name) is None:
                    problems.append(f"{name} is missing while requests arrive; holding")
        for name in ("ttft_ms", "itl_ms", "measured_power_watts"):
            value = getattr(obs, name)
            if value is not None and not (_finite(value) and value >= 0):
                problems.append(f"{name}={value!r} is not a non-negative number; ignored")
                changes[name] = None
        for role in ROLES:
            rs = obs.role(role)
            fixed = self._sanitise_role(role, rs, problems)
            if fixed is not rs:
                changes[role.value] = fixed
        return (dataclasses.replace(obs, **changes) if changes else obs), problems  # type: ignore[arg-type]

    @staticmethod
    def _sanitise_role(role: Role, rs: RoleState, problems: list[str]) -> RoleState:
        counts = {}
        for name in ("ready_replicas", "starting_replicas", "draining_replicas"):
            value = getattr(rs, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                try:
                    fixed = max(0, int(value)) if _finite(float(value)) else 0
                except (TypeError, ValueError):
                    fixed = 0
                problems.append(f"{role.value}.{name}={value!r} is not a count >= 0; using {fixed}")
                counts[name] = fixed
        cap = rs.applied_cap_watts
        cap_fix: dict[str, float | None] = {}
        if cap is not None and not (_finite(cap) and cap > 0):
            problems.append(f"{role.value}.applied_cap_watts={cap!r} is not a positive number; treated as unknown")
            cap_fix["applied_cap_watts"] = None
        draw = rs.measured_draw_watts
        if draw is not None and not (_finite(draw) and draw >= 0):
            problems.append(f"{role.value}.measured_draw_watts={draw!r} is not a number >= 0; ignored")
            cap_fix["measured_draw_watts"] = None
        gpus = rs.gpus_per_replica
        if gpus is not None and (not isinstance(gpus, int) or isinstance(gpus, bool) or gpus < 1):
            problems.append(f"{role.value}.gpus_per_replica={gpus!r} is not a count >= 1; the profile's is assumed")
            cap_fix["gpus_per_replica"] = None
        if not counts and not cap_fix:
            return rs
        return dataclasses.replace(rs, **counts, **cap_fix)  # type: ignore[arg-type]

    def _update_corrections(self, obs: Observation, dynamo: bool = True) -> None:
        caps = {}
        for role in ROLES:
            applied = obs.role(role).applied_cap_watts
            held = self._targets[role].cap_watts if self._targets is not None else self._kit.tdp_watts
            caps[role] = self._kit.profile.gpu.clamp(applied if applied is not None else held)
        self._corrections = observed_corrections(
            self._profile, obs, caps[Role.PREFILL], caps[Role.DECODE], self._corrections,
            ttft_target_s=self._kit.sla_ttft_s, drain_interval_s=self._config.planner.adjustment_interval_s,
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
    config: Config,
    profile: PowerProfile,
    policy: str | None = None,
    static_caps_watts: Mapping[Role, float] | None = None,
) -> Planner:
    """Build the Planner for ``policy`` (default ``config.planner.policy``).

    ``static_caps_watts`` fixes per-role caps for ``dynamo-power``/``proportional`` (default: TDP or
    ``config.planner.static_caps_watts``); ours also considers them, so it can always do at least as
    well as a static allocation.
    """
    entry = policy_entry(policy or config.planner.policy)
    kit = Toolkit(config, profile, static_caps_watts)
    rules = entry.sizing(config.planner.target_utilization)
    return Planner(config, profile, entry.build(kit, entry.name), kit, rules, entry.receives_oracle_load)
