"""The planner's forecast stage: the load each tick is planned for, and the memory that needs.

It holds the predictors (rate, ISL, OSL), the interval's forecast, the burst window (observed rates and the
predictor's errors on them) and the idle count. Adjustment ticks feed it; cap ticks only read it, so the
predictors stay on the adjustment timescale (docs/planner.md, "One tick" and "Bursty load").
"""

from __future__ import annotations

import dataclasses

from powerplanner.model.values import LoadForecast, Observation
from powerplanner.planning.data_state import DataState
from powerplanner.planning.predictors import LoadPredictor
from powerplanner.planning.settings import PlannerSettings


class Forecaster:
    """Keeps the load side of the planner's state between ticks."""

    def __init__(self, settings: PlannerSettings) -> None:
        self._settings = settings
        self._predictor = LoadPredictor(settings.predictor)
        self._interval: LoadForecast | None = None  # the last adjustment tick's forecast
        self._idle_ticks = 0
        self._last_isl: float | None = None
        self._last_osl: float | None = None
        self._isl_tail_ratio: float | None = None  # last observed p90 / mean prompt length (None: no histogram)
        # observed rate and its one-step prediction error over the last burst_window_intervals adjustments
        self._recent_rates: list[float] = []
        self._recent_errors: list[float] = []

    @property
    def idle_ticks(self) -> int:
        """Consecutive adjustment ticks with positive evidence of no traffic."""
        return self._idle_ticks

    def adjust(self, obs: Observation, state: DataState, oracle_load: LoadForecast | None) -> LoadForecast | None:
        """An adjustment tick: learn from ``obs`` when its data is good, and forecast the next interval (the
        oracle's true load instead, where it receives one)."""
        predicted = self._predictor.forecast()
        if state is DataState.OK:
            self._idle_ticks = 0
            self._predictor.observe(obs.request_rate_per_s, obs.isl_tokens, obs.osl_tokens)
            self._last_isl, self._last_osl = obs.isl_tokens, obs.osl_tokens
            if obs.isl_p90_tokens is not None and obs.isl_tokens:
                self._isl_tail_ratio = max(1.0, obs.isl_p90_tokens / obs.isl_tokens)
            self._remember_rate(obs.request_rate_per_s, predicted)
        elif state is DataState.IDLE:
            self._idle_ticks += 1
            self._remember_rate(0.0, predicted)
        else:  # backlog, missing or failed data: no evidence of idleness, the idle count restarts
            self._idle_ticks = 0
        self._interval = oracle_load if oracle_load is not None else self._with_tail(self._predictor.forecast())
        return self._interval

    def _with_tail(self, forecast: LoadForecast | None) -> LoadForecast | None:
        """The forecast with its prompt-length p90: the predicted mean times the last observed p90/mean (the
        shape of the length distribution changes slower than its mean; docs/planner.md, "Decode KV footprint")."""
        if forecast is None or self._isl_tail_ratio is None:
            return forecast
        return dataclasses.replace(forecast, isl_p90_tokens=forecast.isl_tokens * self._isl_tail_ratio)

    def cap_tick(self, obs: Observation, state: DataState, oracle_load: LoadForecast | None) -> LoadForecast | None:
        """The load caps are sized for between adjustments.

        Caps change within seconds, so a cap tick reacts to what is happening now: the interval's forecast,
        raised to the currently observed rate if that is higher (a surge mid-interval is met with higher
        caps on the replicas already there). The oracle sees the true load of the coming interval instead.
        Nothing here feeds the predictors.
        """
        if oracle_load is not None:
            return oracle_load
        forecast = self._interval
        if state is not DataState.OK or obs.request_rate_per_s is None:
            return forecast
        if forecast is None:
            # No interval forecast yet (warm-up, or traffic resuming after an idle reset): size the caps for
            # the load observed now rather than holding caps chosen for no load.
            assert obs.isl_tokens is not None and obs.osl_tokens is not None  # state "ok" guarantees them
            return LoadForecast(obs.request_rate_per_s, obs.isl_tokens, obs.osl_tokens, obs.isl_p90_tokens)
        if obs.request_rate_per_s <= forecast.request_rate_per_s:
            return forecast
        return dataclasses.replace(forecast, request_rate_per_s=obs.request_rate_per_s)

    def peak(self, forecast: LoadForecast | None) -> LoadForecast | None:
        """The load ours sizes replicas for: the forecast with burst headroom; ``None`` when there is none.

        Why: a replica takes minutes to start, a cap seconds to change. Sized for the forecast (a mean that
        lags bursts), a bursty deployment sheds replicas in every lull and meets the next burst with too few
        for an interval plus a start-up. The headroom is ``planner.burst_error_multiple`` times the mean
        under-forecast (``max(0, observed - predicted)``) over the last ``planner.burst_window_intervals``
        adjustments, so it appears only where the predictor has recently been caught out, and it grows with
        how badly. The rate ``forecast + headroom`` is sized at full SLA capacity (the target utilisation's
        own headroom is not added on top of it) and capped at the window's peak observed rate (sized like any
        forecast), so a steady or smoothly changing load (small errors) keeps its mean sizing and its energy.
        Caps still follow the current load on every cap tick; replicas kept for a burst draw idle power.
        """
        if forecast is None or not self._recent_errors:
            return None
        s = self._settings
        under = sum(max(0.0, e) for e in self._recent_errors) / len(self._recent_errors)
        upper = (forecast.request_rate_per_s + s.burst_error_multiple * under) * s.target_utilization
        peak = min(max(self._recent_rates), upper)
        if peak <= forecast.request_rate_per_s:
            return None
        return dataclasses.replace(forecast, request_rate_per_s=peak)

    def restart_for_idle(self) -> LoadForecast:
        """Scaling to the minimum after an idle spell: forget the load, and return the zero-rate load (at the
        last lengths seen) the minimum's caps are chosen for."""
        self._predictor.reset()
        self._recent_rates.clear()
        self._recent_errors.clear()
        self._interval = None
        return LoadForecast(0.0, self._last_isl or 1.0, self._last_osl or 1.0)

    def _remember_rate(self, rate_per_s: float | None, predicted: LoadForecast | None) -> None:
        """Keep the observed rate and the predictor's error on it (observed - predicted) for the burst window."""
        window = self._settings.burst_window_intervals
        if rate_per_s is None or window == 0:
            return
        self._recent_rates.append(rate_per_s)
        del self._recent_rates[:-window]
        if predicted is not None:
            self._recent_errors.append(rate_per_s - predicted.request_rate_per_s)
            del self._recent_errors[:-window]
