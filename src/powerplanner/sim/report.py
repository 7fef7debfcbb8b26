"""How a comparison is shown: a rich table, and a report directory (summary.md, results.json, PNG plots).

The plots are sim/plots.py's (matplotlib, the ``plots`` extra).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from powerplanner.errors import UserError
from powerplanner.sim.calibration_report import calibration_markdown
from powerplanner.sim.metrics import PolicyMetrics
from powerplanner.sim.plots import PLOT_FILES, ProgressFn, write_plots
from powerplanner.sim.runner import Comparison
from powerplanner.sim.scenarios import Scenario

__all__ = ["PLOT_FILES", "ReportError", "headline", "rich_table", "summary_markdown", "table_rows", "write_report"]


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
    ("$/M out tok", "cost_per_mtok_usd"),
    ("GPU-h", "gpu_hours"),
    ("peak GPUs", "peak_gpus"),
    ("peak prov W", "peak_provisioned_watts"),
    ("peak drawn W", "peak_drawn_watts"),
    ("s over budget", "seconds_over_budget"),
    ("done/requests", "completed"),
    ("refused", "refused"),
    ("max decode queue", "decode_queue_max"),
)
"""summary.md's columns (title, key)."""

TERMINAL_COLUMNS: tuple[str, ...] = (
    "policy", "slo_attainment", "ttft", "itl", "energy_per_output_token_j", "cost_per_mtok_usd", "gpu_hours",
    "peak_gpus", "peak_provisioned_watts", "peak_drawn_watts", "seconds_over_budget",
)
"""The printed table's columns: fewer, shorter, so it fits a 120-column terminal (summary.md has them all)."""

_SHORT_TITLES = {"ttft": "TTFT p50/p99", "itl": "ITL p50/p99", "energy_per_output_token_j": "J/tok",
                 "cost_per_mtok_usd": "$/Mtok", "peak_gpus": "GPUs",
                 "peak_provisioned_watts": "prov kW", "peak_drawn_watts": "drawn kW", "seconds_over_budget": "s over"}

NOT_COMPARABLE_MARK = "*"


def _cells(name: str, m: PolicyMetrics, kilowatts: bool = False) -> dict[str, str]:
    """Every column's text for one policy, by key; a policy that went over the budget is marked."""
    def power(watts: float) -> str:
        return f"{watts / 1000:.1f}" if kilowatts else f"{watts:,.0f}"

    return {
        "policy": name if m.comparable else name + NOT_COMPARABLE_MARK,
        "slo_attainment": _pct(m.slo_attainment),
        "ttft_attainment": _pct(m.ttft_attainment),
        "itl_attainment": _pct(m.itl_attainment),
        "ttft": f"{_fmt(m.ttft_p50_ms, '.0f')}/{_fmt(m.ttft_p99_ms, '.0f')}",
        "itl": f"{_fmt(m.itl_p50_ms, '.1f')}/{_fmt(m.itl_p99_ms, '.1f')}",
        "energy_kwh": f"{m.energy_kwh:.2f}",
        "energy_per_output_token_j": _fmt(m.energy_per_output_token_j, ".2f"),
        "cost_per_mtok_usd": _fmt(m.cost_per_mtok_usd, ".2f"),
        "gpu_hours": f"{m.gpu_hours:.1f}",
        "peak_gpus": f"{m.peak_gpus}",
        "peak_provisioned_watts": power(m.peak_provisioned_watts),
        "peak_drawn_watts": power(m.peak_drawn_watts),
        "seconds_over_budget": f"{m.seconds_over_budget:.0f}",
        "completed": f"{m.completed}/{m.requests}",
        "refused": f"{m.refused}",
        "decode_queue_max": f"{m.decode_queue_max:,}",
    }


def table_rows(metrics: dict[str, PolicyMetrics]) -> list[list[str]]:
    """summary.md's table as text cells, one row per policy."""
    return [[_cells(name, m)[key] for _, key in COLUMNS] for name, m in metrics.items()]


def not_comparable_lines(comparison: Comparison) -> list[str]:
    """One line per policy that went over the budget: its figures are not comparable with the others'."""
    return [f"{NOT_COMPARABLE_MARK} {name}: not comparable, {m.not_comparable_reason} (power the others did not have)"
            for name, m in comparison.metrics.items() if not m.comparable]


def headline(comparison: Comparison) -> str:
    s = comparison.scenario
    t = comparison.trace
    return (
        f"scenario {s.name}: {len(t):,} requests over {t.duration_s:,.0f} s "
        f"({s.trace.describe()}, rate x{s.rate_scale:g}), "
        f"profile {s.profile}, {plant_phrase(s)}, budget {comparison.budget_watts:,.0f} W"
        + (f" ({comparison.budget_note})" if comparison.budget_note not in ("", "absolute") else "")
        + (", no GPU pool" if comparison.gpu_pool is None else f", GPU pool {comparison.gpu_pool}"
           + (f" ({comparison.pool_note})" if comparison.pool_note not in ("", "absolute") else ""))
        + f", SLA TTFT <= {s.sla.ttft_ms:g} ms and ITL <= {s.sla.itl_ms:g} ms; "
        f"simulated {comparison.simulated_s:,.0f} s in {comparison.wall_s:.1f} s wall"
    )


def window_line(comparison: Comparison) -> str | None:
    """One line when a policy's run refused requests for the profile's context window: how many, the trace's
    longest request and the built-in profiles whose window would fit it; None when nothing was refused."""
    from powerplanner.model.profiles import profiles_fitting

    refused = max((m.refused for m in comparison.metrics.values()), default=0)
    t = comparison.trace
    if refused == 0 or not len(t):
        return None
    longest = int((t.isl_tokens.astype(np.int64) + t.osl_tokens.astype(np.int64)).max())
    fits = profiles_fitting(longest)
    return (f"context window: {refused:,} requests exceed profile {comparison.scenario.profile}'s window and were "
            f"refused (left out of SLO attainment); the longest is {longest:,} tokens (prompt + output); "
            f"built-in profiles whose window fits it: {', '.join(fits) if fits else 'none'}")


def prices_line(comparison: Comparison) -> str:
    """The prices every cost figure is at, and their source."""
    p = comparison.prices
    return f"cost at ${p.gpu_hour_usd:g}/GPU-h and ${p.energy_usd_per_kwh:g}/kWh ({p.source})"


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
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, show_edge=False)
    titles = {key: title for title, key in COLUMNS} | _SHORT_TITLES
    for key in TERMINAL_COLUMNS:
        table.add_column(titles[key], justify="left" if key == "policy" else "right", no_wrap=True)
    for name, m in comparison.metrics.items():
        cells = _cells(name, m, kilowatts=True)
        table.add_row(*(cells[key] for key in TERMINAL_COLUMNS))
    return table


def summary_markdown(comparison: Comparison, plots: Sequence[str]) -> str:
    """summary.md: headline, the table, what each column means, and the plots."""
    lines = [f"# powerplanner simulate: {comparison.scenario.name}", "", headline(comparison) + ".", ""]
    window = window_line(comparison)
    if window:
        lines += [window + ".", ""]
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
    lines += ["", *not_comparable_lines(comparison)]
    lines += [
        "",
        prices_line(comparison) + ".",
        "",
        "SLO: fraction of the requests the model can serve meeting both the TTFT and the ITL target (unfinished "
        "requests count as misses; those refused for exceeding the profile's context window are counted apart, "
        "the same under every policy). Energy integrates every GPU's draw, idle and starting GPUs included. "
        "Provisioned power is the sum over holding replicas of GPUs x applied cap; seconds over budget is the "
        "time it exceeded the budget. "
        "See docs/simulator.md.",
        "",
    ]
    lines += calibration_markdown(comparison.calibration())
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


def write_report(comparison: Comparison, report_dir: str | Path, plots: bool = True,
                 progress: ProgressFn | None = None) -> Path:
    """Write summary.md, results.json and the PNG plots into ``report_dir`` (created if needed); ``progress``
    hears a line per plot."""
    out = Path(report_dir).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(comparison.to_json(), indent=2) + "\n", encoding="utf-8")
        written = write_plots(comparison, out, progress) if plots else []
        (out / "summary.md").write_text(summary_markdown(comparison, written), encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"{out}: cannot write the report ({exc.strerror or exc}); "
                          "choose a writable directory with --report-dir") from None
    return out
