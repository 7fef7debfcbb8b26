"""Dynamo's power-budget rules for its planner, re-implemented from their documented behaviour.

Source: ai-dynamo/dynamo ``components/src/dynamo/planner/core/budget.py`` (read at commit
15a72ce9d401fee9e3a8292b3fd54359c07a4091; introduced by PR #12012 "DGD-owned GPU power caps and
budget-aware scaling", staging added after review: "current (1, 4) at 1000 W/replica with a 5000 W
budget accepts proposed (4, 1) ... the deployment can pass through (4, 4) = 8000 W ... Please stage
power-constrained rebalances"). What it does, and what we reproduce:

- Per-GPU caps are static, owned by the DGD; the planner knows ``watts_per_replica`` per role (cap x
  GPUs) and a ``total_gpu_power_limit``. Power is a ceiling on projected watts = sum(count x
  watts_per_replica); it only ever lowers counts (never raises a proposed count).
- Staging (``apply_power_budget``): if the proposal is an opposing rebalance (one role up, the other
  down) and the parallel peak ``max(current, proposed)`` per role exceeds the budget, each scale-up
  leg is held at its current count ("power_rebalance_staged"); the scale-up is admitted on a later
  tick, once the scale-down has happened. (1, 4) -> (4, 1) becomes (1, 1), then (4, 1).
- If the proposal fits, it is accepted. Otherwise, when the current allocation fits, a
  direction-preserving fit (``fit_directional_budget_pair``): each count lies between its current and
  proposed value, an opposing rebalance moves both legs or neither, and the candidate closest to the
  proposal (then least skewed, then most progress) inside the budget wins. When the current allocation
  itself is over budget, a proportional shrink (``_shrink_pair``) keeping the minimum replicas, never
  above the proposal, then the same staging check.
- Startup feasibility gate (``minimum_power_footprint_fits``): if the minimum replicas at their
  watts do not fit the budget, the planner fails closed (at startup it refuses to run; a later
  infeasible budget raises in ``_shrink_pair``). We report that as ``infeasible`` and hold.
- GPU ceiling (``proportional_clamp_pair``, ceiling path): if total GPUs exceed the pool, shrink both
  roles by pool/total (floor), keep the minimums, give the rest to decode but never above its
  proposal (the "decode-no-upscale" fix, PR #13064).
"""

from __future__ import annotations

import math


def project_watts(n_p: int, n_d: int, p_watts: float, d_watts: float) -> float:
    return n_p * p_watts + n_d * d_watts


def is_opposing(cur_p: int, cur_d: int, new_p: int, new_d: int) -> bool:
    return (new_p > cur_p and new_d < cur_d) or (new_p < cur_p and new_d > cur_d)


def peak_parallel_watts(cur_p: int, cur_d: int, new_p: int, new_d: int, p_watts: float, d_watts: float) -> float:
    """Worst case if both roles move toward their targets at the same time."""
    return project_watts(max(cur_p, new_p), max(cur_d, new_d), p_watts, d_watts)


def minimum_power_footprint_fits(budget: float, min_p: int, min_d: int, p_watts: float, d_watts: float) -> bool:
    """Dynamo's startup gate."""
    return project_watts(min_p, min_d, p_watts, d_watts) <= budget + 1e-6


def _stage(cur_p: int, cur_d: int, new_p: int, new_d: int) -> tuple[int, int, bool]:
    """Hold each scale-up leg at its current count."""
    held_p, held_d = min(new_p, cur_p), min(new_d, cur_d)
    return held_p, held_d, (held_p < new_p or held_d < new_d)


def fit_directional(cur_p: int, cur_d: int, new_p: int, new_d: int, p_watts: float, d_watts: float,
                    budget: float, min_p: int, min_d: int) -> tuple[int, int]:
    """Direction-preserving fit of a proposal into the budget (see the module docstring)."""
    opposing = is_opposing(cur_p, cur_d, new_p, new_d)
    want_p, want_d = abs(new_p - cur_p), abs(new_d - cur_d)
    p_lo, p_hi = max(min(cur_p, new_p), min_p), max(cur_p, new_p)
    d_lo, d_hi = max(min(cur_d, new_d), min_d), max(cur_d, new_d)
    best: tuple[tuple[float, float, int, int, int], tuple[int, int]] | None = None
    for cand_p in range(p_lo, p_hi + 1):
        room = budget - cand_p * p_watts
        hi = d_hi if d_watts <= 0 else min(d_hi, math.floor((room + 1e-6) / d_watts))
        lo = d_lo
        if opposing:
            if cand_p == cur_p:
                lo, hi = max(lo, cur_d), min(hi, cur_d)
            elif new_d > cur_d:
                lo = max(lo, cur_d + 1)
            else:
                hi = min(hi, cur_d - 1)
        if lo > hi:
            continue
        cand_d = min(max(new_d, lo), hi)
        if project_watts(cand_p, cand_d, p_watts, d_watts) > budget + 1e-6:
            continue
        prog_p, prog_d = abs(cand_p - cur_p), abs(cand_d - cur_d)
        score = (
            float(abs(new_p - cand_p) + abs(new_d - cand_d)),
            float(abs(prog_p * want_d - prog_d * want_p)),
            -(prog_p + prog_d),
            cand_p,
            cand_d,
        )
        if best is None or score < best[0]:
            best = (score, (cand_p, cand_d))
    return (cur_p, cur_d) if best is None else best[1]


def shrink_pair(n_p: int, n_d: int, p_watts: float, d_watts: float, budget: float, min_p: int,
                min_d: int) -> tuple[int, int]:
    """Proportional shrink to the budget keeping the minimums; decode never above its proposal."""
    projected = project_watts(n_p, n_d, p_watts, d_watts)
    if projected <= budget:
        return n_p, n_d
    scale = budget / projected
    max_p = math.floor((budget - min_d * d_watts) / p_watts) if p_watts > 0 else n_p
    new_p = max(min_p, min(max_p, math.floor(n_p * scale)))
    remaining = budget - new_p * p_watts
    new_d = min(n_d, max(min_d, math.floor(remaining / d_watts) if d_watts > 0 else n_d))
    return new_p, new_d


def apply_power_budget(new_p: int, new_d: int, cur_p: int, cur_d: int, p_watts: float, d_watts: float,
                       budget: float, min_p: int, min_d: int) -> tuple[int, int, str | None]:
    """Dynamo's power clamp of a proposed (prefill, decode) pair; returns the pair and a reason."""
    if is_opposing(cur_p, cur_d, new_p, new_d) and peak_parallel_watts(
        cur_p, cur_d, new_p, new_d, p_watts, d_watts
    ) > budget + 1e-6:
        held_p, held_d, capped = _stage(cur_p, cur_d, new_p, new_d)
        if capped:
            return held_p, held_d, "power_rebalance_staged"
    if project_watts(new_p, new_d, p_watts, d_watts) <= budget + 1e-6:
        return new_p, new_d, None
    if project_watts(cur_p, cur_d, p_watts, d_watts) <= budget + 1e-6:
        fp, fd = fit_directional(cur_p, cur_d, new_p, new_d, p_watts, d_watts, budget, min_p, min_d)
        return fp, fd, "power_budget_clamped"
    sp, sd = shrink_pair(new_p, new_d, p_watts, d_watts, budget, min_p, min_d)
    sp, sd = min(sp, new_p), min(sd, new_d)
    if is_opposing(cur_p, cur_d, sp, sd) and peak_parallel_watts(cur_p, cur_d, sp, sd, p_watts, d_watts) > budget:
        held_p, held_d, capped = _stage(cur_p, cur_d, sp, sd)
        if capped:
            return held_p, held_d, "power_rebalance_staged"
    return sp, sd, "power_budget_clamped"


def gpu_ceiling_clamp(n_p: int, n_d: int, g_p: int, g_d: int, max_gpus: int | None, min_p: int,
                      min_d: int) -> tuple[int, int]:
    """Dynamo's GPU-budget ceiling path (shrink only); ``(0, 0)`` when even the minimums overshoot."""
    if max_gpus is None:
        return n_p, n_d
    total = n_p * g_p + n_d * g_d
    if total <= max_gpus:
        return n_p, n_d
    if min_p * g_p + min_d * g_d > max_gpus:
        return 0, 0
    scale = max_gpus / total
    max_p = (max_gpus - min_d * g_d) // g_p
    new_p = max(min_p, min(max_p, math.floor(n_p * scale)))
    remaining = max_gpus - new_p * g_p
    new_d = min(n_d, max(min_d, remaining // g_d))
    return new_p, new_d
