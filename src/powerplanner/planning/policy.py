"""What every policy gets and gives: the context of a tick, the choice it makes, and a shared toolkit.

The :class:`~powerplanner.planning.planner.Planner` owns everything common (validating the observation,
prediction, correction factors, idle and error handling, the two timescales, transitions, explanations);
a policy only chooses targets. That keeps baselines and ours comparable: they see the same forecast
and are judged by the same model.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from powerplanner.model.profile import PowerProfile
from powerplanner.model.roles import ROLES, Role
from powerplanner.model.values import LoadForecast, Observation, Reason, RoleTarget
from powerplanner.planning.optimizer import Allocation, Bounds, Constraints
from powerplanner.planning.settings import PlannerSettings
from powerplanner.planning.sizing import Corrections, ProfileCache, RoleCapacity, SizingRules, size_role


@dataclass(frozen=True)
class PlanContext:
    """One tick as a policy sees it (the observation already validated and cleaned)."""

    obs: Observation
    budget_watts: float
    forecast: LoadForecast | None
    corrections: Corrections  # expected latency at the applied caps (ours)
    profile_corrections: Corrections  # expected latency at TDP, as Dynamo's cap-less profile sees it
    adjust: bool  # replicas may change on this tick
    held: Mapping[Role, RoleTarget] | None  # the targets in force (previous decision), if any
    current_replicas: Mapping[Role, int]  # desired replicas (ready + starting) observed now
    # Adjustment ticks: the forecast with its rate raised to the recent peak (what ours sizes replicas for);
    # None when that is the forecast itself, or on a cap tick.
    peak_forecast: LoadForecast | None = None


@dataclass(frozen=True)
class Choice:
    """A policy's targets and why."""

    targets: Mapping[Role, RoleTarget]
    reasons: tuple[Reason, ...]
    power_safe: bool = True  # plan transitions against the budget
    budget_limited: bool = False
    infeasible: bool = False
    allocation: Allocation | None = None  # the policy's own prediction, if it made one
    notes: tuple[str, ...] = ()
    replicas_changed_on_cap_tick: bool = False


class Policy(Protocol):
    """A policy chooses targets; everything else is the Planner's."""

    name: str

    def adjust(self, ctx: PlanContext) -> Choice:
        """An adjustment tick with a forecast: replicas and caps may change."""
        ...

    def hold(self, ctx: PlanContext, replicas: Mapping[Role, int]) -> Choice:
        """A cap tick, or a tick whose data cannot be trusted: keep ``replicas`` unless the budget forces
        otherwise; caps may change."""
        ...


def _floor_cap(watts: float, lo: float, hi: float) -> float:
    """Caps are written as integer watts; round down so the written cap never exceeds the planned one."""
    return float(min(hi, max(lo, math.floor(watts + 1e-9))))


class Toolkit:
    """Shared, per-planner helpers: candidate caps, bounds, sizing, constraints."""

    def __init__(self, settings: PlannerSettings, profile: PowerProfile,
                 static_caps_watts: Mapping[Role, float] | None) -> None:
        self.settings = settings
        self.profile = profile
        self.cache = ProfileCache(profile)
        gpu = profile.gpu
        self.min_cap_watts = gpu.min_limit_watts
        self.max_cap_watts = gpu.max_limit_watts
        self.tdp_watts = _floor_cap(gpu.default_limit_watts, gpu.min_limit_watts, gpu.max_limit_watts)
        static: dict[Role, float] = {}
        for role in ROLES:
            given = None
            if static_caps_watts is not None and role in static_caps_watts:
                given = static_caps_watts[role]
            elif role in settings.static_caps_watts:
                given = settings.static_caps_watts[role]
            static[role] = (
                self.tdp_watts if given is None else _floor_cap(given, self.min_cap_watts, self.max_cap_watts)
            )
        self.static_caps = static
        self.gpus_per_replica = {role: profile.gpus_per_replica(role) for role in ROLES}
        levels: dict[Role, tuple[float, ...]] = {}
        for role in ROLES:
            raw = [_floor_cap(c, self.min_cap_watts, self.max_cap_watts)
                   for c in profile.cap_levels(role, settings.cap_levels)]
            raw += [self.tdp_watts, static[role], self.min_cap_watts]
            levels[role] = tuple(sorted(set(raw)))
        self.cap_levels = levels
        self.bounds: dict[Role, Bounds] = dict(settings.replica_bounds)
        self.sla_ttft_s = settings.sla_ttft_s
        self.sla_itl_s = settings.sla_itl_s

    def constraints(self, budget_watts: float) -> Constraints:
        return Constraints(
            budget_watts=budget_watts,
            gpu_pool=self.settings.gpu_pool,
            measured=self.settings.measured_budget,
            headroom=self.settings.budget_headroom,
            objective=self.settings.objective,
        )

    def capacities(
        self,
        forecast: LoadForecast,
        corrections: Corrections,
        rules: SizingRules,
        caps: Mapping[Role, tuple[float, ...]] | None = None,
    ) -> tuple[RoleCapacity, RoleCapacity]:
        levels = caps if caps is not None else self.cap_levels
        out = [
            size_role(self.cache, role, levels[role], forecast, self.sla_ttft_s, self.sla_itl_s, corrections, rules)
            for role in ROLES
        ]
        return out[0], out[1]

    def highest_caps_that_fit(self, replicas: Mapping[Role, int], budget_watts: float) -> dict[Role, float]:
        """Without a forecast: the highest caps (balanced by rank) the budget allows for these replicas."""
        cp = np.asarray(self.cap_levels[Role.PREFILL])
        cd = np.asarray(self.cap_levels[Role.DECODE])
        wp = replicas[Role.PREFILL] * self.gpus_per_replica[Role.PREFILL]
        wd = replicas[Role.DECODE] * self.gpus_per_replica[Role.DECODE]
        power = wp * cp[:, None] + wd * cd[None, :]
        rank_p = np.linspace(0, 1, len(cp))[:, None]
        rank_d = np.linspace(0, 1, len(cd))[None, :]
        score = np.minimum(rank_p, rank_d) * 10 + rank_p + rank_d
        score = np.where(power <= budget_watts + 1e-6, score, -np.inf)
        if not np.isfinite(score).any():
            return {Role.PREFILL: float(cp[0]), Role.DECODE: float(cd[0])}
        i, j = np.unravel_index(int(np.argmax(score)), score.shape)
        return {Role.PREFILL: float(cp[int(i)]), Role.DECODE: float(cd[int(j)])}

    def use_profile(self, profile: PowerProfile) -> None:
        """Plan with ``profile`` from now on (calibration's learned profile: same GPU, TP sizes and cap levels)."""
        self.profile = profile
        self.cache = ProfileCache(profile)

    @contextmanager
    def only_level(self, role: Role, cap_watts: float) -> Iterator[None]:
        """While it lasts, ``role``'s only candidate cap is ``cap_watts`` (a calibration probe: the optimiser and
        the transition rules still decide everything else)."""
        saved = self.cap_levels
        self.cap_levels = {**saved, role: (cap_watts,)}
        try:
            yield
        finally:
            self.cap_levels = saved

    def clamp_replicas(self, role: Role, n: int) -> int:
        b = self.bounds[role]
        return min(b.max_replicas, max(b.min_replicas, n))
