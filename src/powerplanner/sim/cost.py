"""What a run costs: GPU-hours and energy at stated prices, per million output tokens.

A power-aware planner can save energy by holding more GPUs at lower caps; energy per token alone would hide
that those GPUs are rented. Cost per million output tokens puts both on one scale, at prices that are stated
with their sources (docs/simulator.md, "Cost").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_GPU_HOUR_USD = 2.99
"""On-demand price of one H100 SXM GPU-hour: Lambda's public price list (lambda.ai/pricing, on-demand
8x H100 SXM instance, $2.99 per GPU-hour, as listed in 2025)."""

DEFAULT_ENERGY_USD_PER_KWH = 0.128
"""US average retail price of electricity to the commercial sector, about 12.8 cents/kWh: EIA Electric Power
Monthly, Table 5.3 (annual average, 2024)."""

DEFAULT_PRICE_SOURCE = (
    "GPU-hour: Lambda on-demand 8x H100 SXM, $2.99/GPU-h (lambda.ai/pricing, 2025); "
    "energy: EIA Electric Power Monthly Table 5.3, US commercial average 2024, $0.128/kWh"
)

TOKENS_PER_MTOK = 1_000_000


@dataclass(frozen=True)
class Prices:
    """The prices a cost is computed at, and where they come from (shown next to every cost figure)."""

    gpu_hour_usd: float = DEFAULT_GPU_HOUR_USD
    energy_usd_per_kwh: float = DEFAULT_ENERGY_USD_PER_KWH
    source: str = DEFAULT_PRICE_SOURCE

    def __post_init__(self) -> None:
        if not all(math.isfinite(p) and p >= 0.0 for p in (self.gpu_hour_usd, self.energy_usd_per_kwh)):
            raise ValueError(
                f"prices must be finite and >= 0 (gpu_hour_usd={self.gpu_hour_usd}, "
                f"energy_usd_per_kwh={self.energy_usd_per_kwh})"
            )

    def cost_usd(self, gpu_hours: float, energy_kwh: float) -> float:
        """GPU-hours x GPU-hour price + energy x energy price (the planner's cost objective uses the same sum)."""
        return gpu_hours * self.gpu_hour_usd + energy_kwh * self.energy_usd_per_kwh


def cost_per_mtok_usd(gpu_hours: float, energy_kwh: float, output_tokens: int, prices: Prices) -> float | None:
    """US dollars per million output tokens; ``None`` when no token was produced (no cost per nothing)."""
    if output_tokens <= 0:
        return None
    return prices.cost_usd(gpu_hours, energy_kwh) * TOKENS_PER_MTOK / output_tokens
