"""The JSON form of an :class:`~powerplanner.model.values.Observation` (``powerplanner plan --observation``).

pydantic lives here, at the edge, so ``planning/`` stays pure. Documented in docs/observation.md. Unknown
keys are errors (a typo must not silently become "no data"); ``null`` means "no data" as in the
Observation itself; numbers must be finite and non-negative.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError

from powerplanner.errors import ObservationError, validation_lines
from powerplanner.input_files import read_json
from powerplanner.input_schema import InputModel
from powerplanner.model.values import Observation, RoleState

NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0)]


class _Strict(InputModel):
    """Strict, like every input model (powerplanner.input_schema): ``true`` is not a number."""


class RoleStateDoc(_Strict):
    """One role's current state."""

    ready_replicas: Count = Field(description="Replicas serving now.")
    starting_replicas: Count = Field(0, description="Replicas loading (they hold GPUs at the role's cap).")
    draining_replicas: Count = Field(0, description="Replicas being removed (they hold GPUs until gone).")
    applied_cap_watts: Positive | None = Field(None, description="Per-GPU power limit in force; null = unknown.")
    measured_draw_watts: NonNegative | None = Field(None, description="Measured draw of the whole role, watts.")
    gpus_per_replica: Annotated[int, Field(ge=1)] | None = Field(
        None, description="GPUs per replica as deployed; null = the profile's. Differing: the planner only cuts."
    )
    waiting_requests: NonNegative | None = Field(
        None, description="Requests queued at the role's workers (decode: waiting for KV room); null = unknown.")
    kv_usage: Annotated[float, Field(ge=0, le=1.5, allow_inf_nan=False)] | None = Field(
        None, description="KV cache in use, 0..1, mean over the role's workers; null = unknown.")

    def to_value(self) -> RoleState:
        return RoleState(
            ready_replicas=self.ready_replicas,
            starting_replicas=self.starting_replicas,
            draining_replicas=self.draining_replicas,
            applied_cap_watts=self.applied_cap_watts,
            measured_draw_watts=self.measured_draw_watts,
            gpus_per_replica=self.gpus_per_replica,
            waiting_requests=self.waiting_requests,
            kv_usage=self.kv_usage,
        )


class ObservationDoc(_Strict):
    """One metrics window and the deployment's state."""

    time_s: NonNegative = Field(0.0, description="Time of the observation, seconds (any epoch).")
    window_s: Positive = Field(60.0, description="Length of the averaging window, seconds.")
    request_rate_per_s: NonNegative | None = Field(None, description="Requests per second; null = no data.")
    isl_tokens: Positive | None = Field(None, description="Mean input sequence length, tokens.")
    osl_tokens: Positive | None = Field(None, description="Mean output sequence length, tokens.")
    isl_p90_tokens: Positive | None = Field(None, description="90th percentile input length, tokens; null = unknown.")
    ttft_ms: NonNegative | None = Field(None, description="Mean time to first token, ms.")
    itl_ms: NonNegative | None = Field(None, description="Mean inter-token latency, ms.")
    prefill: RoleStateDoc
    decode: RoleStateDoc
    budget_watts: Positive | None = Field(None, description="Budget in force; default: the config's budget.watts.")
    measured_power_watts: NonNegative | None = Field(None, description="Measured draw of all GPUs, watts.")
    source_ok: bool = Field(True, description="False when the metrics source failed.")
    source_error: str | None = None

    def to_value(self, default_budget_watts: float | None) -> Observation:
        budget = self.budget_watts if self.budget_watts is not None else default_budget_watts
        if budget is None:
            raise ObservationError(
                "observation: budget_watts is missing; add it to the observation or pass --config with budget.watts"
            )
        return Observation(
            time_s=self.time_s,
            window_s=self.window_s,
            request_rate_per_s=self.request_rate_per_s,
            isl_tokens=self.isl_tokens,
            osl_tokens=self.osl_tokens,
            isl_p90_tokens=self.isl_p90_tokens,
            ttft_ms=self.ttft_ms,
            itl_ms=self.itl_ms,
            prefill=self.prefill.to_value(),
            decode=self.decode.to_value(),
            budget_watts=budget,
            measured_power_watts=self.measured_power_watts,
            source_ok=self.source_ok,
            source_error=self.source_error,
        )


def observation_from_mapping(data: Any, source: str = "observation") -> ObservationDoc:
    """Validate parsed JSON; one line per problem, each naming the field."""
    if not isinstance(data, dict):
        raise ObservationError(f"{source}: must be a JSON object at the top level (got {type(data).__name__})")
    try:
        return ObservationDoc.model_validate(data)
    except ValidationError as exc:
        raise ObservationError(*validation_lines(exc, source, docs="docs/observation.md")) from None


def load_observation(path: str | Path) -> ObservationDoc:
    """Read and validate an observation JSON file."""
    p = Path(path)
    data = read_json(p, ObservationError, not_found="observation file not found; pass an existing JSON file",
                     what="observation")
    return observation_from_mapping(data, str(p))
