"""How a comparison is shown: a rich table, and a report directory (summary.md, results.json, PNG plots).

The plots are sim/plots.py's (matplotlib, the ``plots`` extra).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from powerplanner.errors import UserError
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
    ("GPU-h", "gpu_hours"),
    ("peak prov W", "peak_provisioned_watts"),
    ("peak drawn W", "peak_drawn_watts"),
    ("s over budget", "seconds_over_budget"),
    ("done/requests", "completed"),
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
