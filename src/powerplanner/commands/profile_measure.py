"""`powerplanner profile measure`: sweep a worker's GPU power limit under a fixed load, write the measured profile.

How to run it on a GPU node, and what it can and cannot measure: docs/profile-format.md, "Measuring a profile on
a GPU node". The sweep itself is :mod:`powerplanner.measure.sweep`, the fit :mod:`powerplanner.planning.cap_fit`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from powerplanner.commands.profile import JsonOption

if TYPE_CHECKING:
    from powerplanner.agent.gpu import GpuBackend, GpuInfo
    from powerplanner.measure.sweep import CapMeasurement
    from powerplanner.model.roles import Role
    from powerplanner.planning.cap_fit import SweepFit


def _numbers(text: str | None, flag: str, example: str) -> list[float] | None:
    from powerplanner.errors import MeasureError

    if text is None:
        return None
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise MeasureError(f"{flag} {text!r}: give numbers separated by commas, e.g. {flag} {example}") from None


def _roles(text: str) -> tuple[Role, ...]:
    from powerplanner.errors import MeasureError
    from powerplanner.model.roles import Role

    choices = {"both": (Role.PREFILL, Role.DECODE), "prefill": (Role.PREFILL,), "decode": (Role.DECODE,)}
    if text not in choices:
        raise MeasureError(f"--role {text!r}: give both, prefill or decode")
    return choices[text]


def _open_gpus(devices: list[int]) -> tuple[GpuBackend, list[GpuInfo]]:
    """The agent's NVML backend and the GPUs ``devices``; a missing driver or library is one line, never a
    traceback, and so is a GPU whose energy counter cannot be read."""
    from powerplanner.agent.gpu import GpuError
    from powerplanner.agent.nvml_backend import NvmlBackend
    from powerplanner.errors import MeasureError
    from powerplanner.measure.sweep import gpu_failure

    try:
        backend = NvmlBackend.open()
    except GpuError as exc:
        raise MeasureError(f"{exc}") from None
    gpus = backend.gpus()
    bad = [d for d in devices if not 0 <= d < len(gpus)]
    try:
        if bad:
            raise MeasureError(f"--device {bad[0]}: this node has {len(gpus)} GPU(s) (0-{len(gpus) - 1}); pick one")
        chosen = [gpus[d] for d in dict.fromkeys(devices)]
        for gpu in chosen:
            backend.energy_joules(gpu.uuid)
    except GpuError as exc:
        backend.close()
        raise gpu_failure(exc, "read the energy counter") from None
    except MeasureError:
        backend.close()
        raise
    return backend, chosen


def _rows(points: list[CapMeasurement]) -> list[dict[str, float]]:
    return [{"cap_watts": p.cap_watts, "ttft_ms": p.load.ttft_s * 1000.0, "itl_ms": p.load.itl_s * 1000.0,
             "throughput_tokens_per_s": p.load.throughput_tokens_per_s, "draw_watts": p.busy_draw_watts,
             "mean_draw_watts": p.mean_draw_watts, "busy_s": p.load.busy_s, "energy_j": p.energy_j,
             "energy_per_token_j": p.energy_per_token_j, "requests": float(p.load.requests),
             "duration_s": p.duration_s} for p in points]


def _fit_dict(fit: SweepFit) -> dict[str, Any]:
    return {"natural_draw_watts": fit.natural_draw_watts, "natural_observed": fit.natural_observed,
            **{r.role.value: {"uncapped_s": r.uncapped_s, "compute_share": r.compute_share,
                              "max_residual": r.max_residual} for r in (fit.prefill, fit.decode)}}


def _print_points(rows: list[dict[str, float]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="cap sweep (bold green: least energy per token)")
    for header in ("cap W", "TTFT ms", "ITL ms", "tok/s", "draw W", "J/token"):
        table.add_column(header, justify="right")
    best = min(rows, key=lambda r: r["energy_per_token_j"])
    for r in rows:
        table.add_row(f"{r['cap_watts']:.0f}", f"{r['ttft_ms']:.1f}", f"{r['itl_ms']:.2f}",
                      f"{r['throughput_tokens_per_s']:,.1f}", f"{r['draw_watts']:.0f}",
                      f"{r['energy_per_token_j']:.3f}", style="bold green" if r is best else None)
    Console().print(table)


# Over 60 lines: its signature is the command's 18 options (typer reads them from it); the body is 40 lines.
def measure(
    endpoint: Annotated[str, typer.Option("--endpoint", help="OpenAI-compatible base URL (Dynamo frontend, vLLM).")],
    base: Annotated[str, typer.Option("--base", help="Profile whose latency models the result keeps (built-in "
                                      "name or path); its GPU should be this node's.")] = "llama2-70b-h100-tp2",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="YAML file to write (our format).")] = None,
    device: Annotated[str, typer.Option("--device", help="NVML index of the GPU to cap, or the indices of one "
                                        "worker's GPUs (a TP group), comma-separated: all get the same cap.")] = "0",
    caps: Annotated[str | None, typer.Option("--caps", help="Caps in watts, comma-separated.")] = None,
    levels: Annotated[int, typer.Option("--levels", help="Evenly spaced caps from the GPU's min to max limit.",
                                        min=2)] = 5,
    isl: Annotated[int, typer.Option("--isl", help="Prompt tokens per request.", min=1)] = 512,
    osl: Annotated[int, typer.Option("--osl", help="Output tokens per request.", min=2)] = 128,
    concurrency: Annotated[int, typer.Option("--concurrency", help="Requests in flight.", min=1)] = 8,
    requests: Annotated[int, typer.Option("--requests", help="Requests per cap.", min=1)] = 32,
    model: Annotated[str | None, typer.Option("--model", help="Model name; default: the first of /v1/models.")] = None,
    chat: Annotated[bool, typer.Option("--chat", help="Use /v1/chat/completions, not /v1/completions.")] = False,
    timeout_s: Annotated[float, typer.Option("--timeout-s", help="Per-request timeout.", min=0.1)] = 120.0,
    role: Annotated[str, typer.Option("--role", help="What the GPU serves: both (aggregated), prefill or decode; "
                                      "the fit replaces only these roles' cap models.")] = "both",
    idle_s: Annotated[float, typer.Option("--idle-s", help="Seconds to measure the idle draw first (0: skip; "
                                          "the busy draw then counts the gaps between requests).", min=0)] = 2.0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only read: limits, energy, endpoint; set nothing.")]
    = False,
    as_json: JsonOption = False,
) -> None:
    """Sweep a GPU's power limit under a fixed load; restore the original limit however it ends."""
    import asyncio

    from powerplanner.agent.gpu import GpuError
    from powerplanner.commands.profile import _load
    from powerplanner.errors import MeasureError
    from powerplanner.measure.load import LoadSpec, drive, first_model
    from powerplanner.measure.sweep import CapSweep, cap_grid, gpu_failure

    profile = _load(base, None)
    roles = _roles(role)
    if output is None and not dry_run:
        raise MeasureError("give --output FILE for the measured profile (or --dry-run to only read)")
    indices = _numbers(device, "--device", "0,1") or [0.0]
    if any(d != int(d) for d in indices):
        raise MeasureError(f"--device {device!r}: give NVML indices (whole numbers), e.g. --device 0,1")
    devices = [int(d) for d in indices]
    backend, gpus = _open_gpus(devices)
    try:
        grid = cap_grid(gpus, _numbers(caps, "--caps", "300,450,600"), levels)
        _check_base(profile, grid)
        spec = LoadSpec(endpoint, model or first_model(endpoint, timeout_s), isl, osl, concurrency, requests, chat,
                        timeout_s)
        limits = {g.index: backend.limit_watts(g.uuid) for g in gpus}
        if dry_run:
            _report_plan(_plan(backend, gpus, limits, spec, grid), as_json)
            return
        say = (lambda i, c: None) if as_json else (lambda i, c: typer.echo(f"cap {i + 1}/{len(grid)}: {c:g} W",
                                                                            err=True))
        sweep = CapSweep(backend, gpus, lambda: asyncio.run(drive(spec)), on_cap=say)
        if idle_s > 0:
            sweep.idle_draw_watts(idle_s)
        points = sweep.run(grid)
    except GpuError as exc:  # a read outside the sweep (the sweep maps its own, after restoring)
        raise gpu_failure(exc, "read the GPUs") from None
    finally:
        backend.close()
    _write(profile, points, output, limits, gpus, roles, as_json)


def _check_base(profile: Any, grid: tuple[float, ...]) -> None:
    """Before anything is set: the fit reads each cap through the base's cap model, which must accept it."""
    from powerplanner.errors import MeasureError

    model = profile.prefill_caps
    outside = [c for c in grid if not model.min_limit_watts <= c <= model.max_limit_watts]
    if outside:
        raise MeasureError(f"caps {', '.join(f'{c:g}' for c in outside)} W are outside the range of --base "
                           f"{profile.name} ({profile.gpu.name}: [{model.min_limit_watts:g}, "
                           f"{model.max_limit_watts:g}] W); give a --base for this GPU or --caps inside that range")


def _plan(backend: GpuBackend, gpus: list[GpuInfo], limits: dict[int, float], spec: Any,
          grid: tuple[float, ...]) -> dict[str, Any]:
    return {"dry_run": True,
            "gpus": [{"index": g.index, "uuid": g.uuid, "name": g.name, "min_limit_watts": g.min_limit_watts,
                      "max_limit_watts": g.max_limit_watts, "limit_watts": limits[g.index],
                      "energy_j": backend.energy_joules(g.uuid)} for g in gpus],
            "endpoint": spec.endpoint, "model": spec.model, "caps_watts": list(grid), "isl_tokens": spec.isl_tokens,
            "osl_tokens": spec.osl_tokens, "concurrency": spec.concurrency, "requests_per_cap": spec.requests}


def _report_plan(plan: dict[str, Any], as_json: bool) -> None:
    from powerplanner.commands.profile import _echo_json

    if as_json:
        _echo_json(plan)
        return
    for g in plan["gpus"]:
        typer.echo(f"GPU {g['index']} {g['name']} ({g['uuid']}): limit {g['limit_watts']:g} W, range "
                   f"[{g['min_limit_watts']:g}, {g['max_limit_watts']:g}] W, energy counter {g['energy_j']:.0f} J")
    typer.echo(f"endpoint {plan['endpoint']} serves {plan['model']}")
    typer.echo(f"would set caps {', '.join(f'{c:g}' for c in plan['caps_watts'])} W, {plan['requests_per_cap']} "
               f"requests each at ISL {plan['isl_tokens']}, OSL {plan['osl_tokens']}, concurrency "
               f"{plan['concurrency']}, then restore the limits above; nothing was set (dry run)")


def _write(profile: Any, points: list[CapMeasurement], output: Path | None, limits: dict[int, float],
           gpus: list[GpuInfo], roles: tuple[Role, ...], as_json: bool) -> None:
    import yaml

    from powerplanner.commands.profile import _echo_json
    from powerplanner.errors import MeasureError
    from powerplanner.model.profile_format import document_from_profile
    from powerplanner.planning.cap_fit import SweepPoint, fit_sweep, measured_profile

    assert output is not None  # checked before the sweep
    fit = fit_sweep(profile, [SweepPoint(p.cap_watts, p.load.ttft_s, p.load.itl_s, p.busy_draw_watts)
                              for p in points])
    source = f"cap sweep on {len(gpus)} x {gpus[0].name} ({', '.join(g.uuid for g in gpus)}), {len(points)} caps"
    document = document_from_profile(measured_profile(profile, fit, source, roles))
    try:
        output.write_text(yaml.safe_dump(document, sort_keys=False, width=120), encoding="utf-8")
    except OSError as exc:
        raise MeasureError(f"{output}: cannot write the profile ({exc}); choose a writable path") from None
    rows = _rows(points)
    idle = points[0].idle_watts if points else None
    if as_json:
        _echo_json({"gpus": [{"index": g.index, "uuid": g.uuid, "name": g.name, "restored_limit_watts":
                              limits[g.index]} for g in gpus],
                    "idle_watts": idle, "points": rows, "fit": _fit_dict(fit), "output": str(output)})
        return
    _print_points(rows)
    typer.echo(f"natural draw {fit.natural_draw_watts:.0f} W per GPU"
               + ("" if fit.natural_observed else " (every cap bound: a lower bound)")
               + f"; compute share prefill {fit.prefill.compute_share:.3f}, decode {fit.decode.compute_share:.3f}")
    if idle is not None:
        typer.echo(f"idle draw {idle:.0f} W per GPU (measured first; the busy draw leaves out the gaps between "
                   "requests)")
    restored = ", ".join(f"GPU {i} {w:g} W" for i, w in limits.items())
    typer.echo(f"restored the limits ({restored}); wrote {output}")
