"""The observation the planner gets: Prometheus (load, latency, power) and the cluster (replicas, caps) joined
into one window, counting the worst case of each role's cap (docs/planner.md, "One tick"); and the JSON form of
what the loop reports."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from enum import Enum
from typing import Any

from powerplanner.live.cluster_view import ClusterState
from powerplanner.live.prometheus import MetricsReading
from powerplanner.model.roles import ROLES, Role
from powerplanner.model.values import Observation, RoleState


def build_observation(
    time_s: float, window_s: float, reading: MetricsReading, state: ClusterState, budget_watts: float,
    unacknowledged_cap_watts: Mapping[Role, float | None] | None = None,
) -> Observation:
    """Join Prometheus (load, latency, power) and the cluster (replicas, annotated caps) into one window.

    The applied cap is the highest of the agents' report, the pods' annotation and the caps the agents have
    not acknowledged yet (``unacknowledged_cap_watts``, from :class:`~powerplanner.live.ledger.CapLedger`):
    the worst case the planner must count. While the agents catch up on a lowered cap their report is the
    highest; after a raise the annotation is (the agents, and Prometheus' scrape of them, lag behind it);
    an agent that lags by more than a tick may still apply an older, higher cap."""
    roles: dict[Role, RoleState] = {}
    unacked = unacknowledged_cap_watts or {}
    for role in ROLES:
        rc = state.role(role)
        known = [c for c in (reading.applied_cap_watts.get(role), rc.annotated_cap_watts, unacked.get(role))
                 if c is not None]
        applied = max(known) if known else None
        roles[role] = RoleState(
            ready_replicas=rc.ready_replicas,
            starting_replicas=rc.starting_replicas,
            draining_replicas=rc.draining_replicas,
            applied_cap_watts=applied,
            measured_draw_watts=reading.draw_watts.get(role),
            gpus_per_replica=rc.gpus_per_replica,
            waiting_requests=reading.waiting_requests.get(role),
            kv_usage=reading.kv_usage.get(role),
        )
    return Observation(
        time_s=time_s,
        window_s=window_s,
        request_rate_per_s=reading.request_rate_per_s,
        isl_tokens=reading.isl_tokens,
        osl_tokens=reading.osl_tokens,
        ttft_ms=reading.ttft_ms,
        itl_ms=reading.itl_ms,
        prefill=roles[Role.PREFILL],
        decode=roles[Role.DECODE],
        budget_watts=budget_watts,
        measured_power_watts=reading.measured_power_watts,
        isl_p90_tokens=reading.isl_p90_tokens,
        source_ok=reading.source_ok,
        source_error=reading.source_error,
    )


def missing_cause(obs: Observation) -> str:
    """What is missing, in words an operator can act on."""
    if not obs.source_ok:
        return f"Prometheus fault ({obs.source_error or 'unknown error'})"
    if obs.request_rate_per_s is None:
        return ("no request rate: the frontend's requests counter is absent or NaN for prometheus.model / "
                "dynamo_namespace (`powerplanner verify` checks the frontend metrics)")
    return "requests arrive but their ISL/OSL histograms are absent or NaN"


def to_jsonable(value: Any) -> Any:
    """Dataclasses, enums, mappings and tuples as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(to_jsonable(k)): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, float) and value != value:
        return None
    return value
