"""Cut-only targets: what the planner may do when it cannot trust its own power model of the deployment.

Used when the deployment's GPUs per replica (the DGD's GPU limits) differ from the profile's TP size. The
profile then mis-counts provisioned power by that factor (8 GPUs per replica under a TP4 profile: half the
power seen), and its sizing is for another deployment. So the planner fails closed (docs/planner.md,
"GPU-count mismatch"): from the state observed now, it never adds power (no scale-up, no cap raise) and only
cuts, counting the GPUs actually deployed, until provisioned power is within the budget:

1. caps first (they act in seconds and come back as fast): the highest caps, balanced by rank between the
   roles, among the cap levels at or below each role's cap in force, that fit the budget;
2. if even the lowest of those do not fit, replicas, balanced, down to the roles' minimum;
3. below the minimum only when the minimum at the lowest caps does not fit either (``infeasible``): the budget
   comes before the replica bounds, as everywhere else in the planner.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

from powerplanner.model.roles import ROLES, Role
from powerplanner.model.values import RoleState, RoleTarget

_EPS_W = 1e-6


@dataclass(frozen=True)
class CutOnly:
    """Targets no higher than the observed state in replicas and caps, within the budget when possible."""

    targets: Mapping[Role, RoleTarget]
    provisioned_watts: float  # of the targets, with the deployed GPUs per replica
    fits: bool  # the targets are within the budget
    infeasible: bool  # replicas went below a role's minimum to fit


def cut_only_targets(
    current: Mapping[Role, RoleState],
    deployed_gpus_per_replica: Mapping[Role, int],
    cap_levels: Mapping[Role, tuple[float, ...]],
    min_replicas: Mapping[Role, int],
    budget_watts: float,
    unknown_cap_watts: float,
) -> CutOnly:
    """See the module docstring. An unknown applied cap counts as ``unknown_cap_watts`` (the GPU maximum)."""
    replicas = {role: max(0, current[role].desired_replicas) for role in ROLES}
    in_force: dict[Role, float] = {}
    for role in ROLES:
        applied = current[role].applied_cap_watts
        in_force[role] = applied if applied is not None else unknown_cap_watts
    candidates = {
        role: tuple(sorted({c for c in cap_levels[role] if c <= in_force[role]} | {in_force[role]}))
        for role in ROLES
    }
    gpus = deployed_gpus_per_replica

    def power(n: Mapping[Role, int], caps: Mapping[Role, float]) -> float:
        return sum(n[r] * gpus[r] * caps[r] for r in ROLES)

    found = _highest_balanced_caps(replicas, candidates, gpus, budget_watts)
    if found is None:
        lowest = {role: candidates[role][0] for role in ROLES}
        n = dict(replicas)
        while power(n, lowest) > budget_watts + _EPS_W and any(n.values()):
            # shed from the role furthest above its minimum, then the one holding more GPUs
            role = max(ROLES, key=lambda r: (n[r] - min_replicas[r], n[r] * gpus[r]))
            if n[role] == 0:
                role = max(ROLES, key=lambda r: n[r] * gpus[r])
            n[role] -= 1
        replicas = n
        found = _highest_balanced_caps(replicas, candidates, gpus, budget_watts)
    caps = found if found is not None else {role: candidates[role][0] for role in ROLES}
    targets = {role: RoleTarget(replicas[role], float(caps[role])) for role in ROLES}
    provisioned = power(replicas, caps)
    return CutOnly(
        targets=targets,
        provisioned_watts=provisioned,
        fits=provisioned <= budget_watts + _EPS_W,
        infeasible=any(replicas[r] < min_replicas[r] for r in ROLES),
    )


def _highest_balanced_caps(
    replicas: Mapping[Role, int],
    candidates: Mapping[Role, tuple[float, ...]],
    gpus: Mapping[Role, int],
    budget_watts: float,
) -> dict[Role, float] | None:
    """The fitting pair of caps whose lower rank is highest (then the higher sum of ranks); None if none fits.

    Ranks, not watts, so a role with few candidates (its cap already low) does not starve the other."""
    p_caps, d_caps = candidates[Role.PREFILL], candidates[Role.DECODE]
    best: tuple[float, float] | None = None
    chosen: dict[Role, float] | None = None
    for (i, cp), (j, cd) in itertools.product(enumerate(p_caps), enumerate(d_caps)):
        watts = replicas[Role.PREFILL] * gpus[Role.PREFILL] * cp + replicas[Role.DECODE] * gpus[Role.DECODE] * cd
        if watts > budget_watts + _EPS_W:
            continue
        rp = i / (len(p_caps) - 1) if len(p_caps) > 1 else 1.0
        rd = j / (len(d_caps) - 1) if len(d_caps) > 1 else 1.0
        key = (min(rp, rd), rp + rd)
        if best is None or key > best:
            best, chosen = key, {Role.PREFILL: cp, Role.DECODE: cd}
    return chosen
