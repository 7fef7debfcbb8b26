"""Our profile format's document schema: the pydantic models of a ``format: powerplanner-profile/v1`` file.

pydantic lives here, at the edge of ``model/``: :mod:`powerplanner.model.profile_format` validates a parsed
document with :class:`ProfileDoc` and builds plain frozen values from it, and every problem becomes one
:class:`~powerplanner.errors.ProfileError` line naming the field and the fix (docs/profile-format.md describes
each field).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from powerplanner.errors import validation_lines
from powerplanner.input_schema import InputModel, NonNegativeFloat, PositiveFloat

FORMAT_V1 = "powerplanner-profile/v1"

Positive = PositiveFloat
NonNegative = NonNegativeFloat
Share = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Clock = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
PositiveInt = Annotated[int, Field(ge=1)]


class _Doc(InputModel):
    """Strict, like every input model (powerplanner.input_schema): ``true`` is not a number."""


class GpuDoc(_Doc):
    name: str
    min_limit_watts: Positive | None = None
    max_limit_watts: Positive | None = None


class PowerDoc(_Doc):
    """Cap model constants; any left out come from the GPU's default cap model. The ``draw_*`` fields are the
    measured dimensions of the draw (docs/profile-format.md, "Draw by TP and load"); left out, it is flat."""

    natural_draw_watts: Positive | None = None
    uncore_watts: NonNegative | None = None
    compute_share: Share | None = None
    floor_clock: Clock | None = None
    min_clock: Clock | None = None
    source: str | None = None
    draw_reference_tp: Annotated[float, Field(ge=1, allow_inf_nan=False)] | None = None
    draw_tp_exponent: NonNegative | None = None
    draw_half_batch: NonNegative | None = None
    draw_half_tokens_per_gpu: NonNegative | None = None


class PrefillFitDoc(_Doc):
    a_s: NonNegative
    b_s_per_token: NonNegative
    c_s_per_token2: NonNegative = 0.0


class PrefillTableDoc(_Doc):
    isl_tokens: list[float]
    time_ms: list[float]


class DecodeFitDoc(_Doc):
    """``quadratic_max_batch``: the largest batch the fit was measured at; beyond it the ``per_seq_sq_s`` term
    continues along its tangent (see :class:`DecodeLatency`). Optional so that files written before it existed
    load as they did (no limit); ``.inf`` says the same explicitly."""

    base_s: Positive
    per_seq_s: NonNegative
    per_kv_token_s: NonNegative
    per_seq_sq_s: NonNegative = 0.0
    quadratic_max_batch: float | None = None

    @field_validator("quadratic_max_batch", mode="before")
    @classmethod
    def _batch_limit(cls, value: object) -> object:
        # One message for every bad input (a string, a bool, NaN, < 1), naming the fix; pydantic's own would
        # say only "greater than or equal to 1" or "valid number".
        number: float | None = None
        if isinstance(value, int | float | str) and not isinstance(value, bool):
            try:
                number = float(value)
            except ValueError:
                number = None
        if value is not None and (number is None or math.isnan(number) or number < 1):
            raise ValueError("must be a number >= 1, the largest decode batch the fit was measured at "
                             "(beyond it ITL grows linearly); leave it out for no limit")
        return value if value is None else number


class DecodeTableDoc(_Doc):
    kv_usage: list[float]
    context_tokens: list[float]
    itl_ms: list[float]


class KvDoc(_Doc):
    """Either ``max_kv_tokens`` directly or the memory arithmetic that gives it."""

    max_kv_tokens: PositiveInt | None = None
    weights_gb: NonNegative | None = None
    kv_bytes_per_token: Positive | None = None
    memory_utilization: Annotated[float, Field(gt=0, le=1)] = 0.9

    @model_validator(mode="after")
    def _one_way(self) -> KvDoc:
        if self.max_kv_tokens is None and (self.weights_gb is None or self.kv_bytes_per_token is None):
            raise ValueError("give max_kv_tokens, or weights_gb and kv_bytes_per_token")
        return self


class PrefillDoc(_Doc):
    tp: PositiveInt
    power: PowerDoc = PowerDoc()
    fit: PrefillFitDoc | None = None
    table: PrefillTableDoc | None = None
    source: str = ""

    @model_validator(mode="after")
    def _one_latency(self) -> PrefillDoc:
        if (self.fit is None) == (self.table is None):
            raise ValueError("give exactly one of prefill.fit (coefficients) or prefill.table (measurements)")
        return self


class DecodeDoc(_Doc):
    tp: PositiveInt
    power: PowerDoc = PowerDoc()
    fit: DecodeFitDoc | None = None
    table: DecodeTableDoc | None = None
    kv: KvDoc
    source: str = ""

    @model_validator(mode="after")
    def _one_latency(self) -> DecodeDoc:
        if (self.fit is None) == (self.table is None):
            raise ValueError("give exactly one of decode.fit (coefficients) or decode.table (measurements)")
        return self


class ProfileDoc(_Doc):
    format: Literal["powerplanner-profile/v1"]
    name: str = Field(min_length=1)
    source: str = ""
    context_window_tokens: PositiveInt | None = None  # prompt + output the model accepts; None: unknown
    gpu: GpuDoc
    prefill: PrefillDoc
    decode: DecodeDoc

    @field_validator("gpu", mode="before")
    @classmethod
    def _gpu_name_or_mapping(cls, value: object) -> object:
        if isinstance(value, str):
            return {"name": value}
        if not isinstance(value, Mapping):
            raise ValueError("must be a GPU name (e.g. H100-SXM) or a mapping {name, min_limit_watts, "
                             "max_limit_watts}")
        return value


def profile_validation_lines(error: ValidationError, where: str) -> list[str]:
    """One line per problem of a document that failed :class:`ProfileDoc`, pointing at docs/profile-format.md."""
    return validation_lines(
        error, where, docs="docs/profile-format.md", missing_hint=" (see docs/profile-format.md)",
        messages={("literal_error", ("format",)): f"must be {FORMAT_V1!r}"},
    )

