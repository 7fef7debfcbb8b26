"""The one configuration model for the planner and the agent, loaded from YAML.

pydantic lives here, at the edge: the rest of the code receives plain frozen values. A bad file
gives one line per problem, each naming the field path and what is allowed
(:func:`powerplanner.errors.validation_lines`), raised as :class:`~powerplanner.errors.ConfigError`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from powerplanner.errors import ConfigError, validation_lines
from powerplanner.input_files import read_yaml

PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)]


class _Section(BaseModel):
    """Strict base: unknown keys are errors, so a typo never silently falls back to a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SlaConfig(_Section):
    """Latency targets, as Dynamo's SLA planner states them (per request averages over the window)."""

    ttft_ms: PositiveFloat = Field(500.0, description="Target time to first token, milliseconds.")
    itl_ms: PositiveFloat = Field(50.0, description="Target inter-token latency, milliseconds.")


class ScheduleEntry(_Section):
    """A budget that applies daily from ``start`` (HH:MM, UTC) until the next entry starts."""

    start: str = Field(description="Time of day HH:MM (UTC) from which this budget applies.")
    watts: PositiveFloat = Field(description="Budget in watts while this entry is active.")

    @field_validator("start")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        parts = value.split(":")
        ok = len(parts) == 2 and all(p.isdigit() for p in parts)
        if not ok or not (0 <= int(parts[0]) < 24 and 0 <= int(parts[1]) < 60):
            raise ValueError("must be a time of day HH:MM, e.g. 08:30")
        return value


class AdminConfig(_Section):
    """The HTTP admin endpoint (``PUT /budget``, ``GET /decision``); off unless enabled."""

    enabled: bool = Field(False, description="Serve the admin endpoint.")
    bind: str = Field("127.0.0.1:8081", description="host:port to listen on.")
    token: str | None = Field(None, description="Bearer token required on every request.")
    token_file: str | None = Field(None, description="File holding the bearer token (preferred over token).")
    state_configmap: str = Field("powerplanner-budget", description="ConfigMap keeping the admin budget.")
    tls_cert_file: str | None = Field(None, description="PEM certificate for HTTPS (with tls_key_file).")
    tls_key_file: str | None = Field(None, description="PEM private key for HTTPS (with tls_cert_file).")

    @model_validator(mode="after")
    def _token_when_enabled(self) -> AdminConfig:
        if self.enabled and not (self.token or self.token_file):
            raise ValueError("admin.enabled needs admin.token or admin.token_file (a bearer token)")
        return self


class BudgetConfig(_Section):
    """Where the power budget comes from. Every active source is read; the lowest wins."""

    watts: PositiveFloat = Field(description="Static GPU power budget in watts for the deployment.")
    mode: Literal["provisioned", "measured"] = Field(
        "provisioned",
        description="provisioned: sum of replicas x GPUs x cap <= budget. "
        "measured: predicted draw <= budget x (1 - headroom), caps still set as a backstop.",
    )
    headroom: Fraction = Field(0.05, description="Fraction of the budget kept free in measured mode.")
    promql: str | None = Field(None, description="PromQL query whose scalar result (watts) is a budget source.")
    schedule: list[ScheduleEntry] = Field(default_factory=list, description="Daily budget schedule (UTC).")
    reload_config: bool = Field(True, description="Re-read budget.watts when the config file changes.")
    admin: AdminConfig = Field(default_factory=lambda: AdminConfig())


class RoleBounds(_Section):
    """Replica bounds of one role (prefill or decode)."""

    min_replicas: Annotated[int, Field(ge=0)] = 1
    max_replicas: Annotated[int, Field(ge=1)] = 64

    @model_validator(mode="after")
    def _ordered(self) -> RoleBounds:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must be <= max_replicas")
        return self


class PredictorConfig(_Section):
    """Load predictor for rate, ISL and OSL (pure, no heavy forecasting dependencies)."""

    kind: Literal["constant", "ewma", "holt", "kalman"] = "holt"
    log1p: bool = Field(False, description="Predict log1p(x) and transform back; tames bursty series.")
    alpha: Annotated[float, Field(gt=0, le=1)] = Field(0.5, description="Level smoothing (ewma, holt).")
    beta: Annotated[float, Field(gt=0, le=1)] = Field(0.2, description="Trend smoothing (holt).")
    warmup_ticks: Annotated[int, Field(ge=0)] = Field(2, description="Ticks of plain averaging first.")


class PlannerConfig(_Section):
    """How the planner decides."""

    policy: str = Field(
        "ours", description="Planning policy: a name from the policy registry (docs/planner.md lists them)."
    )

    @field_validator("policy")
    @classmethod
    def _registered(cls, name: str) -> str:
        from powerplanner.planning.registry import policy_names  # lazy: planning imports this module

        if name not in policy_names():
            raise ValueError(f"not a registered policy; use one of: {', '.join(policy_names())}")
        return name
    adjustment_interval_s: PositiveFloat = Field(60.0, description="Replicas may change this often.")
    cap_interval_s: PositiveFloat = Field(5.0, description="Caps may change this often (the cap tick).")
    target_utilization: Annotated[float, Field(gt=0, le=1)] = Field(
        0.8, description="Size replicas so each runs at this fraction of its SLA-bound capacity."
    )
    cap_levels: Annotated[int, Field(ge=2, le=256)] = Field(16, description="Cap levels tried per role.")
    gpu_pool: Annotated[int, Field(ge=1)] | None = Field(None, description="GPUs available to both roles.")
    prefill: RoleBounds = Field(default_factory=lambda: RoleBounds())
    decode: RoleBounds = Field(default_factory=lambda: RoleBounds())
    predictor: PredictorConfig = Field(default_factory=lambda: PredictorConfig())
    burst_window_intervals: Annotated[int, Field(ge=0, le=1000)] = Field(
        10,
        description="Ours: adjustment intervals of observed rates and forecast errors kept for burst headroom "
        "(0: replicas follow the forecast alone).",
    )
    burst_error_multiple: NonNegativeFloat = Field(
        3.0,
        description="Ours: size replicas for the forecast plus this many mean under-forecasts (recent window), "
        "at most the window's peak rate; caps still follow the current load.",
    )
    idle_ticks_to_min: Annotated[int, Field(ge=1)] = Field(
        3, description="Adjustment ticks with no traffic before scaling both roles to their minimum."
    )
    static_caps_watts: dict[Literal["prefill", "decode"], PositiveFloat] = Field(
        default_factory=dict, description="Fixed per-GPU caps for dynamo-power/proportional (default: TDP)."
    )
    blind_ticks: Annotated[int, Field(ge=1, le=1000)] = Field(
        3,
        description="Live: cap ticks a Ready worker pod may go without any agent series (applied limit, revision) "
        "before the planner reports its feedback blind (metric powerplanner_feedback_blind, Event FeedbackBlind).",
    )


class ProfileConfig(_Section):
    """Which power-performance profile the planner uses."""

    name: str | None = Field("llama2-70b-h100-tp4", description="A built-in profile (powerplanner profile list).")
    path: str | None = Field(None, description="A profile file (our YAML/npz) or a Dynamo profiler directory.")
    gpu: str | None = Field(None, description="GPU of a Dynamo profile (it has no power data), e.g. H200-SXM.")

    @model_validator(mode="after")
    def _one_source(self) -> ProfileConfig:
        if not self.name and not self.path:
            raise ValueError("set profile.name (a built-in profile) or profile.path (a file)")
        return self


class PrometheusConfig(_Section):
    """Where load and latency come from."""

    url: str = "http://prometheus-operated.monitoring:9090"
    timeout_s: PositiveFloat = 2.0
    retries: Annotated[int, Field(ge=0, le=10)] = 2
    backoff_s: NonNegativeFloat = 0.2
    window_s: PositiveFloat | None = Field(None, description="Averaging window (default: adjustment interval).")
    frontend: Literal["dynamo", "vllm"] = "dynamo"
    model: str | None = Field(None, description="Value of the `model` label to filter on.")
    dynamo_namespace: str | None = Field(None, description="Value of the `dynamo_namespace` label.")
    power_source: Literal["agent", "dcgm", "none"] = "agent"


class KubernetesConfig(_Section):
    """Which DynamoGraphDeployment to act on."""

    namespace: str = "default"
    dgd_name: str = Field("llm", description="Name of the DynamoGraphDeployment.")
    kubeconfig: str | None = Field(None, description="Path to a kubeconfig; default: in-cluster, then ~/.kube.")
    prefill_service: str | None = Field(None, description="Override the prefill service name.")
    decode_service: str | None = Field(None, description="Override the decode service name.")
    emit_events: bool = True


class ServeConfig(_Section):
    """The planner's own /metrics endpoint."""

    metrics_bind: str = "0.0.0.0:9400"


class AgentConfig(_Section):
    """The node power agent's policy."""

    node_name: str | None = Field(None, description="Node to manage (default: env NODE_NAME).")
    allowed_namespaces: list[str] = Field(
        default_factory=list, description="Namespaces whose pods may request caps; empty means all."
    )
    floor_watts: PositiveFloat | None = Field(None, description="Node-wide lowest limit the agent will set.")
    ceiling_watts: PositiveFloat | None = Field(None, description="Node-wide highest limit the agent will set.")
    park: bool = Field(False, description="Set GPUs no managed pod holds to park_watts.")
    park_watts: PositiveFloat | None = Field(None, description="Park limit (default: the GPU's minimum).")
    new_pod_grace_s: NonNegativeFloat = Field(
        60.0,
        description="A Dynamo worker (DGD label) younger than this that holds GPUs before the planner "
        "annotated it, or a pod the kubelet reports before the pod watch has (for this long), waits at the "
        "park limit (park_watts, else the GPU minimum) instead of the original limit, so a new replica never "
        "lifts the node over its budget; 0 turns this off.",
    )
    restore_on_exit: Literal["uninstall", "always", "never"] = Field(
        "uninstall",
        description="What the agent does with the limits it set when it stops (SIGTERM/SIGINT). uninstall: "
        "restore the original limits only when its DaemonSet is gone or being deleted (read through the API "
        "from its own pod, env POD_NAME/POD_NAMESPACE), else leave the limits in force and the state file for "
        "the next agent, so a restart or a rollout never lifts a node over its budget; any doubt (API "
        "unreachable, env missing) leaves them too. always: restore on every stop (each restart then runs the "
        "node's GPUs at their original limits until the next agent starts). never: never restore.",
    )
    dry_run: bool = False
    resync_s: PositiveFloat = 30.0
    state_file: str = "/var/lib/powerplanner/agent-state.json"
    kubelet_socket: str = "/var/lib/kubelet/pod-resources/kubelet.sock"
    kubelet_timeout_s: PositiveFloat = 2.0
    proc_root: str = "/proc"
    metrics_bind: str = "0.0.0.0:9401"
    resource_name: str = "nvidia.com/gpu"

    @model_validator(mode="after")
    def _floor_below_ceiling(self) -> AgentConfig:
        if self.floor_watts is not None and self.ceiling_watts is not None and self.floor_watts > self.ceiling_watts:
            raise ValueError("agent.floor_watts must be <= agent.ceiling_watts")
        return self


class Config(_Section):
    """Root of the configuration file. Every section has defaults except ``budget.watts``."""

    sla: SlaConfig = Field(default_factory=lambda: SlaConfig())
    budget: BudgetConfig
    planner: PlannerConfig = Field(default_factory=lambda: PlannerConfig())
    profile: ProfileConfig = Field(default_factory=lambda: ProfileConfig())
    prometheus: PrometheusConfig = Field(default_factory=lambda: PrometheusConfig())
    kubernetes: KubernetesConfig = Field(default_factory=lambda: KubernetesConfig())
    serve: ServeConfig = Field(default_factory=lambda: ServeConfig())
    agent: AgentConfig = Field(default_factory=lambda: AgentConfig())

    @model_validator(mode="after")
    def _intervals(self) -> Config:
        if self.planner.cap_interval_s > self.planner.adjustment_interval_s:
            raise ValueError("planner.cap_interval_s must be <= planner.adjustment_interval_s")
        return self


_M = TypeVar("_M", bound=BaseModel)


def _validated(model: type[_M], data: Any, source: str) -> _M:
    """``data`` as ``model``, or :class:`ConfigError` with one line per problem."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the file must hold a YAML mapping at the top level (got {type(data).__name__})")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(*validation_lines(exc, source)) from None


def config_from_mapping(data: Any, source: str = "config") -> Config:
    """Validate a parsed mapping; raise :class:`ConfigError` with one line per problem."""
    return _validated(Config, data, source)


def _read_yaml(path: str | Path) -> Any:
    """Parse a YAML file; every failure becomes one :class:`ConfigError` line naming the fix."""
    return read_yaml(Path(path), ConfigError, not_found="config file not found; pass an existing file with --config",
                     what="config file")


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML config file."""
    return config_from_mapping(_read_yaml(path), str(path))


class AgentFileConfig(_Section):
    """What the node agent reads from a config file: its own section and the Kubernetes connection.

    The agent never reads the budget, so an agent-only file need not state one; the planner's sections may
    sit in the same file (one ConfigMap for both) and are validated by the planner, not here.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    agent: AgentConfig = Field(default_factory=lambda: AgentConfig())
    kubernetes: KubernetesConfig = Field(default_factory=lambda: KubernetesConfig())


def load_agent_config(path: str | Path) -> AgentFileConfig:
    """Read and validate the agent's part of a YAML config file."""
    return _validated(AgentFileConfig, _read_yaml(path), str(path))


def is_finite(value: float | None) -> bool:
    """True for a real, finite number (metrics may be NaN or missing)."""
    return value is not None and math.isfinite(value)
