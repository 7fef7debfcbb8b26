"""Baseline policies behind the same interface as ours, each faithful to its documented behaviour.

- ``static``: fixed replicas (the initial observation's times ``planner.baseline_replica_headroom``, clamped to
  the configured bounds; the configured minimum if the deployment starts empty), caps at TDP. No power awareness.

Every baseline sizes for ``planner.baseline_replica_headroom`` (default 1.0, Dynamo's rule) times the load: the
baselines' over-provisioning knob, as ``planner.target_utilization`` is ours (docs/simulator.md, "Headline").
- ``dynamo-sla``: Dynamo's SLA planner sizing (see :mod:`powerplanner.planning.sizing`) at TDP, with
  Dynamo's GPU ceiling clamp when a GPU pool is configured. No power awareness, caps at TDP.
- ``dynamo-power``: the same sizing, then Dynamo's power-budget clamp over fixed per-role caps
  (:mod:`powerplanner.planning.dynamo_budget`: ceiling clamp, staging of opposing rebalances, startup
  feasibility gate). Dynamo's profile has no power dimension, so it sizes with throughput at TDP even
  when the static caps are lower; its correction factors compare observed latency with that profile.
  The caps never change, and the budget is applied on adjustment ticks only (Dynamo has no cap tick).
- ``proportional``: the seed's rule (shared/seed/power-aware-autoscaling-changelog.md, "Apply power
  budget constraint"): required_power = sum(replicas x cap x TP); if it exceeds the budget, both roles
  are multiplied by budget/required_power and ``int()``-truncated, even to zero; caps static.

All of them share the Planner's transition planner; the power-aware ones (dynamo-power, proportional)
plan their steps against the budget, the others in the same order without a limit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from powerplanner.model.roles import ROLES, Role
from powerplanner.model.values import Reason, RoleTarget
from powerplanner.planning.dynamo_budget import apply_power_budget, gpu_ceiling_clamp, minimum_power_footprint_fits
from powerplanner.planning.policy import Choice, PlanContext, Toolkit
from powerplanner.planning.sizing import dynamo_replicas, dynamo_sizing_rules

_DYNAMO_RULES = dynamo_sizing_rules()


def _targets(replicas: Mapping[Role, int], caps: Mapping[Role, float]) -> dict[Role, RoleTarget]:
    return {role: RoleTarget(int(replicas[role]), caps[role]) for role in ROLES}


class StaticPolicy:
    """Fixed replicas, caps at TDP."""

    name = "static"

    def __init__(self, kit: Toolkit) -> None:
        self._kit = kit
        self._replicas: dict[Role, int] | None = None

    def _fixed(self, ctx: PlanContext) -> dict[Role, int]:
        if self._replicas is None:
            headroom = self._kit.settings.baseline_replica_headroom
            self._replicas = {
                role: self._kit.clamp_replicas(role, math.ceil(ctx.current_replicas[role] * headroom - 1e-9))
                if ctx.current_replicas[role] > 0
                else self._kit.bounds[role].min_replicas
                for role in ROLES
            }
        return self._replicas

    def adjust(self, ctx: PlanContext) -> Choice:
        tdp = {role: self._kit.tdp_watts for role in ROLES}
        return Choice(targets=_targets(self._fixed(ctx), tdp), reasons=(Reason.STATIC,), power_safe=False)

    def hold(self, ctx: PlanContext, replicas: Mapping[Role, int]) -> Choice:
        return self.adjust(ctx)


def _dynamo_sizing(kit: Toolkit, ctx: PlanContext) -> dict[Role, int]:
    """Dynamo's SLA replicas at TDP, bounded, then its GPU ceiling clamp."""
    assert ctx.forecast is not None
    tdp = (kit.tdp_watts,)
    p, d = kit.capacities(ctx.forecast, ctx.profile_corrections, _DYNAMO_RULES, {Role.PREFILL: tdp, Role.DECODE: tdp})
    bp, bd = kit.bounds[Role.PREFILL], kit.bounds[Role.DECODE]
    headroom = kit.settings.baseline_replica_headroom
    n_p = min(bp.max_replicas, dynamo_replicas(p, bp.min_replicas, headroom))
    n_d = min(bd.max_replicas, dynamo_replicas(d, bd.min_replicas, headroom))
    n_p, n_d = gpu_ceiling_clamp(n_p, n_d, kit.gpus_per_replica[Role.PREFILL], kit.gpus_per_replica[Role.DECODE],
                                 kit.settings.gpu_pool, bp.min_replicas, bd.min_replicas)
    return {Role.PREFILL: n_p, Role.DECODE: n_d}


def _minimums_exceed_pool(kit: Toolkit) -> bool:
    pool = kit.settings.gpu_pool
    need = sum(kit.bounds[role].min_replicas * kit.gpus_per_replica[role] for role in ROLES)
    return pool is not None and need > pool


class DynamoSlaPolicy:
    """Dynamo's SLA planner: replica sizing only, caps at TDP."""

    name = "dynamo-sla"

    def __init__(self, kit: Toolkit) -> None:
        self._kit = kit

    def adjust(self, ctx: PlanContext) -> Choice:
        tdp = {role: self._kit.tdp_watts for role in ROLES}
        return Choice(targets=_targets(_dynamo_sizing(self._kit, ctx), tdp), reasons=(Reason.SLA_SIZED,),
                      power_safe=False)

    def hold(self, ctx: PlanContext, replicas: Mapping[Role, int]) -> Choice:
        tdp = {role: self._kit.tdp_watts for role in ROLES}
        return Choice(targets=_targets(replicas, tdp), reasons=(), power_safe=False)


class DynamoPowerPolicy:
    """Dynamo's SLA sizing with its power-budget ceiling clamp over fixed per-role caps."""

    name = "dynamo-power"

    def __init__(self, kit: Toolkit) -> None:
        self._kit = kit
        self._caps = dict(kit.static_caps)
        self._watts = {role: kit.static_caps[role] * kit.gpus_per_replica[role] for role in ROLES}

    def _gate(self, budget: float) -> bool:
        b = self._kit.bounds
        return minimum_power_footprint_fits(budget, b[Role.PREFILL].min_replicas, b[Role.DECODE].min_replicas,
                                            self._watts[Role.PREFILL], self._watts[Role.DECODE])

    def adjust(self, ctx: PlanContext) -> Choice:
        if not self._gate(ctx.budget_watts):
            return self._fail_closed(ctx)
        proposed = _dynamo_sizing(self._kit, ctx)
        if _minimums_exceed_pool(self._kit):
            return Choice(
                targets=_targets(proposed, self._caps),
                reasons=(Reason.SLA_SIZED, Reason.INFEASIBLE_MIN_REPLICAS),
                infeasible=True,
                notes=("dynamo-power: the minimum replicas need more GPUs than planner.gpu_pool; Dynamo's GPU "
                       "ceiling clamp then returns (0, 0)",),
            )
        cur = {role: ctx.current_replicas[role] for role in ROLES}
        b = self._kit.bounds
        new_p, new_d, why = apply_power_budget(
            proposed[Role.PREFILL], proposed[Role.DECODE], cur[Role.PREFILL], cur[Role.DECODE],
            self._watts[Role.PREFILL], self._watts[Role.DECODE], ctx.budget_watts,
            b[Role.PREFILL].min_replicas, b[Role.DECODE].min_replicas,
        )
        reasons = [Reason.SLA_SIZED]
        notes: tuple[str, ...] = ()
        if why == "power_rebalance_staged":
            reasons.append(Reason.STAGED)
            notes = (f"dynamo staging: proposed ({proposed[Role.PREFILL]}, {proposed[Role.DECODE]}) from "
                     f"({cur[Role.PREFILL]}, {cur[Role.DECODE]}); parallel peak exceeds the budget, "
                     f"scale-up legs held",)
        elif why is not None:
            reasons.append(Reason.BUDGET_LIMITED)
        return Choice(
            targets=_targets({Role.PREFILL: new_p, Role.DECODE: new_d}, self._caps),
            reasons=tuple(reasons),
            budget_limited=why == "power_budget_clamped",
            notes=notes,
        )

    def hold(self, ctx: PlanContext, replicas: Mapping[Role, int]) -> Choice:
        if not self._gate(ctx.budget_watts):
            return self._fail_closed(ctx)
        return Choice(targets=_targets(replicas, self._caps), reasons=())

    def _fail_closed(self, ctx: PlanContext) -> Choice:
        held = ctx.held
        replicas = {role: held[role].replicas for role in ROLES} if held else dict(ctx.current_replicas)
        return Choice(
            targets=_targets(replicas, self._caps),
            reasons=(Reason.STARTUP_GATE, Reason.INFEASIBLE_MIN_REPLICAS),
            infeasible=True,
            notes=("dynamo-power: the minimum replicas at the static caps exceed the budget; "
                   "Dynamo fails closed (no scaling)",),
        )


class ProportionalPolicy:
    """The seed's proportional scale-down with int() truncation."""

    name = "proportional"

    def __init__(self, kit: Toolkit) -> None:
        self._kit = kit
        self._caps = dict(kit.static_caps)

    def adjust(self, ctx: PlanContext) -> Choice:
        required = _dynamo_sizing(self._kit, ctx)
        g = self._kit.gpus_per_replica
        required_power = sum(required[r] * self._caps[r] * g[r] for r in ROLES)
        reasons = [Reason.SLA_SIZED]
        limited = False
        if required_power > ctx.budget_watts:
            scale = ctx.budget_watts / required_power
            required = {r: int(required[r] * scale) for r in ROLES}
            reasons.append(Reason.BUDGET_LIMITED)
            limited = True
        below = [r.value for r in ROLES if required[r] < self._kit.bounds[r].min_replicas]
        notes = (
            (f"proportional truncation below min replicas for {', '.join(below)} (seed behaviour)",) if below else ()
        )
        return Choice(targets=_targets(required, self._caps), reasons=tuple(reasons), budget_limited=limited,
                      notes=notes)

    def hold(self, ctx: PlanContext, replicas: Mapping[Role, int]) -> Choice:
        return Choice(targets=_targets(replicas, self._caps), reasons=())
