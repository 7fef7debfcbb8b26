"""Cost per million output tokens at stated prices (sim/cost.py)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from powerplanner.sim.cost import Prices, cost_per_mtok_usd


def test_worked_case() -> None:
    prices = Prices(gpu_hour_usd=2.0, energy_usd_per_kwh=0.10, source="test")
    # 10 GPU-h x $2 + 50 kWh x $0.10 = $25 for 5 M tokens -> $5 per million.
    assert cost_per_mtok_usd(10.0, 50.0, 5_000_000, prices) == pytest.approx(5.0)


def test_no_tokens_is_no_cost_figure() -> None:
    assert cost_per_mtok_usd(10.0, 50.0, 0, Prices()) is None


def test_defaults_state_their_sources() -> None:
    prices = Prices()
    assert prices.gpu_hour_usd > 0 and prices.energy_usd_per_kwh > 0
    assert "EIA" in prices.source and "GPU-h" in prices.source


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_prices_must_be_finite_and_non_negative(bad: float) -> None:
    with pytest.raises(ValueError, match="prices"):
        Prices(gpu_hour_usd=bad)
    with pytest.raises(ValueError, match="prices"):
        Prices(energy_usd_per_kwh=bad)


@given(
    gpu_h=st.floats(0, 1e4),
    kwh=st.floats(0, 1e5),
    tokens=st.integers(1, 10**10),
    extra=st.floats(0.01, 1e3),
)
def test_cost_grows_with_gpu_hours_and_energy(gpu_h: float, kwh: float, tokens: int, extra: float) -> None:
    prices = Prices(gpu_hour_usd=3.0, energy_usd_per_kwh=0.2, source="t")
    base = cost_per_mtok_usd(gpu_h, kwh, tokens, prices)
    assert base is not None and base >= 0
    more_gpu = cost_per_mtok_usd(gpu_h + extra, kwh, tokens, prices)
    more_energy = cost_per_mtok_usd(gpu_h, kwh + extra, tokens, prices)
    assert more_gpu is not None and more_gpu > base
    assert more_energy is not None and more_energy > base
