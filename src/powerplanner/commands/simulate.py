"""`powerplanner simulate`: every chosen policy on the same trace, profile and budget, side by side.

With no arguments it runs the built-in ``default`` scenario (built-in trace and profile, no cluster, no
files needed) with all policies and writes the report to ./powerplanner-report.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from powerplanner.config import Config
    from powerplanner.sim.scenarios import Scenario

DEFAULT_REPORT_DIR = "powerplanner-report"
TABLE_WIDTH = 120


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate)


def simulate(
    scenario: Annotated[
        str, typer.Option("--scenario", "-s",
                          help="Built-in scenario name (default, code-like, long-context) or a YAML file.")
    ] = "default",
    trace: Annotated[
        str | None, typer.Option("--trace", help="Replay this trace instead (Azure CSV or Mooncake JSONL).")
    ] = None,
    rate_scale: Annotated[
        float | None, typer.Option("--rate-scale", help="Multiply the request rate (keeps shape and duration).")
    ] = None,
    duration_s: Annotated[
        float | None, typer.Option("--duration-s", help="Replay only the first this many seconds of the trace.")
    ] = None,
    compress_gaps_s: Annotated[
        float | None,
        typer.Option("--compress-gaps-s", help="Shorten every silence between requests to at most this (s)."),
    ] = None,
    budget_watts: Annotated[
        float | None, typer.Option("--budget-watts", help="GPU power budget in watts (default: the scenario's; with "
                                   "--trace, 0.7 x what dynamo-sla provisions at its unconstrained peak).")
    ] = None,
    gpu_pool: Annotated[
        int | None, typer.Option("--gpu-pool", min=1, help="GPUs every policy may hold (default: the scenario's; "
                                 "with --trace, the GPUs dynamo-sla holds at its unconstrained peak).")
    ] = None,
    policies: Annotated[
        str | None, typer.Option("--policies", help="Comma-separated policies (default: all).")
    ] = None,
    report_dir: Annotated[
        str, typer.Option("--report-dir", help="Where to write summary.md, results.json and plots.")
    ] = DEFAULT_REPORT_DIR,
    as_json: Annotated[bool, typer.Option("--json", help="Print results.json to stdout, nothing else.")] = False,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of synthetic traces and rate scaling.")] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Parallel processes (default: CPU cores).", min=1)
    ] = None,
    plant: Annotated[
        str | None,
        typer.Option("--plant", help="Simulated GPUs apart from the planner's profile: a preset "
                     "(prefill-compute-bound) or ROLE.KEY=VALUE overrides, comma-separated (default: the profile)."),
    ] = None,
) -> None:
    """Replay a trace through the simulated cluster under each policy and compare SLA, energy and power."""
    from powerplanner.sim.scenario_file import load_scenario

    chosen = load_scenario(scenario)
    names = _policy_names(policies, chosen)
    chosen = chosen.with_overrides(trace_path=trace, rate_scale=rate_scale, budget_watts=budget_watts, seed=seed,
                                   duration_s=duration_s, compress_gaps_s=compress_gaps_s, plant=plant,
                                   gpu_pool=gpu_pool)
    _run(chosen, names, Path(report_dir), as_json, workers)


def _policy_names(policies: str | None, chosen: Scenario) -> tuple[str, ...]:
    """``--policies`` (comma-separated), else the scenario's, else every policy (checked by :func:`_run`)."""
    from powerplanner.sim.runner import policy_names

    return (
        tuple(p.strip() for p in policies.split(",") if p.strip()) if policies is not None
        else chosen.policies or policy_names()
    )


def _check_plant(chosen: Scenario, config: Config) -> None:
    """A plant the cap model's checks reject fails here, before any worker starts."""
    from powerplanner.core_settings import profile_from_config
    from powerplanner.model.plant import build_plant, parse_plant

    spec = parse_plant(chosen.plant)
    if not spec.is_profile:
        build_plant(profile_from_config(config.profile), spec)


def _run(chosen: Scenario, names: tuple[str, ...], report_dir: Path, as_json: bool, workers: int | None) -> None:
    """Validate everything before any worker starts (policy names, simulator settings, planner overrides), run
    the comparison, write the report and print it."""
    import json
    import sys

    from rich.console import Console

    from powerplanner.sim.calibration_report import calibration_markdown
    from powerplanner.sim.plots import plots_available
    from powerplanner.sim.report import (
        headline,
        not_comparable_lines,
        prices_line,
        rich_table,
        window_line,
        write_report,
    )
    from powerplanner.sim.runner import check_policies, compare, sim_settings

    names = check_policies(names)
    sim_settings(chosen)  # bad simulator overrides fail here, before any worker starts
    config = chosen.config(chosen.budget_watts or 1.0)
    _check_plant(chosen, config)
    # The table fits 120 columns (sim/report.py TERMINAL_COLUMNS); never narrower, so no column is cropped.
    out = Console(highlight=False)
    out.width = max(out.width, TABLE_WIDTH)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    if not as_json:
        err.print(f"simulating {', '.join(names)} on scenario {chosen.name} ...")
    loaded = chosen.load_trace()
    show = not as_json and sys.stderr.isatty()
    result = compare(chosen, names, trace=loaded, workers=workers, show_progress=show)
    plotting = None if as_json else (lambda line: err.print(line, markup=False))  # plots take seconds each
    drawn = plots_available()
    if not drawn:
        err.print("plots skipped: matplotlib is not installed (pip install 'powerplanner[plots]')", markup=False)
    where = write_report(result, report_dir, plots=drawn, progress=plotting)
    window = window_line(result)
    if as_json:
        sys.stdout.write(json.dumps(result.to_json(), indent=2) + "\n")
        if window:
            err.print(window)
        err.print(f"report written to {where.resolve()}")
        return
    out.print(headline(result))
    out.print()
    out.print(rich_table(result))
    calibration = calibration_markdown(result.calibration())
    if calibration:
        out.print()
    for line in calibration:
        out.print(line, markup=False)
    out.print()
    for line in [*([window] if window else []), *not_comparable_lines(result), prices_line(result),
                 f"report written to {where.resolve()} (summary.md, results.json{', plots' if drawn else ''})"]:
        out.print(line, overflow="fold")
