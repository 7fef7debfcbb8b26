"""The planner's first stage: an observation with every unusable value replaced by an explicit "no data".

Bad values never crash the planner and are never used as numbers: a NaN, a negative count or a boolean
becomes ``None`` (or a count of 0) and one note naming the field, what was wrong and what the planner does
instead. docs/observation.md lists the fields and their valid ranges.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from powerplanner.model.roles import ROLES, Role
from powerplanner.model.values import Observation, RoleState


def finite(x: float | None) -> bool:
    """A real, finite number (a metric may be NaN, infinite, missing or of the wrong type)."""
    return x is not None and isinstance(x, int | float) and math.isfinite(x)


@dataclass(frozen=True)
class Sanitised:
    """The observation the later stages see, and what was wrong with the one given."""

    obs: Observation
    problems: tuple[str, ...]


def sanitise(obs: Observation, fallback_budget_watts: float, fallback_time_s: float) -> Sanitised:
    """Replace unusable values with explicit ``None``/0 and say what was wrong.

    An unusable budget becomes ``fallback_budget_watts`` (the last good one, else the configured one); an
    unusable time becomes ``fallback_time_s`` (the last adjustment's, so the tick is a cap tick).
    """
    problems: list[str] = []
    changes: dict[str, object] = {}
    budget = obs.budget_watts
    if not (finite(budget) and budget > 0):
        problems.append(f"budget_watts={budget!r} is not a positive number; using {fallback_budget_watts:g} W")
        changes["budget_watts"] = fallback_budget_watts
    if not finite(obs.time_s):
        problems.append(f"time_s={obs.time_s!r} is not a number; treated as a cap tick")
        changes["time_s"] = fallback_time_s
    rate = obs.request_rate_per_s
    if rate is not None and not (finite(rate) and rate >= 0):
        problems.append(f"request_rate_per_s={rate!r} is not a non-negative number; holding")
        changes["request_rate_per_s"] = None
    for name in ("isl_tokens", "osl_tokens", "isl_p90_tokens"):
        value = getattr(obs, name)
        if value is not None and not (finite(value) and value > 0):
            problems.append(f"{name}={value!r} is not a positive number; ignored")
            changes[name] = None
    if obs.source_ok and finite(rate) and rate is not None and rate > 0:
        for name in ("isl_tokens", "osl_tokens"):
            if getattr(obs, name) is None:
                problems.append(f"{name} is missing while requests arrive; holding")
    for name in ("ttft_ms", "itl_ms", "measured_power_watts"):
        value = getattr(obs, name)
        if value is not None and not (finite(value) and value >= 0):
            problems.append(f"{name}={value!r} is not a non-negative number; ignored")
            changes[name] = None
    for role in ROLES:
        rs = obs.role(role)
        fixed = _sanitise_role(role, rs, problems)
        if fixed is not rs:
            changes[role.value] = fixed
    clean = dataclasses.replace(obs, **changes) if changes else obs  # type: ignore[arg-type]
    return Sanitised(clean, tuple(problems))


def _sanitise_role(role: Role, rs: RoleState, problems: list[str]) -> RoleState:
    """One role's counts, cap, draw and GPU count; appends to ``problems`` (this module's own list)."""
    counts = {}
    for name in ("ready_replicas", "starting_replicas", "draining_replicas"):
        value = getattr(rs, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            try:
                fixed = max(0, int(value)) if finite(float(value)) else 0
            except (TypeError, ValueError):
                fixed = 0
            problems.append(f"{role.value}.{name}={value!r} is not a count >= 0; using {fixed}")
            counts[name] = fixed
    cap = rs.applied_cap_watts
    cap_fix: dict[str, float | None] = {}
    if cap is not None and not (finite(cap) and cap > 0):
        problems.append(f"{role.value}.applied_cap_watts={cap!r} is not a positive number; treated as unknown")
        cap_fix["applied_cap_watts"] = None
    draw = rs.measured_draw_watts
    if draw is not None and not (finite(draw) and draw >= 0):
        problems.append(f"{role.value}.measured_draw_watts={draw!r} is not a number >= 0; ignored")
        cap_fix["measured_draw_watts"] = None
    gpus = rs.gpus_per_replica
    if gpus is not None and (not isinstance(gpus, int) or isinstance(gpus, bool) or gpus < 1):
        problems.append(f"{role.value}.gpus_per_replica={gpus!r} is not a count >= 1; the profile's is assumed")
        cap_fix["gpus_per_replica"] = None
    for name, high in (("waiting_requests", math.inf), ("kv_usage", 1.5)):  # usage a little above 1: rounding
        value = getattr(rs, name)
        if value is not None and not (finite(value) and 0 <= value <= high):
            problems.append(f"{role.value}.{name}={value!r} is out of range; treated as unknown")
            cap_fix[name] = None
    if not counts and not cap_fix:
        return rs
    return dataclasses.replace(rs, **counts, **cap_fix)  # type: ignore[arg-type]
