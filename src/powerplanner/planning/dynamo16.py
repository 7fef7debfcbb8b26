"""``dynamo-1.6``: Dynamo's SLA planner with its defaults and rules as shipped, beside the tuned ``dynamo-power``.

``dynamo-sla`` and ``dynamo-power`` are Dynamo made stronger than it ships (60 s interval, an M/D/1 queueing
ceiling on prefill, correction factors, no step limit, no pending hold); this baseline is Dynamo as an operator
gets it, so the two can be compared (docs/planner.md, "Baselines and their sources"). What it does, each rule
checked against ai-dynamo/dynamo (read through the ``search`` tool; reproduced from the behaviour, not copied):

- **180 s interval, its own**: ``components/src/dynamo/planner/defaults.py`` (``adjustment_interval = 180``,
  read at 01127723) and ``config/defaults.py`` (``throughput_adjustment_interval = 180``, read at 1ca60155).
  The Planner's adjustment ticks come every ``planner.adjustment_interval_s``; between its own boundaries this
  policy holds, so it acts on the first Planner adjustment tick at least 180 s after its last action.
- **Prefill rule, no queueing**: ``core/perf_model/prefill.py`` ``find_best_engine_prefill_rps`` (read at
  4d3f6720) predicts the wall time of a prefill batch and takes ``engine_rps = B / wall_time(B x ISL)`` (with
  a linear regression the same for any B); ``core/throughput_scaling.py`` (read at 0c9050c9) then sizes
  ``ceil(demand_rps / engine_rps)``, at least ``min_endpoint``. Nothing models the wait in the queue (Dynamo
  issue #10528, "Planner SLA autoscaling should account for queue time under burst traffic", open). Ours:
  the batch of ``b`` prompts of the forecast ISL with the highest ``b x ISL / prefill_time(b x ISL)`` among
  those whose batch time meets the TTFT target (``b = 1`` when none does: Dynamo still sizes on the best
  achievable rate). Decode keeps Dynamo's rule (:mod:`powerplanner.planning.sizing`).
- **No correction factors**: the current throughput path (``throughput_scaling.py``) has none; the
  interpolator-era ``defaults.py`` already had ``no_correction``. Sized with factors 1.0.
- **At most +-8 replicas per role per adjustment**: PR #14296 "cap throughput scaling replica changes"
  (``max_throughput_scaling_replicas``, default 8, per component, up and down), applied before the GPU fit.
- **Pending hold**: ``core/state_machine.py`` ``_scaling_in_progress`` (read at 0272cbdd; expected != ready)
  and PR #9774 "skip disagg load scaling during active scale"; PR #14671 "allow scale-down while workers are
  starting" then let reductions through. So while any replica is starting, no role scales up; scale-downs go.
- **GPU-budget fit**: ``state_machine.py`` ``_apply_global_budget`` (shrink both by pool / total, keep the
  minimums, the rest to decode), with the decode-no-upscale fix, as :func:`gpu_ceiling_clamp`; ``(0, 0)``
  when even the minimums overshoot. Only when ``planner.gpu_pool`` is set (Dynamo's ``max_gpu_budget``).
- **Caps at TDP**: no power awareness beyond the GPU budget; transitions are planned without a power limit.

The load predictor stays the Planner's (``planner.predictor``, Holt by default): Dynamo's default is ARIMA via
statsmodels, not a dependency here; docs/planner.md ("Baselines and their sources") says why.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from powerplanner.model.roles import ROLES, Role
from powerplanner.model.values import LoadForecast, Reason, RoleTarget
from powerplanner.planning.dynamo_budget import gpu_ceiling_clamp
from powerplanner.planning.policy import Choice, PlanContext, Toolkit
from powerplanner.planning.sizing import Corrections, dynamo_replicas, dynamo_sizing_rules

DYNAMO16_INTERVAL_S = 180.0  # defaults.py: adjustment_interval
DYNAMO16_MAX_STEP = 8  # PR #14296: max_throughput_scaling_replicas
_MAX_PREFILL_BATCH = 256  # batches searched; the batch time's quadratic term ends the gain long before
_EPS_S = 1e-6


def prefill_replica_tokens_per_s(kit: Toolkit, isl_tokens: float, ttft_target_s: float, cap_watts: float) -> float:
    """Dynamo 1.6's prefill capacity of one replica: the best ``b x ISL / prefill_time(b x ISL)`` over batches
    whose time meets the TTFT target (``b = 1`` if none does). No queueing term."""
    isl = max(1.0, isl_tokens)
    batches = np.arange(1, _MAX_PREFILL_BATCH + 1, dtype=np.float64)
    times = np.array([kit.profile.prefill_time_s(b * isl, cap_watts) for b in batches], dtype=np.float64)
    thpt = np.where(times > 0, batches * isl / np.where(times > 0, times, 1.0), 0.0)
    meets = times <= ttft_target_s + 1e-12
    return float(np.max(thpt[meets])) if bool(np.any(meets)) else float(thpt[0])


def _step_limited(proposed: int, current: int) -> int:
    return max(current - DYNAMO16_MAX_STEP, min(current + DYNAMO16_MAX_STEP, proposed))


class Dynamo16Policy:
    """Dynamo 1.6 as shipped: 180 s, its prefill rule, no corrections, +-8, pending hold, GPU fit, TDP."""

    name = "dynamo-1.6"

    def __init__(self, kit: Toolkit) -> None:
        self._kit = kit
        self._last_action_s: float | None = None

    def _tdp(self) -> dict[Role, float]:
        return {role: self._kit.tdp_watts for role in ROLES}

    def _proposal(self, forecast: LoadForecast) -> dict[Role, int]:
        kit = self._kit
        bp, bd = kit.bounds[Role.PREFILL], kit.bounds[Role.DECODE]
        per_replica = prefill_replica_tokens_per_s(kit, forecast.isl_tokens, kit.sla_ttft_s, kit.tdp_watts)
        headroom = kit.settings.baseline_replica_headroom
        demand = forecast.request_rate_per_s * forecast.isl_tokens * headroom
        n_p = math.ceil(demand / per_replica - 1e-9) if per_replica > 0 and demand > 0 else bp.min_replicas
        _, d = kit.capacities(forecast, Corrections(), dynamo_sizing_rules(), {Role.PREFILL: (kit.tdp_watts,),
                                                                               Role.DECODE: (kit.tdp_watts,)})
        n_d = dynamo_replicas(d, bd.min_replicas, headroom)
        return {Role.PREFILL: min(bp.max_replicas, max(bp.min_replicas, n_p)),
                Role.DECODE: min(bd.max_replicas, n_d)}

    def adjust(self, ctx: PlanContext) -> Choice:
        now = ctx.obs.time_s
        held = {role: ctx.held[role].replicas for role in ROLES} if ctx.held else dict(ctx.current_replicas)
        if self._last_action_s is not None and now >= self._last_action_s and (
            now - self._last_action_s < DYNAMO16_INTERVAL_S - _EPS_S
        ):
            wait_s = DYNAMO16_INTERVAL_S - (now - self._last_action_s)
            choice = self.hold(ctx, held)
            return Choice(targets=choice.targets, reasons=(), power_safe=False,
                          notes=(f"dynamo-1.6: holding; its own {DYNAMO16_INTERVAL_S:.0f} s adjustment interval "
                                 f"ends in {wait_s:.0f} s",))
        assert ctx.forecast is not None
        self._last_action_s = now
        proposed = self._proposal(ctx.forecast)
        current = {role: ctx.current_replicas[role] for role in ROLES}
        notes: list[str] = []
        stepped = {role: _step_limited(proposed[role], current[role]) for role in ROLES}
        for role in ROLES:
            if stepped[role] != proposed[role]:
                notes.append(f"dynamo-1.6: {role.value} {current[role]} -> {proposed[role]} limited to "
                             f"+-{DYNAMO16_MAX_STEP} per adjustment ({stepped[role]})")
        kit = self._kit
        n_p, n_d = gpu_ceiling_clamp(stepped[Role.PREFILL], stepped[Role.DECODE], kit.gpus_per_replica[Role.PREFILL],
                                     kit.gpus_per_replica[Role.DECODE], kit.settings.gpu_pool,
                                     kit.bounds[Role.PREFILL].min_replicas, kit.bounds[Role.DECODE].min_replicas)
        reasons = [Reason.SLA_SIZED]
        if (n_p, n_d) != (stepped[Role.PREFILL], stepped[Role.DECODE]):
            reasons.append(Reason.GPU_POOL_LIMITED)
        targets = {Role.PREFILL: n_p, Role.DECODE: n_d}
        pending = [role.value for role in ROLES if ctx.obs.role(role).starting_replicas > 0]
        if pending:
            held_up = [role.value for role in ROLES if targets[role] > current[role]]
            targets = {role: min(targets[role], current[role]) for role in ROLES}
            if held_up:
                notes.append(f"dynamo-1.6: replicas still starting ({', '.join(pending)}); scale-up of "
                             f"{', '.join(held_up)} held until they are ready")
        tdp = self._tdp()
        return Choice(targets={role: RoleTarget(int(targets[role]), tdp[role]) for role in ROLES},
                      reasons=tuple(reasons), power_safe=False, notes=tuple(notes))

    def hold(self, ctx: PlanContext, replicas: Mapping[Role, int]) -> Choice:
        tdp = self._tdp()
        return Choice(targets={role: RoleTarget(int(replicas[role]), tdp[role]) for role in ROLES}, reasons=(),
                      power_safe=False)
