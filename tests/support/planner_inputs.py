"""What the planner's tests feed it: a config with a budget and planner overrides, and an observation with
the defaults a test does not care about (5 req/s of 2000/300-token requests, one replica per role at 700 W)."""

from __future__ import annotations

from typing import Any

from powerplanner.config import Config, config_from_mapping
from powerplanner.model.values import Observation, RoleState


def make_config(budget_watts: float = 20_000.0, **planner: Any) -> Config:
    return config_from_mapping({"budget": {"watts": budget_watts}, "planner": planner})


def obs(
    time_s: float = 0.0,
    rate: float | None = 5.0,
    isl: float | None = 2000.0,
    osl: float | None = 300.0,
    budget: float = 20_000.0,
    prefill: RoleState | None = None,
    decode: RoleState | None = None,
    ttft_ms: float | None = None,
    itl_ms: float | None = None,
    **extra: Any,
) -> Observation:
    return Observation(
        time_s=time_s,
        window_s=60.0,
        request_rate_per_s=rate,
        isl_tokens=isl,
        osl_tokens=osl,
        ttft_ms=ttft_ms,
        itl_ms=itl_ms,
        prefill=prefill or RoleState(1, applied_cap_watts=700.0),
        decode=decode or RoleState(1, applied_cap_watts=700.0),
        budget_watts=budget,
        **extra,
    )
