"""The report's plots: overlapping policies stay distinguishable, the energy bars carry their values and SLO
attainment, plotting reports progress and warns nothing, and a thinned CDF is the same curve."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from powerplanner.sim.plots import (
    PLOT_FILES,
    _plot_energy,
    _plot_replicas_caps,
    cdf_points,
    policy_styles,
    write_plots,
)
from powerplanner.sim.runner import Comparison, compare
from tests.unit.sim.test_runner import small_scenario, stub_run

POLICIES = ["ours", "static", "dynamo-sla", "dynamo-power", "dynamo-1.6", "proportional", "oracle"]


@pytest.fixture(scope="module")
def plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as pyplot

    return pyplot


@pytest.fixture(scope="module")
def overlapping() -> Comparison:
    """Every policy with the very same time series (the stub's): all lines lie on one another."""
    return compare(small_scenario(budget_watts=3000.0), POLICIES, workers=1, run_one=stub_run)


@given(st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=8, unique=True))
def test_every_policy_has_its_own_line_style_and_marker(names: list[str]) -> None:
    styles = policy_styles(names)
    looks = [(str(s.linestyle), s.marker) for s in styles.values()]
    assert len(set(looks)) == len(names)
    widths = [s.linewidth for s in styles.values()]
    assert widths == sorted(widths, reverse=True) and min(widths) >= 1.0  # later (thinner) lines lie on top
    assert len({s.markevery[0] for s in styles.values()}) == len(names)  # markers staggered along the line


def test_overlapping_policies_are_drawn_distinguishably(overlapping: Comparison, plt: Any) -> None:
    fig = _plot_replicas_caps(overlapping, policy_styles(POLICIES), plt)
    try:
        for ax in fig.axes:
            lines = [ln for ln in ax.get_lines() if ln.get_label() in POLICIES]
            assert [ln.get_label() for ln in lines] == POLICIES
            looks = {(str(ln.get_linestyle()), ln.get_marker(), ln.get_linewidth()) for ln in lines}
            assert len(looks) == len(POLICIES), "two policies would draw as one line"
    finally:
        plt.close(fig)


def test_energy_bars_show_their_value_and_slo_attainment(overlapping: Comparison, plt: Any) -> None:
    fig = _plot_energy(overlapping, policy_styles(POLICIES), plt)
    try:
        total, per_token = fig.axes
        labels = [t.get_text() for t in total.texts]
        assert len(labels) == len(POLICIES)
        for name, label in zip(overlapping.metrics, labels, strict=True):
            m = overlapping.metrics[name]
            assert label == f"{m.energy_kwh:.2f} kWh\nSLO {100 * m.slo_attainment:.1f}%"
        assert all("J\nSLO " in t.get_text() for t in per_token.texts)
    finally:
        plt.close(fig)


def test_plotting_reports_progress_and_warns_nothing(overlapping: Comparison, tmp_path: Path, plt: Any) -> None:
    heard: list[str] = []
    opened: list[Any] = []
    real_subplots = plt.subplots

    def subplots(*args: Any, **kwargs: Any) -> Any:
        fig, axes = real_subplots(*args, **kwargs)
        opened.append(fig)
        return fig, axes

    plt.subplots = subplots
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            written = write_plots(overlapping, tmp_path, progress=heard.append)
    finally:
        plt.subplots = real_subplots
    assert written == list(PLOT_FILES) and all((tmp_path / name).stat().st_size > 0 for name in written)
    assert heard == [f"plotting {name} ({i}/4) ..." for i, name in enumerate(PLOT_FILES, start=1)]
    # loc="best" is slow on long runs and warns there (matplotlib times it): every legend has a fixed place.
    legends = [ax.get_legend() for fig in opened for ax in fig.axes if ax.get_legend() is not None]
    assert legends and all(legend._loc != 0 for legend in legends)  # 0 is matplotlib's code for "best"


@given(st.integers(min_value=1, max_value=20_000), st.integers(min_value=0, max_value=500))
def test_a_thinned_cdf_is_the_same_curve(finished: int, unfinished: int) -> None:
    rng = np.random.default_rng(finished)
    values = np.concatenate([rng.lognormal(5, 1, finished), np.full(unfinished, np.nan)])
    requests = finished + unfinished
    full_x, full_y = cdf_points(values, requests, max_points=10**9)
    xs, ys = cdf_points(values, requests, max_points=500)
    assert full_x.size == finished and xs.size == min(finished, 500)
    assert xs[0] == full_x[0] and xs[-1] == full_x[-1] and ys[-1] == full_y[-1]  # ends where the real one ends
    ranks = np.round(ys * requests).astype(np.int64) - 1
    assert np.array_equal(full_x[ranks], xs) and np.array_equal(full_y[ranks], ys)  # kept points lie on the curve
    assert np.all(np.diff(ranks) > 0)
