"""Our policy: joint replicas x power caps at least predicted energy under the budget.

On an adjustment tick it runs the full optimiser (:mod:`powerplanner.planning.optimizer`) over every
cap level of both roles. On a cap tick it keeps the replica target and re-optimises only the caps for
the current budget and forecast; if even the lowest caps do not fit a lowered budget, it removes
replicas (``budget_cut``) rather than waiting for the next adjustment interval.

Bursty load: on an adjustment tick with a peak forecast (``PlanContext.peak_forecast``, see
``Planner._peak_forecast``) replicas are sized for the recent peak and caps for the forecast, because
replicas take minutes to start and caps seconds to change; while replicas start, a cap tick chooses caps
for the replicas that are ready (:meth:`OursPolicy._serving_capacities`).

``oracle`` is the same policy; the Planner feeds it the true next-interval load instead of the
prediction, so it bounds what better prediction could buy with the same action delays.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from powerplanner.model.roles import Role
from powerplanner.model.values import LoadForecast, Reason, RoleTarget
from powerplanner.planning.optimizer import Allocation, Bounds, optimise, optimise_caps
from powerplanner.planning.policy import Choice, PlanContext, Toolkit
from powerplanner.planning.sizing import RoleCapacity, ours_sizing_rules, under_binding_budget


class OursPolicy:
    def __init__(self, kit: Toolkit, name: str = "ours") -> None:
        self.name = name
        self._kit = kit
        self._rules = ours_sizing_rules(kit.settings.target_utilization)

    def adjust(self, ctx: PlanContext) -> Choice:
        assert ctx.forecast is not None
        kit = self._kit
        constraints = kit.constraints(ctx.budget_watts)
        p, d = kit.capacities(ctx.forecast, ctx.corrections, self._rules)
        alloc = optimise(p, d, kit.bounds[Role.PREFILL], kit.bounds[Role.DECODE], constraints)
        if alloc.budget_limited and (bound := under_binding_budget(ctx.corrections)) != ctx.corrections:
            return self.adjust(dataclasses.replace(ctx, corrections=bound))  # a fixed point: recurses once
        notes = _reachability_notes(p.sla_reachable, d.sla_reachable)
        if ctx.peak_forecast is not None:
            # Replicas for the recent peak (they take minutes to start), caps for the forecast (seconds).
            pp, pd = kit.capacities(ctx.peak_forecast, ctx.corrections, self._rules)
            peak = optimise(pp, pd, kit.bounds[Role.PREFILL], kit.bounds[Role.DECODE], constraints)
            n_p = max(peak.prefill_replicas, alloc.prefill_replicas)
            n_d = max(peak.decode_replicas, alloc.decode_replicas)
            if (n_p, n_d) != (alloc.prefill_replicas, alloc.decode_replicas):
                held = optimise_caps(p, d, n_p, n_d, constraints)
                if held is not None and held.served_fraction >= alloc.served_fraction - 1e-9:
                    alloc = held
                    notes = (*notes, f"replicas sized for the recent peak of "
                             f"{ctx.peak_forecast.request_rate_per_s:.3g} req/s; caps for the forecast")
        return self._choice(alloc, (Reason.SLA_SIZED, Reason.ENERGY_OPTIMAL), notes)

    def hold(self, ctx: PlanContext, replicas: Mapping[Role, int]) -> Choice:
        if ctx.adjust:  # replicas may move on this tick: back inside the configured bounds
            replicas = {r: self._kit.clamp_replicas(r, n) for r, n in replicas.items()}
        choice = self._hold(ctx, replicas)
        below = [r for r, t in choice.targets.items() if t.replicas < self._kit.bounds[r].min_replicas]
        if below and not choice.infeasible:
            # a held target below the minimum is still the earlier infeasibility: keep saying so
            return dataclasses.replace(
                choice,
                infeasible=True,
                reasons=(*choice.reasons, Reason.INFEASIBLE_MIN_REPLICAS),
                notes=(*choice.notes, "held replicas are below the minimum; restored on an adjustment tick "
                       "once the minimum fits the budget"),
            )
        return choice

    def _hold(self, ctx: PlanContext, replicas: Mapping[Role, int]) -> Choice:
        kit = self._kit
        if ctx.forecast is None:
            # Nothing to size caps for (no traffic, no forecast): keep the caps in force when they fit the
            # budget. Choosing "the highest caps that fit" here made caps flip between the energy-optimal
            # idle caps (adjustment ticks) and TDP (cap ticks) every few seconds while idle. Only the first
            # tick, with no caps chosen yet, takes the highest caps that fit.
            held = ctx.held
            caps = (
                {role: held[role].cap_watts for role in replicas}
                if held is not None
                else kit.highest_caps_that_fit(replicas, ctx.budget_watts)
            )
            targets = {role: RoleTarget(replicas[role], caps[role]) for role in replicas}
            if held is not None and _provisioned(kit, targets) > ctx.budget_watts + 1e-6:
                caps = kit.highest_caps_that_fit(replicas, ctx.budget_watts)
                targets = {role: RoleTarget(replicas[role], caps[role]) for role in replicas}
            fits = _provisioned(kit, targets) <= ctx.budget_watts + 1e-6
            if fits or kit.settings.measured_budget:
                return Choice(targets=targets, reasons=(Reason.CAP_TICK_ONLY,))
            return self._shrink_without_forecast(ctx, replicas)
        constraints = kit.constraints(ctx.budget_watts)
        p, d = kit.capacities(ctx.forecast, ctx.corrections, self._rules)
        sp, sd = self._serving_capacities(ctx, ctx.forecast, (p, d), replicas)
        alloc = optimise_caps(sp, sd, replicas[Role.PREFILL], replicas[Role.DECODE], constraints)
        if alloc is not None:
            return self._choice(alloc, (Reason.CAP_TICK_ONLY,), ())
        # Even the lowest caps do not fit: remove replicas now, never add any.
        bp = kit.bounds[Role.PREFILL]
        bd = kit.bounds[Role.DECODE]
        np_, nd_ = replicas[Role.PREFILL], replicas[Role.DECODE]
        alloc = optimise(p, d, Bounds(min(bp.min_replicas, np_), np_), Bounds(min(bd.min_replicas, nd_), nd_),
                         constraints)
        return self._choice(alloc, (Reason.BUDGET_CUT,), (), replicas_changed=True)

    def _serving_capacities(self, ctx: PlanContext, forecast: LoadForecast,
                            capacities: tuple[RoleCapacity, RoleCapacity],
                            replicas: Mapping[Role, int]) -> tuple[RoleCapacity, RoleCapacity]:
        """Capacities for choosing caps on a cap tick: the replicas ready now must carry the load.

        A starting replica holds its GPUs (and its cap's share of the budget) for minutes before it serves.
        Choosing caps as if every target replica served lowers the caps of the ready ones exactly while a
        scale-up is under way, i.e. in a burst. So where fewer replicas are ready than targeted, the role's
        load is scaled by ``target / ready x target_utilization`` (when above 1): the caps let the ready
        replicas serve the forecast at full SLA capacity, while the budget still counts every target
        replica. Full capacity rather than the target utilisation, because the shortfall lasts one start-up,
        and caps that high for every scale-up cost energy for little gain.
        """
        kit = self._kit
        scaled = list(capacities)  # ``capacities``: the forecast's own, kept for a role that needs no scaling
        for index, role in enumerate((Role.PREFILL, Role.DECODE)):
            ready = ctx.obs.role(role).ready_replicas
            scale = replicas[role] / ready * kit.settings.target_utilization if ready > 0 else 1.0
            if scale > 1.0:
                load = dataclasses.replace(forecast, request_rate_per_s=forecast.request_rate_per_s * scale)
                scaled[index] = kit.capacities(load, ctx.corrections, self._rules)[index]
        return scaled[0], scaled[1]

    def _shrink_without_forecast(self, ctx: PlanContext, replicas: Mapping[Role, int]) -> Choice:
        """No forecast and the held replicas do not fit at the lowest caps: shed replicas, balanced."""
        kit = self._kit
        n = {role: replicas[role] for role in replicas}
        low = {role: kit.cap_levels[role][0] for role in replicas}
        while _provisioned(kit, {r: RoleTarget(n[r], low[r]) for r in n}) > ctx.budget_watts + 1e-6:
            role = max(n, key=lambda r: (n[r] - kit.bounds[r].min_replicas, n[r] * kit.gpus_per_replica[r]))
            if n[role] == 0:
                break
            n[role] -= 1
        infeasible = any(n[r] < kit.bounds[r].min_replicas for r in n)
        reasons = (Reason.BUDGET_CUT, Reason.INFEASIBLE_MIN_REPLICAS) if infeasible else (Reason.BUDGET_CUT,)
        return Choice(
            targets={r: RoleTarget(n[r], low[r]) for r in n},
            reasons=reasons,
            infeasible=infeasible,
            budget_limited=True,
            replicas_changed_on_cap_tick=True,
        )

    def _choice(self, alloc: Allocation, base: tuple[Reason, ...], notes: tuple[str, ...],
                replicas_changed: bool = False) -> Choice:
        reasons = list(base)
        if alloc.budget_limited:
            reasons.append(Reason.BUDGET_LIMITED)
        if alloc.gpu_pool_limited:
            reasons.append(Reason.GPU_POOL_LIMITED)
        if alloc.infeasible:
            reasons.append(Reason.INFEASIBLE_MIN_REPLICAS)
        return Choice(
            targets={
                Role.PREFILL: RoleTarget(alloc.prefill_replicas, alloc.prefill_cap_watts),
                Role.DECODE: RoleTarget(alloc.decode_replicas, alloc.decode_cap_watts),
            },
            reasons=tuple(reasons),
            budget_limited=alloc.budget_limited,
            infeasible=alloc.infeasible,
            allocation=alloc,
            notes=notes,
            replicas_changed_on_cap_tick=replicas_changed,
        )


def _provisioned(kit: Toolkit, targets: Mapping[Role, RoleTarget]) -> float:
    return sum(t.replicas * kit.gpus_per_replica[r] * t.cap_watts for r, t in targets.items())


def _reachability_notes(prefill_ok: bool, decode_ok: bool) -> tuple[str, ...]:
    notes = []
    if not prefill_ok:
        notes.append("prefill: no cap meets the TTFT target even unloaded; sized on raw throughput")
    if not decode_ok:
        notes.append("decode: no cap meets the ITL target even at batch 1; sized on raw throughput")
    return tuple(notes)
