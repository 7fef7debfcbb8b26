"""Predictors: warm-up, following ramps, log1p, never negative, never poisoned by one bad point."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerplanner.config import PredictorConfig
from powerplanner.core_settings import predictor_settings
from powerplanner.planning.predictors import (
    ConstantPredictor,
    EwmaPredictor,
    HoltPredictor,
    KalmanPredictor,
    LoadPredictor,
    make_predictor,
)
from powerplanner.planning.settings import PredictorSettings

KINDS = ("constant", "ewma", "holt", "kalman")


def _settings(**fields: object) -> PredictorSettings:
    """``planner.predictor`` with these fields (the rest at the config's defaults), as the planner receives it."""
    return predictor_settings(PredictorConfig.model_validate(fields))


def test_an_unknown_kind_is_refused_not_taken_for_another() -> None:
    with pytest.raises(ValueError, match="unknown predictor kind 'arima'"):
        make_predictor(dataclasses.replace(_settings(), kind="arima"))


@pytest.mark.parametrize("kind", KINDS)
def test_nothing_before_data_and_after_reset(kind: str) -> None:
    p = make_predictor(_settings(kind=kind))
    assert p.predict() is None
    p.observe(3.0)
    assert p.predict() is not None
    p.reset()
    assert p.predict() is None


@pytest.mark.parametrize("kind", KINDS)
def test_warmup_predicts_the_plain_mean(kind: str) -> None:
    p = make_predictor(_settings(kind=kind, warmup_ticks=3))
    for value in (2.0, 4.0, 9.0):
        p.observe(value)
    assert p.predict() == pytest.approx(5.0)


def test_constant_is_last_value() -> None:
    p = ConstantPredictor()
    for value in (1.0, 7.0, 3.0):
        p.observe(value)
    assert p.predict() == 3.0


def test_ewma_smooths() -> None:
    p = EwmaPredictor(alpha=0.5)
    p.observe(0.0)
    p.observe(10.0)
    assert p.predict() == pytest.approx(5.0)


@pytest.mark.parametrize("predictor", [HoltPredictor(alpha=0.6, beta=0.4), KalmanPredictor(alpha=0.6, beta=0.4)])
def test_trend_predictors_follow_a_ramp(predictor: HoltPredictor | KalmanPredictor) -> None:
    for i in range(40):
        predictor.observe(10.0 + 2.0 * i)
    # next value of the ramp is 90; a level-only smoother would lag far behind
    assert predictor.predict() == pytest.approx(90.0, rel=0.03)


def test_ewma_lags_a_ramp_where_holt_does_not() -> None:
    e, h = EwmaPredictor(alpha=0.5), HoltPredictor(alpha=0.5, beta=0.3)
    for i in range(30):
        e.observe(float(i))
        h.observe(float(i))
    assert e.predict() is not None and h.predict() is not None
    assert abs(h.predict() - 30.0) < abs(e.predict() - 30.0)  # type: ignore[operator]


def test_log1p_tames_a_spike() -> None:
    plain, logged = EwmaPredictor(alpha=0.5), EwmaPredictor(alpha=0.5, log1p=True)
    for value in (10.0, 10.0, 10.0, 1000.0):
        plain.observe(value)
        logged.observe(value)
    assert logged.predict() < plain.predict()  # type: ignore[operator]


@pytest.mark.parametrize("kind", KINDS)
def test_bad_points_are_ignored(kind: str) -> None:
    p = make_predictor(_settings(kind=kind))
    p.observe(5.0)
    p.observe(math.nan)
    p.observe(-1.0)
    p.observe(math.inf)
    assert p.predict() == pytest.approx(5.0)


def test_load_predictor_needs_all_three_series() -> None:
    lp = LoadPredictor(_settings(kind="constant"))
    lp.observe(3.0, None, None)
    assert lp.forecast() is None
    lp.observe(None, 1000.0, 200.0)
    f = lp.forecast()
    assert f is not None and (f.request_rate_per_s, f.isl_tokens, f.osl_tokens) == (3.0, 1000.0, 200.0)


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    log1p=st.booleans(),
    series=st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=40),
)
def test_predictions_are_finite_and_non_negative(kind: str, log1p: bool, series: list[float]) -> None:
    p = make_predictor(_settings(kind=kind, log1p=log1p))
    for value in series:
        p.observe(value)
        out = p.predict()
        assert out is not None and math.isfinite(out) and out >= 0


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(KINDS), value=st.floats(min_value=0, max_value=1e5), n=st.integers(1, 30))
def test_a_constant_series_is_predicted_exactly(kind: str, value: float, n: int) -> None:
    p = make_predictor(_settings(kind=kind))
    for _ in range(n):
        p.observe(value)
    assert p.predict() == pytest.approx(value, rel=1e-6, abs=1e-6)
