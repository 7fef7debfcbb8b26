"""The pydantic base of every document a user writes (config, scenario, observation, profile).

Strict on purpose, for every field of every such model at once: pydantic's lax mode reads ``watts: true`` as
1.0 W and ``watts: "5000"`` as 5000.0, so a boolean or a quoted number in a file would silently become a power
budget. Strict mode takes an ``int`` or a ``float`` for a float field (YAML and JSON write ``5000`` and
``5000.0`` alike), only an ``int`` for an integer field and only ``true``/``false`` for a boolean; anything else
is an error naming the field (:func:`powerplanner.errors.validation_lines`, docs/configuration.md "Input files").
Unknown keys are errors too, so a typo never falls back to a default.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
"""A positive, finite number (a power, a duration): NaN and infinity are refused with the field named."""

NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
"""Zero or a positive, finite number."""


class InputModel(BaseModel):
    """Base of the models a user's file is validated against: unknown keys refused, no type coercion, frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
