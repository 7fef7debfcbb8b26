"""How a comparison is shown: a rich table, and a report directory (summary.md, results.json, PNG plots).

Plots use matplotlib's Agg backend (no display needed) and are drawn from the simulator's time series,
so what the plots show is exactly what the metrics were computed from.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from powerplanner.errors import UserError
from powerplanner.sim.metrics import PolicyMetrics
from powerplanner.sim.runner import Comparison
from powerplanner.sim.scenarios import Scenario
from powerplanner.sim.types import SimResult

PLOT_FILES = ("power.png", "replicas_caps.png", "latency_cdf.png", "energy.png")


class ReportError(UserError):
    """The report directory cannot be written."""


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


COLUMNS: tuple[tuple[str, str], ...] = (
    ("policy", "policy"),
    ("SLO", "slo_attainment"),
    ("TTFT ok", "ttft_attainment"),
    ("ITL ok", "itl_attainment"),
    ("TTFT p50/p99 ms", "ttft"),
    ("ITL p50/p99 ms", "itl"),
    ("energy kWh", "energy_kwh"),
    ("J/out tok", "energy_per_output_token_j"),
    ("GPU-h", "gpu_hours"),
    ("peak prov W", "peak_provisioned_watts"),
    ("peak drawn W", "peak_drawn_watts"),
    ("s over budget", "seconds_over_budget"),
    ("done/requests", "completed"),
    ("max decode queue", "decode_queue_max"),
)


def table_rows(metrics: dict[str, PolicyMetrics]) -> list[list[str]]:
    """The comparison as text cells, one row per policy (shared by the rich table and summary.md)."""
    rows = []
    for name, m in metrics.items():
        rows.append([
            name,
            _pct(m.slo_attainment),
            _pct(m.ttft_attainment),
            _pct(m.itl_attainment),
            f"{_fmt(m.ttft_p50_ms, '.0f')}/{_fmt(m.ttft_p99_ms, '.0f')}",
            f"{_fmt(m.itl_p50_ms, '.1f')}/{_fmt(m.itl_p99_ms, '.1f')}",
            f"{m.energy_kwh:.2f}",
            _fmt(m.energy_per_output_token_j, ".2f"),
            f"{m.gpu_hours:.1f}",
            f"{m.peak_provisioned_watts:,.0f}",
            f"{m.peak_drawn_watts:,.0f}",
            f"{m.seconds_over_budget:.0f}",
            f"{m.completed}/{m.requests}",
            f"{m.decode_queue_max:,}",
        ])
    return rows


def headline(comparison: Comparison) -> str:
    s = comparison.scenario
    t = comparison.trace
    return (
        f"scenario {s.name}: {len(t):,} requests over {t.duration_s:,.0f} s "
        f"({s.trace.describe()}, rate x{s.rate_scale:g}), "
        f"profile {s.profile}, {plant_phrase(s)}, budget {comparison.budget_watts:,.0f} W"
        + (f" ({comparison.budget_note})" if comparison.budget_note not in ("", "absolute") else "")
        + f", SLA TTFT <= {s.sla.ttft_ms:g} ms and ITL <= {s.sla.itl_ms:g} ms; "
        f"simulated {comparison.simulated_s:,.0f} s in {comparison.wall_s:.1f} s wall"
    )


def plant_phrase(scenario: Scenario) -> str:
    """How the headline names the plant: said loudly when it differs from the planner's profile."""
    from powerplanner.model.plant import parse_plant

    spec = parse_plant(scenario.plant)
    if spec.is_profile:
        return "plant = the planner's profile"
    return f"plant {spec.text} (differs from the planner's profile)"


def rich_table(comparison: Comparison) -> Any:
    """A rich Table of the comparison (returned, so the caller chooses the console); print
    :func:`headline` above it."""
    from rich.table import Table

    table = Table()
    for title, _ in COLUMNS:
        table.add_column(title, justify="left" if title == "policy" else "right", no_wrap=True)
    for row in table_rows(comparison.metrics):
        table.add_row(*row)
    return table


def summary_markdown(comparison: Comparison, plots: Sequence[str]) -> str:
    """summary.md: headline, the table, what each column means, and the plots."""
    lines = [f"# powerplanner simulate: {comparison.scenario.name}", "", headline(comparison) + ".", ""]
    if comparison.scenario.description:
        lines += [comparison.scenario.description, ""]
    first = next(iter(comparison.results.values()), None)
    if first is not None and first.series.time_s.size:
        lines += [f"Every policy started from {int(first.series.prefill_replicas[0])} prefill and "
                  f"{int(first.series.decode_replicas[0])} decode replicas.", ""]
    lines.append("| " + " | ".join(t for t, _ in COLUMNS) + " |")
    lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(COLUMNS))) + "|")
    for row in table_rows(comparison.metrics):
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "SLO: fraction of all requests meeting both the TTFT and the ITL target (unfinished requests count as "
        "misses). Energy integrates every GPU's draw, idle and starting GPUs included. Provisioned power is the "
        "sum over holding replicas of GPUs x applied cap; seconds over budget is the time it exceeded the budget. "
        "See docs/simulator.md.",
        "",
    ]
    reasons = {k: r.reasons for k, r in comparison.results.items() if r.reasons}
    if reasons:
        lines += ["## Decision reasons (tick counts)", ""]
        for name, counts in reasons.items():
            shown = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
            lines.append(f"- {name}: {shown}")
        lines.append("")
    if plots:
        lines += ["## Plots", ""]
        lines += [f"![{p}]({p})" for p in plots]
        lines.append("")
    return "\n".join(lines)


def write_report(comparison: Comparison, report_dir: str | Path, plots: bool = True) -> Path:
    """Write summary.md, results.json and the PNG plots into ``report_dir`` (created if needed)."""
    out = Path(report_dir).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(comparison.to_json(), indent=2) + "\n", encoding="utf-8")
        written = write_plots(comparison, out) if plots else []
        (out / "summary.md").write_text(summary_markdown(comparison, written), encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"{out}: cannot write the report ({exc.strerror or exc}); "
                          "choose a writable directory with --report-dir") from None
    return out


# ----------------------------------------------------------------------------------------------------------
# Plots


def write_plots(comparison: Comparison, out: Path) -> list[str]:
    """Draw the four plots; returns the file names written."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    colors = {name: f"C{i}" for i, name in enumerate(comparison.results)}
    plots = (("power.png", _plot_power), ("replicas_caps.png", _plot_replicas_caps),
             ("latency_cdf.png", _plot_latency_cdf), ("energy.png", _plot_energy))
    return [_save(draw(comparison, colors, plt), out, name, plt) for name, draw in plots]


def _plot_power(comparison: Comparison, colors: dict[str, str], plt: Any) -> Any:
    """Provisioned and drawn power against the budget."""
    results = comparison.results
    fig, axes = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    for name, r in results.items():
        t_min = r.series.time_s / 60.0
        axes[0].step(t_min, r.series.provisioned_watts / 1e3, where="post", color=colors[name], label=name, lw=1.2)
        axes[1].plot(t_min, r.series.drawn_watts / 1e3, color=colors[name], label=name, lw=1.0)
    for ax in axes:
        _budget_line(ax, results)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("provisioned kW")
    axes[1].set_ylabel("drawn kW")
    axes[1].set_xlabel("time (min)")
    axes[0].legend(loc="upper right", fontsize=8, ncol=2)
    axes[0].set_title(f"Power vs budget: {comparison.scenario.name}")
    return fig


def _plot_replicas_caps(comparison: Comparison, colors: dict[str, str], plt: Any) -> Any:
    """Replicas and caps per role."""
    fig, axes = plt.subplots(2, 2, figsize=(12, 7), sharex=True)
    for name, r in comparison.results.items():
        s = r.series
        t_min = s.time_s / 60.0
        axes[0][0].step(t_min, s.prefill_replicas, where="post", color=colors[name], label=name)
        axes[0][1].step(t_min, s.decode_replicas, where="post", color=colors[name], label=name)
        axes[1][0].step(t_min, s.prefill_cap_watts, where="post", color=colors[name], label=name)
        axes[1][1].step(t_min, s.decode_cap_watts, where="post", color=colors[name], label=name)
    for ax, title in zip(axes.flat, ("prefill replicas", "decode replicas", "prefill cap W/GPU", "decode cap W/GPU"),
                         strict=True):
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("time (min)")
    axes[0][0].legend(fontsize=8)
    return fig


def _plot_latency_cdf(comparison: Comparison, colors: dict[str, str], plt: Any) -> Any:
    """TTFT and ITL CDFs with the SLA targets."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    sla = comparison.scenario.sla
    for name, r in comparison.results.items():
        for ax, values in ((axes[0], r.ttft_ms), (axes[1], r.itl_ms)):
            xs, ys = _cdf(values, r.requests)
            if xs.size:
                ax.step(xs, ys, where="post", color=colors[name], label=name)
    axes[0].axvline(sla.ttft_ms, color="k", ls="--", lw=1, label="SLA")
    axes[1].axvline(sla.itl_ms, color="k", ls="--", lw=1, label="SLA")
    axes[0].set_xscale("log")
    axes[0].set_xlabel("TTFT (ms)")
    axes[1].set_xlabel("ITL (ms)")
    for ax in axes:
        ax.set_ylabel("fraction of all requests")
        ax.set_ylim(0, 1.01)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return fig


def _plot_energy(comparison: Comparison, colors: dict[str, str], plt: Any) -> Any:
    """Energy per policy, in total and per output token."""
    names = list(comparison.metrics)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    kwh = [comparison.metrics[n].energy_kwh for n in names]
    per_tok = [comparison.metrics[n].energy_per_output_token_j or 0.0 for n in names]
    axes[0].bar(names, kwh, color=[colors[n] for n in names])
    axes[0].set_ylabel("energy (kWh)")
    axes[1].bar(names, per_tok, color=[colors[n] for n in names])
    axes[1].set_ylabel("energy per output token (J)")
    for ax in axes:
        ax.tick_params(axis="x", rotation=30, labelsize=8)
        ax.grid(alpha=0.3, axis="y")
    return fig


def _budget_line(ax: Any, results: dict[str, SimResult]) -> None:
    # The budget is the same for every policy; draw it along the longest run.
    longest = max(results.values(), key=lambda r: r.series.time_s[-1] if r.series.time_s.size else -1.0, default=None)
    if longest is None or longest.series.time_s.size == 0:
        return
    budget = longest.series.budget_watts
    if np.all(budget < 1e11):
        ax.step(longest.series.time_s / 60.0, budget / 1e3, where="post", color="k", ls="--", lw=1.5,
                label="budget")


def _cdf(values: np.ndarray, requests: int) -> tuple[np.ndarray, np.ndarray]:
    """Empirical CDF over ALL requests: unfinished ones never reach 1.0, so the gap shows them."""
    finite = np.sort(values[np.isfinite(values)])
    if finite.size == 0:
        return finite, finite
    ys = np.arange(1, finite.size + 1) / max(requests, finite.size)
    return finite, ys


def _save(fig: Any, out: Path, name: str, plt: Any) -> str:
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name
