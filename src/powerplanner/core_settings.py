"""The edge between the pydantic ``Config`` and the core: each setting the core takes, derived once, here.

``planning/`` and ``sim/engine.py`` take plain frozen settings (``PlannerSettings``, ``EngineSettings``) and never
read the config's shape, so a rule derived from the config (the metrics window's default, the budget mode, the
SLA in seconds) is written in one place: this module. The live loop (``live/service.py``), the simulator
(``sim/runner.py``) and ``powerplanner plan`` build their planner through :func:`build_planner`.
docs/configuration.md describes every field read here.
"""

from __future__ import annotations

from collections.abc import Mapping

from powerplanner.calibration_config import CalibrationConfig
from powerplanner.config import Config, PredictorConfig, ProfileConfig
from powerplanner.model.profile import PowerProfile
from powerplanner.model.profiles import load_profile
from powerplanner.model.roles import Role
from powerplanner.planning.calibration import CalibrationSettings
from powerplanner.planning.optimizer import Bounds, Objective
from powerplanner.planning.planner import Planner, make_planner
from powerplanner.planning.settings import PlannerSettings, PredictorSettings
from powerplanner.sim.settings import EngineSettings


def metrics_window_s(config: Config) -> float:
    """The window load and latency are averaged over: ``prometheus.window_s``, by default one adjustment
    interval (the live metrics source and the simulator's observations both use it)."""
    return config.prometheus.window_s or config.planner.adjustment_interval_s


def predictor_settings(predictor: PredictorConfig) -> PredictorSettings:
    return PredictorSettings(kind=predictor.kind, log1p=predictor.log1p, alpha=predictor.alpha, beta=predictor.beta,
                             warmup_ticks=predictor.warmup_ticks)


def planner_settings(config: Config) -> PlannerSettings:
    """What the Planner, its toolkit and its policies read."""
    planner = config.planner
    return PlannerSettings(
        policy=planner.policy,
        budget_watts=config.budget.watts,
        measured_budget=config.budget.mode == "measured",
        budget_headroom=config.budget.headroom,
        sla_ttft_s=config.sla.ttft_ms / 1000.0,
        sla_itl_s=config.sla.itl_ms / 1000.0,
        adjustment_interval_s=planner.adjustment_interval_s,
        target_utilization=planner.target_utilization,
        cap_levels=planner.cap_levels,
        gpu_pool=planner.gpu_pool,
        replica_bounds={
            Role.PREFILL: Bounds(planner.prefill.min_replicas, planner.prefill.max_replicas),
            Role.DECODE: Bounds(planner.decode.min_replicas, planner.decode.max_replicas),
        },
        static_caps_watts={Role(name): watts for name, watts in planner.static_caps_watts.items()},
        predictor=predictor_settings(planner.predictor),
        burst_window_intervals=planner.burst_window_intervals,
        burst_error_multiple=planner.burst_error_multiple,
        idle_ticks_to_min=planner.idle_ticks_to_min,
        objective=Objective(planner.objective, config.cost.gpu_hour_usd, config.cost.energy_usd_per_kwh),
        calibration=calibration_settings(planner.calibration),
        baseline_replica_headroom=planner.baseline_replica_headroom,
    )


def calibration_settings(c: CalibrationConfig) -> CalibrationSettings:
    """``planner.calibration`` as the core reads it."""
    return CalibrationSettings(
        enabled=c.enabled, probing=c.probing, learn_draw=c.learn_draw, prior_scale_std=c.prior_scale_std,
        prior_share_std=c.prior_share_std, latency_noise=c.latency_noise, deadband=c.deadband,
        probe_margin=c.probe_margin, probe_hold_s=c.probe_hold_s, probe_interval_s=c.probe_interval_s,
        probe_min_std=c.probe_min_std, departure_fraction=c.departure_fraction,
    )


def engine_settings(config: Config) -> EngineSettings:
    """What the simulator's engine and closed loop read of the planner's configuration."""
    planner = config.planner
    return EngineSettings(
        budget_watts=config.budget.watts,
        cap_interval_s=planner.cap_interval_s,
        adjustment_interval_s=planner.adjustment_interval_s,
        window_s=metrics_window_s(config),
        gpu_pool=planner.gpu_pool,
        target_utilization=planner.target_utilization,
        sla_ttft_s=config.sla.ttft_ms / 1000.0,
        sla_itl_s=config.sla.itl_ms / 1000.0,
        min_replicas=(planner.prefill.min_replicas, planner.decode.min_replicas),
        max_replicas=(planner.prefill.max_replicas, planner.decode.max_replicas),
    )


def profile_from_config(profile: ProfileConfig) -> PowerProfile:
    """The profile ``profile:`` names: a file when ``path`` is set, else the built-in ``name``."""
    return load_profile(name=profile.name, path=profile.path, gpu=profile.gpu)


def build_planner(config: Config, profile: PowerProfile, policy: str | None = None,
                  static_caps_watts: Mapping[Role, float] | None = None) -> Planner:
    """The Planner for ``policy`` (default ``planner.policy``) built from ``config``: the settings are converted
    here, once; the rest is :func:`powerplanner.planning.planner.make_planner`."""
    return make_planner(planner_settings(config), profile, policy, static_caps_watts)
