"""The one configuration model for the planner and the agent, loaded from YAML.

pydantic lives here, at the edge: the rest of the code receives plain frozen values. A bad file
gives one line per problem, each naming the field path and what is allowed
(:func:`powerplanner.errors.validation_lines`), raised as :class:`~powerplanner.errors.ConfigError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from powerplanner.agent_config import AgentConfig as AgentConfig  # re-exported for the agent's importers
from powerplanner.budget_schedule import ScheduleEntry as ScheduleEntry  # re-exported: budget.schedule[]
from powerplanner.budget_schedule import time_zone
from powerplanner.calibration_config import CalibrationConfig
from powerplanner.cost_config import CostConfig
from powerplanner.errors import ConfigError, validation_lines
from powerplanner.input_files import read_yaml
from powerplanner.input_schema import InputModel, NonNegativeFloat, PositiveFloat
from powerplanner.leader_config import LeaderElectionConfig
from powerplanner.prometheus_config import PrometheusConfig as PrometheusConfig  # re-exported: prometheus:

Fraction = Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)]


class _Section(InputModel):
    """Strict base (powerplanner.input_schema): unknown keys are errors, so a typo never silently falls back to a
    default, and a boolean or a quoted number is never read as a number."""


class SlaConfig(_Section):
    """Latency targets, as Dynamo's SLA planner states them (per request averages over the window)."""

    ttft_ms: PositiveFloat = Field(500.0, description="Target time to first token, milliseconds.")
    itl_ms: PositiveFloat = Field(50.0, description="Target inter-token latency, milliseconds.")


class AdminConfig(_Section):
    """The HTTP admin endpoint (``PUT /budget``, ``GET /decision``); off unless enabled. docs/operations.md,
    "The admin endpoint", says what it persists and how it is hardened."""

    enabled: bool = Field(False, description="Serve the admin endpoint.")
    bind: str = Field("127.0.0.1:8081", description="host:port to listen on (loopback unless you open it; "
                      "`powerplanner run --admin-bind` overrides it, e.g. with the pod IP).")
    token: str | None = Field(None, description="Bearer token required on every request.")
    token_file: str | None = Field(None, description="File holding the bearer token (preferred over token).")
    tls_cert_file: str | None = Field(None, description="PEM certificate (chain) to serve HTTPS; needs tls_key_file.")
    tls_key_file: str | None = Field(None, description="PEM private key (unencrypted) of tls_cert_file.")
    state_configmap: str = Field("powerplanner-budget", description="ConfigMap in kubernetes.namespace where the "
                                 "planner keeps the budget set through the endpoint (written before PUT/DELETE /budget "
                                 "answers, read back at start-up).")
    timeout_s: Annotated[float, Field(ge=0.1, le=300, allow_inf_nan=False)] = Field(
        10.0, description="Seconds a client has to send its whole request (TLS handshake, headers, body).")
    max_connections: Annotated[int, Field(ge=1, le=1024)] = Field(
        16, description="Connections served at once (one thread each); more are answered 503.")

    @field_validator("token", "token_file", "tls_cert_file", "tls_key_file")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("is empty or only whitespace; set a value or leave the field out")
        return value.strip() if value is not None else None

    @field_validator("state_configmap")
    @classmethod
    def _configmap_name(cls, value: str) -> str:
        allowed = set("abcdefghijklmnopqrstuvwxyz0123456789-")
        labels = value.split(".")
        if len(value) > 253 or not all(p and set(p) <= allowed and "-" not in (p[0], p[-1]) for p in labels):
            raise ValueError("must be a Kubernetes object name (lowercase letters, digits, '-' and '.', starting "
                             "and ending with a letter or digit), e.g. powerplanner-budget")
        return value

    @model_validator(mode="after")
    def _token_when_enabled(self) -> AdminConfig:
        if self.enabled and not (self.token or self.token_file):
            raise ValueError("admin.enabled needs admin.token or admin.token_file (a bearer token)")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("admin.tls_cert_file and admin.tls_key_file go together: set both (HTTPS) or neither")
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
    schedule: list[ScheduleEntry] = Field(default_factory=list, description="Budget schedule: daily HH:MM or "
                                          "cron entries; the one that started last applies.")
    schedule_timezone: str = Field("UTC", description="IANA time zone the schedule's times are in (e.g. "
                                   "Europe/Berlin: daylight saving time is followed).")
    reload_config: bool = Field(True, description="Re-read budget.watts when the config file changes.")
    admin: AdminConfig = Field(default_factory=lambda: AdminConfig())

    @field_validator("schedule_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        time_zone(value)
        return value


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

    adjustment_interval_s: Annotated[float, Field(ge=1, le=86400, allow_inf_nan=False)] = Field(
        60.0, description="Replicas may change this often. 1 s to 1 day: a replica takes minutes to start (Dynamo's "
        "planner adjusts every 180 s), so less is a typo, and so is more than a day.")
    cap_interval_s: Annotated[float, Field(ge=0.1, le=3600, allow_inf_nan=False)] = Field(
        5.0, description="Caps may change this often (the cap tick), at most adjustment_interval_s. 0.1 s to 1 h: "
        "every tick queries Prometheus and an agent applies a cap in 0.1-1 s (pod watch, NVML), so a faster tick "
        "only queues work; an hour between cap changes is a unit typo.")
    target_utilization: Annotated[float, Field(gt=0, le=1)] = Field(
        0.8, description="Size replicas so each runs at this fraction of its SLA-bound capacity."
    )
    cap_levels: Annotated[int, Field(ge=2, le=256)] = Field(16, description="Cap levels tried per role.")
    gpu_pool: Annotated[int, Field(ge=1)] | None = Field(None, description="GPUs available to both roles.")
    objective: Literal["energy", "cost"] = Field("energy", description="Ours: among plans that meet the SLA, the "
                                                 "least predicted energy, or the least cost (GPUs, energy at cost:).")
    prefill: RoleBounds = Field(default_factory=lambda: RoleBounds())
    decode: RoleBounds = Field(default_factory=lambda: RoleBounds())
    predictor: PredictorConfig = Field(default_factory=lambda: PredictorConfig())
    calibration: CalibrationConfig = Field(default_factory=lambda: CalibrationConfig())
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
        3,
        description="Consecutive adjustment ticks with zero traffic (the requests counter present, no increase) "
        "before scaling both roles to their minimum; missing data is never zero traffic.",
    )
    metrics_missing_ticks: Annotated[int, Field(ge=1, le=10_000)] = Field(
        3,
        description="Consecutive cap ticks without load data (request rate absent or NaN, a failed query) before "
        "the planner raises powerplanner_metrics_missing and a MetricsMissing Warning Event; it holds from the "
        "first such tick.",
    )
    static_caps_watts: dict[Literal["prefill", "decode"], PositiveFloat] = Field(
        default_factory=dict, description="Fixed per-GPU caps for dynamo-power/proportional (default: TDP)."
    )
    baseline_replica_headroom: Annotated[float, Field(ge=1, le=10, allow_inf_nan=False)] = Field(
        1.0, description="Baselines (every policy but ours and oracle): size replicas for this multiple of the "
        "load (static: of its initial replicas); 1.0 = as Dynamo sizes. The baselines' over-provisioning knob, as "
        "target_utilization is ours (docs/simulator.md, \"Headline\").")
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


class Config(_Section):
    """Root of the configuration file. Every section has defaults except ``budget.watts``."""

    sla: SlaConfig = Field(default_factory=lambda: SlaConfig())
    budget: BudgetConfig
    planner: PlannerConfig = Field(default_factory=lambda: PlannerConfig())
    profile: ProfileConfig = Field(default_factory=lambda: ProfileConfig())
    prometheus: PrometheusConfig = Field(default_factory=lambda: PrometheusConfig())
    kubernetes: KubernetesConfig = Field(default_factory=lambda: KubernetesConfig())
    serve: ServeConfig = Field(default_factory=lambda: ServeConfig())
    leader_election: LeaderElectionConfig = Field(default_factory=lambda: LeaderElectionConfig())
    agent: AgentConfig = Field(default_factory=lambda: AgentConfig())
    cost: CostConfig = Field(default_factory=lambda: CostConfig())

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
    sit in the same file (one ConfigMap for both) and are validated by the planner, not here. Any other
    top-level key is an error, as in the planner's config: ``agnet: {park: false}`` must not silently leave the
    defaults in force.
    """

    agent: AgentConfig = Field(default_factory=lambda: AgentConfig())
    kubernetes: KubernetesConfig = Field(default_factory=lambda: KubernetesConfig())

    @model_validator(mode="before")
    @classmethod
    def _drop_planner_sections(cls, data: Any) -> Any:
        """The planner's sections are accepted and left to the planner; unknown keys stay, to be refused."""
        if not isinstance(data, dict):
            return data
        return {k: v for k, v in data.items() if k in cls.model_fields or k not in Config.model_fields}


def _unknown_sections(data: Any, source: str) -> None:
    """One line per top-level key neither the planner nor the agent knows, naming the known sections."""
    if not isinstance(data, dict):
        return
    known = sorted(Config.model_fields)
    unknown = [key for key in data if key not in Config.model_fields]
    if unknown:
        raise ConfigError(*(
            f"{source}: {key}: unknown section (check the spelling; the known sections are {', '.join(known)})"
            for key in unknown
        ))


def agent_config_from_mapping(data: Any, source: str = "config") -> AgentFileConfig:
    """Validate a parsed mapping as the agent reads it; raise :class:`ConfigError` with one line per problem."""
    _unknown_sections(data, source)
    return _validated(AgentFileConfig, data, source)


def load_agent_config(path: str | Path) -> AgentFileConfig:
    """Read and validate the agent's part of a YAML config file."""
    return agent_config_from_mapping(_read_yaml(path), str(path))
