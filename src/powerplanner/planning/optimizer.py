"""The joint replica x power-cap optimiser (our policy).

Decision variables: for each role a cap level k and a replica count n. For a fixed cap, the fewest
replicas that meet the SLA are also the least energy (more replicas only add idle draw), so the
search is a K_prefill x K_decode grid of (cap, minimal replicas) pairs, evaluated with numpy in one
shot: provisioned power, GPUs and predicted draw for every pair, masked by the budget, the GPU pool and
the replica bounds; the pair with the least predicted energy wins (ties: least provisioned power). With the
cost objective (``planner.objective: cost``) the least cost per hour wins instead: GPUs x GPU-hour price +
predicted draw x energy price, so a plan holding more GPUs at lower caps must save more energy than the GPUs cost.

When no pair meets the SLA, the roles are in series, so serving more of one than of the other is
waste: we find the largest fraction phi of the demand that BOTH roles can serve inside the budget
(bisection on phi, each step one vectorised grid check), then the least-energy pair at phi, and mark
the allocation ``budget_limited``.

If even the configured minimum replicas at the lowest caps do not fit, the allocation is the largest
balanced subset of the minimum that fits, flagged ``infeasible`` (never a silent violation).

Measured mode (``budget.mode = measured``): the constraint is predicted draw <= budget x (1 -
headroom) instead of provisioned power <= budget; the chosen caps are still set as a backstop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from powerplanner.planning.sizing import RoleCapacity

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Bounds:
    """Replica bounds of one role for this optimisation (the config's, or tighter on a cap tick)."""

    min_replicas: int
    max_replicas: int


@dataclass(frozen=True)
class Objective:
    """What the optimiser minimises among feasible pairs: predicted energy (``energy``), or the cost per hour of
    the GPUs held and the energy drawn at these prices (``cost``)."""

    kind: str = "energy"  # energy | cost
    gpu_hour_usd: float = 0.0
    energy_usd_per_kwh: float = 0.0

    def score(self, gpus: FloatArray, draw_watts: FloatArray, power_watts: FloatArray) -> FloatArray:
        """Lower is better; ties go to the least provisioned power."""
        if self.kind == "cost":
            return gpus * self.gpu_hour_usd + draw_watts / 1000.0 * self.energy_usd_per_kwh + 1e-9 * power_watts
        return draw_watts + 1e-6 * power_watts


@dataclass(frozen=True)
class Constraints:
    budget_watts: float
    gpu_pool: int | None = None
    measured: bool = False
    headroom: float = 0.0
    objective: Objective = Objective()

    @property
    def draw_limit_watts(self) -> float:
        return self.budget_watts * (1.0 - self.headroom)


@dataclass(frozen=True)
class Allocation:
    """The optimiser's answer: replicas and cap per role, and what it predicts for them."""

    prefill_replicas: int
    prefill_cap_watts: float
    decode_replicas: int
    decode_cap_watts: float
    provisioned_watts: float
    predicted_draw_watts: float
    served_fraction: float  # balanced fraction of demand both roles can serve (1.0 = SLA met)
    attainment_prefill: float
    attainment_decode: float
    budget_limited: bool = False
    infeasible: bool = False
    gpu_pool_limited: bool = False


@dataclass(frozen=True)
class _Grid:
    n_p: FloatArray
    n_d: FloatArray
    power: FloatArray  # K_p x K_d
    gpus: FloatArray
    draw: FloatArray
    ok: BoolArray


def _grid(p: RoleCapacity, d: RoleCapacity, n_p: FloatArray, n_d: FloatArray, fraction: float,
          bp: Bounds, bd: Bounds, c: Constraints, use_pool: bool = True) -> _Grid:
    """Evaluate every (prefill cap, decode cap) pair at the given per-cap replica counts."""
    finite_p = np.isfinite(n_p) & (n_p <= bp.max_replicas)
    finite_d = np.isfinite(n_d) & (n_d <= bd.max_replicas)
    np_ = np.where(finite_p, n_p, 0.0)
    nd_ = np.where(finite_d, n_d, 0.0)
    power_p = np_ * p.gpus_per_replica * p.caps_watts
    power_d = nd_ * d.gpus_per_replica * d.caps_watts
    power = power_p[:, None] + power_d[None, :]
    gpus = (np_ * p.gpus_per_replica)[:, None] + (nd_ * d.gpus_per_replica)[None, :]
    draw = p.draw_per_replica(np_, fraction)[:, None] + d.draw_per_replica(nd_, fraction)[None, :]
    ok = finite_p[:, None] & finite_d[None, :]
    if c.measured:
        ok &= draw <= c.draw_limit_watts + 1e-6
    else:
        ok &= power <= c.budget_watts + 1e-6
    if use_pool and c.gpu_pool is not None:
        ok &= gpus <= c.gpu_pool
    return _Grid(np_, nd_, power, gpus, draw, ok)


def _replicas_at(cap: RoleCapacity, fraction: float, bounds: Bounds) -> FloatArray:
    return np.maximum(cap.replicas_for(fraction), float(bounds.min_replicas))


def _pick(g: _Grid, objective: Objective) -> tuple[int, int]:
    score = np.where(g.ok, objective.score(g.gpus, g.draw, g.power), np.inf)
    flat = int(np.argmin(score))
    i, j = np.unravel_index(flat, score.shape)
    return int(i), int(j)


def _attainment(cap: RoleCapacity, replicas: float, k: int) -> float:
    if cap.demand_tokens_per_s <= 0:
        return 1.0
    served = replicas * cap.capacity_per_replica()[k]
    return float(min(1.0, served / cap.demand_tokens_per_s))


def _allocation(p: RoleCapacity, d: RoleCapacity, g: _Grid, i: int, j: int, fraction: float,
                budget_limited: bool, pool_limited: bool) -> Allocation:
    n_p, n_d = float(g.n_p[i]), float(g.n_d[j])
    return Allocation(
        prefill_replicas=int(n_p),
        prefill_cap_watts=float(p.caps_watts[i]),
        decode_replicas=int(n_d),
        decode_cap_watts=float(d.caps_watts[j]),
        provisioned_watts=float(g.power[i, j]),
        predicted_draw_watts=float(g.draw[i, j]),
        served_fraction=fraction,
        attainment_prefill=_attainment(p, n_p, i),
        attainment_decode=_attainment(d, n_d, j),
        budget_limited=budget_limited,
        gpu_pool_limited=pool_limited,
    )


def minimum_fits(p: RoleCapacity, d: RoleCapacity, bp: Bounds, bd: Bounds, c: Constraints) -> bool:
    """Do the minimum replicas fit at the lowest caps (idle draw in measured mode)?"""
    g = _grid(p, d, np.full(len(p.caps_watts), float(bp.min_replicas)),
              np.full(len(d.caps_watts), float(bd.min_replicas)), 0.0, bp, bd, c)
    return bool(g.ok.any())


def optimise(p: RoleCapacity, d: RoleCapacity, bp: Bounds, bd: Bounds, c: Constraints,
             minimum_checked: bool = False) -> Allocation:
    """Least-energy (replicas, cap) per role meeting the SLA within the budget; see the module docstring."""
    if not minimum_checked and not minimum_fits(p, d, bp, bd, c):
        return _infeasible(p, d, bp, bd, c)
    g = _grid(p, d, _replicas_at(p, 1.0, bp), _replicas_at(d, 1.0, bd), 1.0, bp, bd, c)
    if g.ok.any():
        i, j = _pick(g, c.objective)
        return _allocation(p, d, g, i, j, 1.0, False, False)
    # Would the SLA fit without the GPU pool? Then the pool, not power, is what limits us.
    pool_limited = c.gpu_pool is not None and bool(
        _grid(p, d, _replicas_at(p, 1.0, bp), _replicas_at(d, 1.0, bd), 1.0, bp, bd, c, use_pool=False).ok.any()
    )
    lo, hi = 0.0, 1.0
    for _ in range(30):
        mid = (lo + hi) / 2
        if _grid(p, d, _replicas_at(p, mid, bp), _replicas_at(d, mid, bd), mid, bp, bd, c).ok.any():
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-4:
            break
    g = _grid(p, d, _replicas_at(p, lo, bp), _replicas_at(d, lo, bd), lo, bp, bd, c)
    i, j = _pick(g, c.objective)
    return _allocation(p, d, g, i, j, lo, True, pool_limited)


def optimise_caps(p: RoleCapacity, d: RoleCapacity, n_p: int, n_d: int, c: Constraints) -> Allocation | None:
    """Best caps for fixed replica counts (a cap tick); ``None`` when even the lowest caps do not fit."""
    bp, bd = Bounds(n_p, n_p), Bounds(n_d, n_d)
    if not minimum_fits(p, d, bp, bd, c):
        return None
    return optimise(p, d, bp, bd, c, minimum_checked=True)


def _infeasible(p: RoleCapacity, d: RoleCapacity, bp: Bounds, bd: Bounds, c: Constraints) -> Allocation:
    """The minimum does not fit: the largest balanced subset of it at the lowest caps, flagged."""
    best: tuple[float, float, int, int] | None = None
    kp, kd = int(np.argmin(p.caps_watts)), int(np.argmin(d.caps_watts))
    cap_p, cap_d = float(p.caps_watts[kp]), float(d.caps_watts[kd])
    for a in range(bp.min_replicas, -1, -1):
        for b in range(bd.min_replicas, -1, -1):
            trial = evaluate(p, d, a, cap_p, b, cap_d, idle=True)
            gpus = a * p.gpus_per_replica + b * d.gpus_per_replica
            if c.measured:
                fits = trial.predicted_draw_watts <= c.draw_limit_watts + 1e-6
            else:
                fits = trial.provisioned_watts <= c.budget_watts + 1e-6
            if c.gpu_pool is not None and gpus > c.gpu_pool:
                fits = False
            if not fits:
                continue
            share_p = a / bp.min_replicas if bp.min_replicas else 1.0
            share_d = b / bd.min_replicas if bd.min_replicas else 1.0
            key = (min(share_p, share_d), share_p + share_d, a, b)
            if best is None or key > best:
                best = key
            break  # a smaller b for this a only lowers the score
    a, b = (0, 0) if best is None else (best[2], best[3])
    result = evaluate(p, d, a, cap_p, b, cap_d)
    return Allocation(
        prefill_replicas=a,
        prefill_cap_watts=cap_p,
        decode_replicas=b,
        decode_cap_watts=cap_d,
        provisioned_watts=result.provisioned_watts,
        predicted_draw_watts=result.predicted_draw_watts,
        served_fraction=result.served_fraction,
        attainment_prefill=result.attainment_prefill,
        attainment_decode=result.attainment_decode,
        budget_limited=True,
        infeasible=True,
    )


def evaluate(p: RoleCapacity, d: RoleCapacity, n_p: int, cap_p: float, n_d: int, cap_d: float,
             idle: bool = False) -> Allocation:
    """Predict draw, provisioned power and attainment of a given allocation (used for every policy's
    explanation, so baselines and ours are judged by the same model)."""
    ip = int(np.argmin(np.abs(p.caps_watts - cap_p)))
    jd = int(np.argmin(np.abs(d.caps_watts - cap_d)))
    frac_p = _attainment(p, float(n_p), ip)
    frac_d = _attainment(d, float(n_d), jd)
    served = min(frac_p, frac_d)
    load = 0.0 if idle else served
    draw_p = p.draw_per_replica(np.full(len(p.caps_watts), float(n_p)), load)[ip]
    draw_d = d.draw_per_replica(np.full(len(d.caps_watts), float(n_d)), load)[jd]
    return Allocation(
        prefill_replicas=n_p,
        prefill_cap_watts=cap_p,
        decode_replicas=n_d,
        decode_cap_watts=cap_d,
        provisioned_watts=n_p * p.gpus_per_replica * cap_p + n_d * d.gpus_per_replica * cap_d,
        predicted_draw_watts=float(draw_p + draw_d),
        served_fraction=served,
        attainment_prefill=frac_p,
        attainment_decode=frac_d,
        budget_limited=served < 1.0,
    )
