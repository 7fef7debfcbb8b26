"""Domain values exchanged between the shell (sim/, live/) and the core (planning/).

An :class:`Observation` is what a metrics source saw over one window; a :class:`Decision` is what
the planner wants, with the ordered :class:`Step` list that gets there without exceeding the budget.
Missing metrics are ``None`` (never NaN): "no data" is explicit, and it is never read as "no traffic"
(docs/planner.md, "Missing data").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from powerplanner.model.roles import Role


@dataclass(frozen=True)
class RoleState:
    """Where one role stands now. Starting replicas hold GPUs (and count at their cap) while loading."""

    ready_replicas: int
    starting_replicas: int = 0
    draining_replicas: int = 0
    applied_cap_watts: float | None = None  # per GPU, as the agent reports it; None = unknown
    measured_draw_watts: float | None = None  # whole role, all GPUs; None = unknown
    # GPUs per replica as deployed (the DGD's GPU limits); None = not stated, the profile's TP size is assumed.
    # When it differs from the profile's, the planner only cuts power (docs/planner.md, "GPU-count mismatch").
    gpus_per_replica: int | None = None
    # Bottleneck signals (docs/planner.md, "Which role is short"): requests queued at the role's workers
    # (vLLM ``num_requests_waiting``; at decode, requests waiting for KV room) and the KV cache in use, 0..1,
    # mean over the role's workers. None = not exported or not read; never read as zero.
    waiting_requests: float | None = None
    kv_usage: float | None = None

    @property
    def holding_replicas(self) -> int:
        """Replicas whose GPUs are powered and reserved: ready + starting + draining."""
        return self.ready_replicas + self.starting_replicas + self.draining_replicas

    @property
    def desired_replicas(self) -> int:
        """Replicas that will be serving once starts finish (draining ones are leaving)."""
        return self.ready_replicas + self.starting_replicas


@dataclass(frozen=True)
class Observation:
    """One window of metrics, built the same way from Prometheus (live) and from the simulator.

    Rates and lengths are window averages (Dynamo: ``increase(X_sum[W]) / increase(X_count[W])``).
    ``None`` means the source had no data (absent series, NaN, query failed). A request rate of ``0`` is the
    only evidence of no traffic: the requests counter is present and did not increase over the window.
    """

    time_s: float
    window_s: float
    request_rate_per_s: float | None
    isl_tokens: float | None
    osl_tokens: float | None
    ttft_ms: float | None
    itl_ms: float | None
    prefill: RoleState
    decode: RoleState
    budget_watts: float
    measured_power_watts: float | None = None
    isl_p90_tokens: float | None = None  # 90th percentile prompt length over the window; None = no histogram
    source_ok: bool = True  # False when the metrics source failed (not just "no traffic")
    source_error: str | None = None

    def role(self, role: Role) -> RoleState:
        return self.prefill if role is Role.PREFILL else self.decode


@dataclass(frozen=True)
class LoadForecast:
    """Predicted load for the next interval."""

    request_rate_per_s: float
    isl_tokens: float
    osl_tokens: float
    # A high quantile (p90) of the prompt length: decode packs whole requests into KV memory, so a heavy tail
    # needs room the mean does not show (planning/sizing.py). None: only the mean is known.
    isl_p90_tokens: float | None = None


@dataclass(frozen=True)
class RoleTarget:
    """What a role should be: replicas and a per-GPU power cap."""

    replicas: int
    cap_watts: float


class StepKind(StrEnum):
    SET_CAP = "set_cap"  # write the per-GPU power limit on the role's pods
    SCALE = "scale"  # set the role's replica count


@dataclass(frozen=True)
class Step:
    """One actuation. ``provisioned_after_watts`` is the worst-case provisioned power once it is done
    (starting and draining replicas counted), so a plan can be checked step by step."""

    kind: StepKind
    role: Role
    value: float  # watts per GPU for SET_CAP, replicas for SCALE
    provisioned_after_watts: float
    wait_for_drain: bool = False  # a scale-up that must wait until draining replicas release GPUs


class Reason(StrEnum):
    """Why a decision is what it is. A decision carries one or more."""

    SLA_SIZED = "sla_sized"
    ENERGY_OPTIMAL = "energy_optimal"
    BUDGET_LIMITED = "budget_limited"
    BUDGET_CUT = "budget_cut"
    CAP_TICK_ONLY = "cap_tick_only"
    HOLD_NO_DATA = "hold_no_data"
    METRICS_MISSING = "metrics_missing"  # no request rate (absent or NaN series) or no ISL/OSL while requests arrive
    GPU_COUNT_MISMATCH = "gpu_count_mismatch"  # deployed GPUs per replica differ from the profile's: only cuts
    IDLE_SCALE_TO_MIN = "idle_scale_to_min"
    SOURCE_ERROR_HOLD = "source_error_hold"
    BAD_OBSERVATION = "bad_observation"
    INFEASIBLE_MIN_REPLICAS = "infeasible_min_replicas"
    GPU_POOL_LIMITED = "gpu_pool_limited"
    STAGED = "staged"
    STARTUP_GATE = "startup_gate"
    STATIC = "static"
    WAIT_FOR_DRAIN = "wait_for_drain"  # some scale-up waits until draining replicas release their power


@dataclass(frozen=True)
class Decision:
    """The planner's output for one tick, explaining itself."""

    time_s: float
    policy: str
    prefill: RoleTarget
    decode: RoleTarget
    budget_watts: float
    reasons: tuple[Reason, ...]
    projected_provisioned_watts: float  # sum over roles of replicas x GPUs/replica x cap, at the target
    predicted_draw_watts: float
    predicted_attainment: dict[str, float] = field(default_factory=dict)  # role -> served fraction 0..1
    forecast: LoadForecast | None = None
    steps: tuple[Step, ...] = ()
    replicas_may_change: bool = True  # False on a cap-only tick
    budget_limited: bool = False
    infeasible: bool = False
    notes: tuple[str, ...] = ()

    def target(self, role: Role) -> RoleTarget:
        return self.prefill if role is Role.PREFILL else self.decode
