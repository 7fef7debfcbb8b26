"""Safe exploration: whether this tick may plan a calibration probe (docs/planner.md, "Calibration").

A probe is one cap level of one role, next to the cap in force, held for ``probe_hold_s``. It is planned only
on a cap tick (replicas held) with good data, while the observed latency of the role keeps its margin below the
target, when the held replicas at the probe cap fit the budget and the belief predicts they still serve the whole
forecast. The tick then runs the ordinary optimiser with that role's candidate caps reduced to the probe's
(``Toolkit.only_level``) and the ordinary power-safe transition plan: a probe never plans a step over the budget
or a cap outside the GPU's range (the levels are the toolkit's, floored inside it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from powerplanner.model.roles import ROLES, Role
from powerplanner.model.values import RoleTarget
from powerplanner.planning.calibration import Calibrator, Probe
from powerplanner.planning.optimizer import Allocation
from powerplanner.planning.policy import PlanContext, Toolkit

Evaluate = Callable[[Mapping[Role, RoleTarget], PlanContext], Allocation | None]


def latency_margins(ctx: PlanContext, kit: Toolkit, margin: float) -> dict[Role, bool]:
    """Per role: the observed latency is known and at most ``(1 - margin)`` x its target."""
    ttft, itl = ctx.obs.ttft_ms, ctx.obs.itl_ms
    return {
        Role.PREFILL: ttft is not None and ttft <= (1.0 - margin) * kit.sla_ttft_s * 1000.0,
        Role.DECODE: itl is not None and itl <= (1.0 - margin) * kit.sla_itl_s * 1000.0,
    }


def safe_probe(calibrator: Calibrator, kit: Toolkit, ctx: PlanContext, evaluate: Evaluate) -> Probe | None:
    """The probe this tick may plan, or None (and a proposal that fails a check is dropped)."""
    held = ctx.held
    if ctx.adjust or ctx.forecast is None or held is None or not calibrator.settings.probing:
        return None
    caps = {role: held[role].cap_watts for role in ROLES}
    margins = latency_margins(ctx, kit, calibrator.settings.probe_margin)
    probe = calibrator.propose_probe(ctx.obs, caps, dict(kit.cap_levels), margins)
    if probe is None:
        return None
    targets = {role: held[role] for role in ROLES}
    targets[probe.role] = RoleTarget(held[probe.role].replicas, probe.cap_watts)
    provisioned = sum(t.replicas * kit.gpus_per_replica[r] * t.cap_watts for r, t in targets.items())
    in_range = kit.min_cap_watts <= probe.cap_watts <= kit.max_cap_watts
    alloc = evaluate(targets, ctx)
    attained = alloc is not None and min(alloc.attainment_prefill, alloc.attainment_decode) >= 1.0 - 1e-6
    if not (in_range and attained and provisioned <= ctx.budget_watts + 1e-6):
        calibrator.cancel_probe()
        return None
    return probe
