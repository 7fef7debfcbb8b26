"""The report's PNG plots (docs/simulator.md, "The report"), drawn with matplotlib's Agg backend (no display).

Drawn from the simulator's time series, so what they show is exactly what the metrics were computed from.
Policies often coincide (every fixed-cap baseline sits at the GPU's maximum cap), so each policy has its own
colour, line style, marker and width: the first drawn is the widest, later ones lie thinner on top, and their
markers start at different places, so a line hidden under another still shows. matplotlib is the ``plots``
extra (pyproject.toml); every legend has a fixed place ("best" is slow on long runs and warns).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from powerplanner.sim.runner import Comparison
from powerplanner.sim.types import SimResult

PLOT_FILES = ("power.png", "replicas_caps.png", "latency_cdf.png", "energy.png")
LINESTYLES: tuple[Any, ...] = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 2)),
                               (0, (8, 2, 2, 2)))
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
CDF_POINTS = 2000  # a CDF is drawn through at most this many quantiles: 1/2000 of a step is below a pixel
ProgressFn = Callable[[str], None]


@dataclass(frozen=True)
class PolicyStyle:
    """How one policy's lines look in every plot."""

    color: str
    linestyle: Any
    marker: str
    linewidth: float
    zorder: float
    markevery: tuple[float, float]

    def line(self) -> dict[str, Any]:
        """Keyword arguments for ``plot``/``step``."""
        return {"color": self.color, "ls": self.linestyle, "marker": self.marker, "lw": self.linewidth,
                "zorder": self.zorder, "markevery": self.markevery, "markersize": 4.5}


def policy_styles(names: list[str]) -> dict[str, PolicyStyle]:
    """One distinct style per policy, in the comparison's order."""
    n = max(len(names), 1)
    return {name: PolicyStyle(
        color=f"C{i % 10}",
        linestyle=LINESTYLES[i % len(LINESTYLES)],
        marker=MARKERS[i % len(MARKERS)],
        linewidth=1.0 + 1.6 * (n - 1 - i) / max(n - 1, 1),
        zorder=2.0 + i,
        markevery=(0.02 + 0.3 * i / n, 0.3),  # fractions of the axes' diagonal: markers staggered per policy
    ) for i, name in enumerate(names)}


def plots_available() -> bool:
    """Whether matplotlib (the ``plots`` extra) is installed; without it the report has no plots."""
    try:
        import matplotlib  # noqa: F401 (drawn right after: the import is not wasted)
    except ModuleNotFoundError:
        return False
    return True


def write_plots(comparison: Comparison, out: Path, progress: ProgressFn | None = None) -> list[str]:
    """Draw the four plots into ``out``; returns the file names written. ``progress`` hears one line per plot
    (the long runs take seconds per plot)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    styles = policy_styles(list(comparison.results))
    plots = (("power.png", _plot_power), ("replicas_caps.png", _plot_replicas_caps),
             ("latency_cdf.png", _plot_latency_cdf), ("energy.png", _plot_energy))
    written = []
    for i, (name, draw) in enumerate(plots, start=1):
        if progress is not None:
            progress(f"plotting {name} ({i}/{len(plots)}) ...")
        written.append(_save(draw(comparison, styles, plt), out, name, plt))
    return written


def _plot_power(comparison: Comparison, styles: dict[str, PolicyStyle], plt: Any) -> Any:
    """Provisioned and drawn power against the budget."""
    results = comparison.results
    fig, axes = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    for name, r in results.items():
        t_min = r.series.time_s / 60.0
        axes[0].step(t_min, r.series.provisioned_watts / 1e3, where="post", label=name, **styles[name].line())
        axes[1].plot(t_min, r.series.drawn_watts / 1e3, label=name, **styles[name].line())
    for ax in axes:
        _budget_line(ax, results)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("provisioned kW")
    axes[1].set_ylabel("drawn kW")
    axes[1].set_xlabel("time (min)")
    axes[0].legend(loc="upper right", fontsize=8, ncol=2)
    axes[0].set_title(f"Power vs budget: {comparison.scenario.name}")
    return fig


def _plot_replicas_caps(comparison: Comparison, styles: dict[str, PolicyStyle], plt: Any) -> Any:
    """Replicas and caps per role."""
    fig, axes = plt.subplots(2, 2, figsize=(12, 7), sharex=True)
    for name, r in comparison.results.items():
        s = r.series
        t_min = s.time_s / 60.0
        for ax, values in ((axes[0][0], s.prefill_replicas), (axes[0][1], s.decode_replicas),
                           (axes[1][0], s.prefill_cap_watts), (axes[1][1], s.decode_cap_watts)):
            ax.step(t_min, values, where="post", label=name, **styles[name].line())
    for ax, title in zip(axes.flat, ("prefill replicas", "decode replicas", "prefill cap W/GPU", "decode cap W/GPU"),
                         strict=True):
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("time (min)")
    axes[0][0].legend(loc="upper left", fontsize=8)
    return fig


def _plot_latency_cdf(comparison: Comparison, styles: dict[str, PolicyStyle], plt: Any) -> Any:
    """TTFT and ITL CDFs with the SLA targets."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    sla = comparison.scenario.sla
    for name, r in comparison.results.items():
        for ax, values in ((axes[0], r.ttft_ms), (axes[1], r.itl_ms)):
            xs, ys = cdf_points(values, r.requests)
            if xs.size:
                ax.step(xs, ys, where="post", label=name, **styles[name].line())
    axes[0].axvline(sla.ttft_ms, color="k", ls="--", lw=1, label="SLA")
    axes[1].axvline(sla.itl_ms, color="k", ls="--", lw=1, label="SLA")
    axes[0].set_xscale("log")
    axes[0].set_xlabel("TTFT (ms)")
    axes[1].set_xlabel("ITL (ms)")
    for ax in axes:
        ax.set_ylabel("fraction of all requests")
        ax.set_ylim(0, 1.01)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right", fontsize=8)
    return fig


def _plot_energy(comparison: Comparison, styles: dict[str, PolicyStyle], plt: Any) -> Any:
    """Energy per policy, in total and per output token; each bar says its value and the policy's SLO attainment
    (energy alone would reward a policy that saves power by missing the SLO)."""
    names = list(comparison.metrics)
    metrics = comparison.metrics
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    panels = ((axes[0], [metrics[n].energy_kwh for n in names], "energy (kWh)", "{:.2f} kWh"),
              (axes[1], [metrics[n].energy_per_output_token_j for n in names], "energy per output token (J)",
               "{:.2f} J"))
    for ax, values, ylabel, fmt in panels:
        heights = [v if v is not None else 0.0 for v in values]
        bars = ax.bar(names, heights, color=[styles[n].color if n in styles else "C0" for n in names])
        labels = [("-" if v is None else fmt.format(v)) + f"\nSLO {100 * metrics[n].slo_attainment:.1f}%"
                  for n, v in zip(names, values, strict=True)]
        ax.bar_label(bars, labels=labels, padding=2, fontsize=7)
        ax.set_ylabel(ylabel)
        ax.set_ylim(0, max([*heights, 1e-9]) * 1.25)  # room for the two-line labels above the tallest bar
        ax.tick_params(axis="x", rotation=30, labelsize=8)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle("Energy per policy (bar labels: value and SLO attainment)", fontsize=10)
    return fig


def _budget_line(ax: Any, results: dict[str, SimResult]) -> None:
    # The budget is the same for every policy; draw it along the longest run.
    longest = max(results.values(), key=lambda r: r.series.time_s[-1] if r.series.time_s.size else -1.0, default=None)
    if longest is None or longest.series.time_s.size == 0:
        return
    budget = longest.series.budget_watts
    if np.all(budget < 1e11):
        ax.step(longest.series.time_s / 60.0, budget / 1e3, where="post", color="k", ls="--", lw=1.5,
                label="budget", zorder=20)


def cdf_points(values: np.ndarray, requests: int, max_points: int = CDF_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Empirical CDF over ALL requests (unfinished ones never reach 1.0, so the gap shows them), thinned to at
    most ``max_points`` evenly spaced ranks; the last rank is always kept so the curve ends where it should."""
    finite = np.sort(values[np.isfinite(values)])
    if finite.size == 0:
        return finite, finite
    ys = np.arange(1, finite.size + 1) / max(requests, finite.size)
    if finite.size > max_points:
        keep = np.unique(np.linspace(0, finite.size - 1, max_points).round().astype(np.int64))
        return finite[keep], ys[keep]
    return finite, ys


def _save(fig: Any, out: Path, name: str, plt: Any) -> str:
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name
