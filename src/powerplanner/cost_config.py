"""The ``cost:`` section of the config: the prices a run's cost, and the planner's cost objective, are computed at.

Its defaults are :mod:`powerplanner.sim.cost`'s, each with its source; docs/configuration.md lists the fields and
docs/simulator.md ("GPU pool and cost") how they are used.
"""

from __future__ import annotations

from pydantic import Field

from powerplanner.input_schema import InputModel, NonNegativeFloat
from powerplanner.sim.cost import DEFAULT_ENERGY_USD_PER_KWH, DEFAULT_GPU_HOUR_USD, DEFAULT_PRICE_SOURCE, Prices


class CostConfig(InputModel):
    """Prices of a GPU-hour and of energy (used by simulate's cost per million tokens and planner.objective=cost)."""

    gpu_hour_usd: NonNegativeFloat = Field(
        DEFAULT_GPU_HOUR_USD, description="US dollars per GPU-hour (default: Lambda on-demand H100 SXM, 2025).")
    energy_usd_per_kwh: NonNegativeFloat = Field(
        DEFAULT_ENERGY_USD_PER_KWH, description="US dollars per kWh (default: EIA, US commercial average, 2024).")
    source: str = Field(DEFAULT_PRICE_SOURCE, description="Where the prices come from (shown with every cost).")

    def prices(self) -> Prices:
        return Prices(self.gpu_hour_usd, self.energy_usd_per_kwh, self.source)
