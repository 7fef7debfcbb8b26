"""What the planner is told: plain frozen settings, built from the configuration once, at the edge.

The pydantic ``Config`` stays at the edge (``powerplanner.core_settings`` builds these from it), so the core
never reads a config file's shape and every rule derived from the config (the budget mode, the SLA in seconds,
per-role keys) is worked out in one place. docs/configuration.md describes the fields these come from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from powerplanner.model.roles import Role
from powerplanner.planning.calibration import CalibrationSettings
from powerplanner.planning.optimizer import Bounds, Objective


@dataclass(frozen=True)
class PredictorSettings:
    """One load predictor (``planner.predictor``): its kind and smoothing."""

    kind: str  # constant, ewma, holt or kalman (planning/predictors.py)
    log1p: bool  # predict log1p(x) and transform back
    alpha: float  # level smoothing, in (0, 1]
    beta: float  # trend smoothing, in (0, 1]
    warmup_ticks: int  # observations averaged plainly before the model predicts


@dataclass(frozen=True)
class PlannerSettings:
    """Everything the Planner, its toolkit and its policies read, in the core's units (seconds, watts, roles)."""

    policy: str  # the configured policy's name (planning/registry.py)
    budget_watts: float  # the configured budget: used when an observation's budget is unusable and none came before
    measured_budget: bool  # budget.mode is "measured": predicted draw, not provisioned power, is held to the budget
    budget_headroom: float  # fraction of the budget kept free in measured mode
    sla_ttft_s: float
    sla_itl_s: float
    adjustment_interval_s: float  # replicas may change this often
    target_utilization: float
    cap_levels: int  # cap levels tried per role
    gpu_pool: int | None  # GPUs both roles may hold together; None: unlimited
    replica_bounds: Mapping[Role, Bounds]
    static_caps_watts: Mapping[Role, float]  # fixed per-GPU caps of the static-cap baselines, where configured
    predictor: PredictorSettings
    burst_window_intervals: int
    burst_error_multiple: float
    idle_ticks_to_min: int
    objective: Objective = field(default_factory=Objective)  # what ours minimises (planner.objective)
    calibration: CalibrationSettings = field(default_factory=CalibrationSettings)  # planner.calibration
    baseline_replica_headroom: float = 1.0  # baselines size replicas for this multiple of the load (>= 1)
