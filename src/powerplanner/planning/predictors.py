"""Next-interval load predictors for request rate, ISL and OSL.

Why these four and nothing heavier: Dynamo's SLA planner ships constant/ARIMA/Prophet/Kalman
predictors; ARIMA and Prophet pull in heavy forecasting stacks and need long histories, while the
planner sees one point per adjustment interval. A constant, an EWMA, Holt's linear trend and a local
linear trend Kalman filter cover "hold", "smooth", "follow a ramp" and "follow a ramp, noise-aware"
with a few floats of state each.

Every predictor:
- warms up: for the first ``warmup_ticks`` observations it predicts their plain mean (a trend fitted
  on one or two points is noise);
- optionally works on ``log1p(x)`` and transforms back, which tames bursty series;
- never predicts a negative value.
"""

from __future__ import annotations

import math
from typing import Protocol

from powerplanner.model.values import LoadForecast
from powerplanner.planning.settings import PredictorSettings


class Predictor(Protocol):
    """One time series, one step ahead."""

    def observe(self, value: float) -> None:
        """Add the value seen over the last interval (finite, >= 0)."""
        ...

    def predict(self) -> float | None:
        """Predicted value for the next interval; ``None`` before any observation."""
        ...

    def reset(self) -> None:
        """Forget everything (e.g. after a long idle period)."""
        ...


class _Smoother:
    """Shared warm-up, log1p transform and clamping; subclasses hold the model on transformed values."""

    def __init__(self, warmup_ticks: int = 0, log1p: bool = False) -> None:
        self._warmup_ticks = warmup_ticks
        self._log1p = log1p
        self._count = 0
        self._sum = 0.0

    def observe(self, value: float) -> None:
        if not math.isfinite(value) or value < 0:
            return  # the planner validates first; a predictor never lets one bad point poison its state
        x = math.log1p(value) if self._log1p else value
        self._count += 1
        self._sum += x
        self._update(x)

    def predict(self) -> float | None:
        if self._count == 0:
            return None
        x = self._sum / self._count if self._count <= self._warmup_ticks else self._forecast()
        value = math.expm1(x) if self._log1p else x
        return max(0.0, value)

    def reset(self) -> None:
        self._count = 0
        self._sum = 0.0
        self._reset_model()

    # model hooks
    def _update(self, x: float) -> None:
        raise NotImplementedError

    def _forecast(self) -> float:
        raise NotImplementedError

    def _reset_model(self) -> None:
        raise NotImplementedError


class ConstantPredictor(_Smoother):
    """Next = last. Dynamo's default; right when intervals are long and load is stable."""

    def __init__(self, warmup_ticks: int = 0, log1p: bool = False) -> None:
        super().__init__(warmup_ticks, log1p)
        self._last = 0.0

    def _update(self, x: float) -> None:
        self._last = x

    def _forecast(self) -> float:
        return self._last

    def _reset_model(self) -> None:
        self._last = 0.0


class EwmaPredictor(_Smoother):
    """Exponentially weighted mean: smooths noise, lags ramps by about (1 - alpha) / alpha intervals."""

    def __init__(self, alpha: float = 0.5, warmup_ticks: int = 0, log1p: bool = False) -> None:
        super().__init__(warmup_ticks, log1p)
        if not 0 < alpha <= 1:
            raise ValueError("alpha must be in (0, 1]")
        self._alpha = alpha
        self._level: float | None = None

    def _update(self, x: float) -> None:
        self._level = x if self._level is None else self._alpha * x + (1 - self._alpha) * self._level

    def _forecast(self) -> float:
        return 0.0 if self._level is None else self._level

    def _reset_model(self) -> None:
        self._level = None


class HoltPredictor(_Smoother):
    """Holt's linear trend (level + slope), so a ramp is followed instead of chased."""

    def __init__(self, alpha: float = 0.5, beta: float = 0.2, warmup_ticks: int = 0, log1p: bool = False) -> None:
        super().__init__(warmup_ticks, log1p)
        if not (0 < alpha <= 1 and 0 < beta <= 1):
            raise ValueError("alpha and beta must be in (0, 1]")
        self._alpha = alpha
        self._beta = beta
        self._level: float | None = None
        self._trend = 0.0

    def _update(self, x: float) -> None:
        if self._level is None:
            self._level = x
            self._trend = 0.0
            return
        previous = self._level
        self._level = self._alpha * x + (1 - self._alpha) * (previous + self._trend)
        self._trend = self._beta * (self._level - previous) + (1 - self._beta) * self._trend

    def _forecast(self) -> float:
        return 0.0 if self._level is None else self._level + self._trend

    def _reset_model(self) -> None:
        self._level = None
        self._trend = 0.0


class KalmanPredictor(_Smoother):
    """Local linear trend model: state (level, slope), observation = level + noise.

    The noise ratios come from ``alpha``/``beta`` so one config knob means the same thing for every
    predictor: for a local level model the steady-state Kalman gain K and the signal-to-noise ratio q
    satisfy q = K^2 / (1 - K), so q_level = alpha^2 / (1 - alpha) makes the filter's steady gain equal
    the EWMA's alpha; the slope noise is beta^2 times that. Only ratios matter, so the filter is
    scale-free (the observation noise is fixed at 1 and the initial covariance is diffuse).
    """

    def __init__(self, alpha: float = 0.5, beta: float = 0.2, warmup_ticks: int = 0, log1p: bool = False) -> None:
        super().__init__(warmup_ticks, log1p)
        a = min(alpha, 0.99)
        self._q_level = a * a / (1 - a)
        self._q_trend = beta * beta * self._q_level
        self._reset_model()

    def _reset_model(self) -> None:
        self._level: float | None = None
        self._trend = 0.0
        self._p = [[1e6, 0.0], [0.0, 1e6]]

    def _update(self, x: float) -> None:
        if self._level is None:
            self._level = x
            self._trend = 0.0
            self._p = [[1.0, 0.0], [0.0, 1e3]]
            return
        # predict: x' = F x, P' = F P F^T + Q with F = [[1, 1], [0, 1]]
        level = self._level + self._trend
        trend = self._trend
        (p00, p01), (p10, p11) = self._p
        a00 = p00 + p01 + p10 + p11 + self._q_level
        a01 = p01 + p11
        a10 = p10 + p11
        a11 = p11 + self._q_trend
        # update with H = [1, 0], R = 1
        s = a00 + 1.0
        k0 = a00 / s
        k1 = a10 / s
        innovation = x - level
        self._level = level + k0 * innovation
        self._trend = trend + k1 * innovation
        self._p = [[(1 - k0) * a00, (1 - k0) * a01], [a10 - k1 * a00, a11 - k1 * a01]]

    def _forecast(self) -> float:
        return 0.0 if self._level is None else self._level + self._trend


def make_predictor(settings: PredictorSettings) -> Predictor:
    """Build one predictor of ``settings.kind`` (``planner.predictor`` in the config)."""
    if settings.kind == "constant":
        return ConstantPredictor(settings.warmup_ticks, settings.log1p)
    if settings.kind == "ewma":
        return EwmaPredictor(settings.alpha, settings.warmup_ticks, settings.log1p)
    if settings.kind == "holt":
        return HoltPredictor(settings.alpha, settings.beta, settings.warmup_ticks, settings.log1p)
    if settings.kind == "kalman":
        return KalmanPredictor(settings.alpha, settings.beta, settings.warmup_ticks, settings.log1p)
    raise ValueError(f"unknown predictor kind {settings.kind!r}; use constant, ewma, holt or kalman")


class LoadPredictor:
    """Rate, ISL and OSL, each with its own predictor of the configured kind."""

    def __init__(self, settings: PredictorSettings) -> None:
        self._rate = make_predictor(settings)
        self._isl = make_predictor(settings)
        self._osl = make_predictor(settings)

    def observe(self, rate_per_s: float | None, isl_tokens: float | None, osl_tokens: float | None) -> None:
        """Feed one interval; ``None`` leaves that series untouched (no data is not zero)."""
        if rate_per_s is not None:
            self._rate.observe(rate_per_s)
        if isl_tokens is not None and isl_tokens > 0:
            self._isl.observe(isl_tokens)
        if osl_tokens is not None and osl_tokens > 0:
            self._osl.observe(osl_tokens)

    def forecast(self) -> LoadForecast | None:
        """``None`` until every series has at least one observation."""
        rate, isl, osl = self._rate.predict(), self._isl.predict(), self._osl.predict()
        if rate is None or isl is None or osl is None:
            return None
        return LoadForecast(request_rate_per_s=rate, isl_tokens=max(1.0, isl), osl_tokens=max(1.0, osl))

    def reset(self) -> None:
        self._rate.reset()
        self._isl.reset()
        self._osl.reset()
