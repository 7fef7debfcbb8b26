"""`powerplanner profile`: list, show, plot, validate and export power-performance profiles.

A profile argument is a built-in name (``powerplanner profile list``) or a path: our YAML format or
Dynamo's profiler output (a directory, raw_data.npz or the JSON twins), which needs ``--gpu``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rich.table import Table

    from powerplanner.model.capped import CappedProfile

GpuOption = Annotated[
    str | None, typer.Option("--gpu", help="GPU of a Dynamo profile (it has no power data), e.g. H200-SXM.")
]


def _load(ref: str, gpu: str | None) -> CappedProfile:
    """A built-in by name, else a path; the error names both possibilities when neither fits."""
    from powerplanner.errors import ProfileError
    from powerplanner.model.capped import CappedProfile
    from powerplanner.model.profiles import builtin_profile_names, load_profile

    if ref in builtin_profile_names():
        profile = load_profile(name=ref, gpu=gpu)
    elif Path(ref).exists():
        profile = load_profile(path=ref, gpu=gpu)
    else:
        names = ", ".join(builtin_profile_names())
        raise ProfileError(f"{ref!r} is neither a built-in profile ({names}) nor an existing file or directory; "
                           "check the name or path")
    if not isinstance(profile, CappedProfile):  # every loader returns one; keeps the type checker honest
        raise ProfileError(f"{ref}: unsupported profile type {type(profile).__name__}")
    return profile


def _caps(profile: CappedProfile, levels: int, caps: list[float] | None) -> tuple[float, ...]:
    from powerplanner.model.roles import Role

    if caps:
        for cap in caps:
            profile.cap_model(Role.PREFILL).check_cap(cap)
        return tuple(sorted(caps))
    return profile.cap_levels(Role.PREFILL, levels)


def _role_rows(profile: CappedProfile, caps: tuple[float, ...], isl: float, context: float,
               ttft_s: float | None, itl_s: float | None) -> dict[str, list[dict[str, float]]]:
    """Per role and cap: clock, slowdown, throughput, latency, draw and energy per token (pure numbers)."""
    import math

    from powerplanner.model.roles import Role

    rows: dict[str, list[dict[str, float]]] = {"prefill": [], "decode": []}
    for cap in caps:
        point = profile.cap_model(Role.PREFILL).operating_point(cap)
        thpt = profile.prefill_throughput_tokens_per_s_per_gpu(isl, cap, ttft_s)
        draw = profile.draw_watts(Role.PREFILL, cap, 1.0)
        rows["prefill"].append({
            "cap_watts": cap, "clock": point.clock, "slowdown": point.slowdown, "throughput": thpt,
            "latency_ms": profile.prefill_time_s(isl, cap) * 1000.0, "draw_watts": draw,
            "energy_mj_per_token": draw / thpt * 1000.0 if thpt > 0 else math.inf,
        })
        point = profile.cap_model(Role.DECODE).operating_point(cap)
        batch = profile.best_decode_batch(context, cap, itl_s)
        thpt = profile.decode_throughput_tokens_per_s_per_gpu(context, cap, itl_s)
        draw = profile.draw_watts(Role.DECODE, cap, 1.0)
        rows["decode"].append({
            "cap_watts": cap, "clock": point.clock, "slowdown": point.slowdown, "throughput": thpt,
            "batch": float(batch),
            "latency_ms": profile.decode_itl_s(max(1, batch), context, cap) * 1000.0, "draw_watts": draw,
            "energy_mj_per_token": draw / thpt * 1000.0 if thpt > 0 else math.inf,
        })
    return rows


def _summary_lines(profile: CappedProfile, isl: float, context: float) -> list[str]:
    """The figures the model promises (docs/profile-format.md, "The model behind every profile"), on a fine grid
    of caps: where prefill energy per token is least, and how flat decode throughput stays above decode's natural
    draw."""
    from powerplanner.model.roles import Role

    caps = profile.cap_levels(Role.PREFILL, 101)
    energy = [profile.energy_per_token_j(Role.PREFILL, c, isl_tokens=isl) for c in caps]
    best = min(range(len(caps)), key=lambda i: energy[i])
    natural = profile.natural_draw_watts(Role.DECODE)
    above = [c for c in caps if c >= natural] or [caps[-1]]
    thpt = [profile.decode_throughput_tokens_per_s_per_gpu(context, c) for c in above]
    spread = (max(thpt) - min(thpt)) / max(thpt) * 100.0 if max(thpt) > 0 else 0.0
    half = profile.gpu.max_limit_watts / 2
    half_drop = (1 - profile.decode_throughput_tokens_per_s_per_gpu(context, half) / max(thpt)) * 100.0
    low = profile.gpu.min_limit_watts
    low_drop = (1 - profile.decode_throughput_tokens_per_s_per_gpu(context, low) / max(thpt)) * 100.0
    return [
        f"prefill energy per token is least at {caps[best]:.0f} W: {energy[best] * 1000:.1f} mJ/token, "
        f"{(1 - energy[best] / energy[-1]) * 100:.0f}% below {caps[-1]:.0f} W and "
        f"{(1 - energy[best] / energy[0]) * 100:.0f}% below {caps[0]:.0f} W",
        f"decode throughput varies by {spread:.2f}% over caps >= its natural draw ({natural:.0f} W); "
        f"it drops {half_drop:.1f}% at half TDP ({half:.0f} W) and {low_drop:.1f}% at the minimum ({low:.0f} W)",
    ]


def _role_table(profile: CappedProfile, role: str, rows: list[dict[str, float]], isl: float, context: float,
                ttft_ms: float | None, itl_ms: float | None) -> Table:
    """One role's rows against the cap, the cap with the least energy per token in bold green."""
    from rich.table import Table

    from powerplanner.model.roles import Role

    natural = profile.natural_draw_watts(Role(role))
    if role == "prefill":
        title = f"prefill at ISL {isl:g} (natural draw {natural:g} W)"
        latency = "prefill time ms"
        if ttft_ms is not None:
            title += f", TTFT target {ttft_ms:g} ms"
    else:
        title = f"decode at context {context:g}, best batch (natural draw {natural:g} W)"
        latency = "ITL ms"
        if itl_ms is not None:
            title += f", ITL target {itl_ms:g} ms"
    table = Table(title=title)
    headers = ["cap W", "clock", "slowdown", "tok/s/GPU", latency, "draw W", "mJ/token"]
    if role == "decode":
        headers.insert(4, "batch")
    for h in headers:
        table.add_column(h, justify="right")
    best = min(rows, key=lambda r: r["energy_mj_per_token"])
    for r in rows:
        cells = [f"{r['cap_watts']:.0f}", f"{r['clock']:.2f}", f"{r['slowdown']:.3f}",
                 f"{r['throughput']:,.0f}", f"{r['latency_ms']:.1f}", f"{r['draw_watts']:.0f}",
                 f"{r['energy_mj_per_token']:.2f}"]
        if role == "decode":
            cells.insert(4, f"{r['batch']:.0f}")
        style = "bold green" if r is best else None
        table.add_row(*cells, style=style)
    return table


def register(app: typer.Typer) -> None:
    profile_app = typer.Typer(
        name="profile",
        help="Power-performance profiles: list the built-ins, show or plot one against the cap, validate a file, "
        "fit one from Prometheus history, measure one on a GPU node.",
    )
    app.add_typer(profile_app, name="profile")
    profile_app.callback(invoke_without_command=True)(_help_without_command)
    profile_app.command("list")(list_profiles)
    profile_app.command("show")(show)
    profile_app.command("plot")(plot)
    profile_app.command("validate")(validate)
    profile_app.command("export")(export)
    from powerplanner.commands.profile_fit import fit  # its own module: the command is as long as this one's others

    profile_app.command("fit")(fit)
    from powerplanner.commands.profile_measure import measure

    profile_app.command("measure")(measure)


def _help_without_command(ctx: typer.Context) -> None:
    # Print help ourselves rather than via no_args_is_help, whose exception the CLI shell cannot map.
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)


JsonOption = Annotated[bool, typer.Option("--json", help="One JSON object on stdout, for machines.")]


def _echo_json(value: object) -> None:
    """Strict JSON: an infinite energy per token (no throughput) is null, never ``Infinity``."""
    import json
    import math

    def finite(item: object) -> object:
        if isinstance(item, float) and not math.isfinite(item):
            return None
        if isinstance(item, dict):
            return {k: finite(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [finite(v) for v in item]
        return item

    typer.echo(json.dumps(finite(value), indent=2, allow_nan=False))


def list_profiles(as_json: JsonOption = False) -> None:
    """The built-in profiles, with GPU, TP per role and where their numbers come from."""
    from rich.console import Console
    from rich.table import Table

    from powerplanner.model.builtin import builtin_profiles

    if as_json:
        _echo_json({"profiles": [{"name": name, "gpu": p.gpu.name, "prefill_tp": p.prefill_tp,
                                  "decode_tp": p.decode_tp, "source": p.source}
                                 for name, p in sorted(builtin_profiles().items())]})
        return
    table = Table(title="built-in profiles")
    for column in ("name", "GPU", "TP prefill/decode", "source"):
        table.add_column(column, overflow="fold")
    for name, p in sorted(builtin_profiles().items()):
        table.add_row(name, p.gpu.name, f"{p.prefill_tp}/{p.decode_tp}", p.source)
    Console().print(table)


def show(
    ref: Annotated[str, typer.Argument(metavar="NAME|PATH", help="Built-in name or profile path.")],
    gpu: GpuOption = None,
    isl: Annotated[float, typer.Option("--isl", help="Prompt length for the prefill rows.", min=1)] = 2048,
    context: Annotated[
        float, typer.Option("--context", help="Mean decode context (ISL + OSL/2) for the decode rows.", min=1)
    ] = 2048,
    levels: Annotated[int, typer.Option("--levels", help="Number of evenly spaced caps.", min=2)] = 11,
    cap: Annotated[
        list[float] | None, typer.Option("--cap", help="Show these caps (watts) instead; repeatable.")
    ] = None,
    ttft_ms: Annotated[
        float | None, typer.Option("--ttft-ms", help="TTFT target: prefill throughput at the highest load "
                                   "meeting it (M/D/1 queueing).", min=0)
    ] = None,
    itl_ms: Annotated[
        float | None, typer.Option("--itl-ms", help="ITL target: decode throughput at the best batch meeting it.",
                                   min=0)
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """A table per role against the cap: clock, slowdown, throughput, latency, draw and energy per token."""
    from rich.console import Console

    profile = _load(ref, gpu)
    caps = _caps(profile, levels, cap)
    rows = _role_rows(profile, caps, isl, context, None if ttft_ms is None else ttft_ms / 1000.0,
                      None if itl_ms is None else itl_ms / 1000.0)
    if as_json:
        _echo_json({"name": profile.name, "gpu": profile.gpu.name, "prefill_tp": profile.prefill_tp,
                    "decode_tp": profile.decode_tp, "idle_watts_per_gpu": profile.idle_watts(),
                    "source": profile.source, "notes": list(profile.notes), "isl_tokens": isl,
                    "context_tokens": context, "rows": rows})
        return
    console = Console()
    console.print(f"[bold]{profile.name}[/] on {profile.gpu.name}: TP {profile.prefill_tp} prefill, "
                  f"{profile.decode_tp} decode; idle {profile.idle_watts():g} W/GPU")
    console.print(f"source: {profile.source}", soft_wrap=True)
    for note in profile.notes:
        console.print(f"note: {note}", soft_wrap=True)
    for role in ("prefill", "decode"):
        console.print(_role_table(profile, role, rows[role], isl, context, ttft_ms, itl_ms))
    console.print("bold green: the cap with the least energy per token")
    for line in _summary_lines(profile, isl, context):
        console.print(line, soft_wrap=True)


def plot(
    ref: Annotated[str, typer.Argument(metavar="NAME|PATH", help="Built-in name or profile path.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG file to write.")],
    gpu: GpuOption = None,
    isl: Annotated[float, typer.Option("--isl", help="Prompt length for prefill.", min=1)] = 2048,
    context: Annotated[float, typer.Option("--context", help="Mean decode context.", min=1)] = 2048,
) -> None:
    """Throughput, slowdown, draw and energy per token against the cap, both roles, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from powerplanner.errors import ProfileError

    profile = _load(ref, gpu)
    caps = _caps(profile, 51, None)
    rows = _role_rows(profile, caps, isl, context, None, None)
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), constrained_layout=True)
    panels = [("throughput", "tokens/s per GPU"), ("slowdown", "latency / uncapped latency"),
              ("draw_watts", "busy draw per GPU (W)"), ("energy_mj_per_token", "energy per token (mJ)")]
    for ax, (key, label) in zip(axes.flat, panels, strict=True):
        for role, style in (("prefill", "-"), ("decode", "--")):
            ax.plot([r["cap_watts"] for r in rows[role]], [r[key] for r in rows[role]], style, label=role)
        ax.set_xlabel("per-GPU power cap (W)")
        ax.set_ylabel(label)
        if key == "energy_mj_per_token":
            ax.set_yscale("log")  # the two roles differ by an order of magnitude
        ax.grid(True, alpha=0.3, which="both")
        ax.legend()
    fig.suptitle(f"{profile.name} on {profile.gpu.name} (prefill ISL {isl:g}, decode context {context:g})")
    try:
        fig.savefig(output, dpi=110)
    except OSError as exc:
        raise ProfileError(f"{output}: cannot write the plot ({exc}); choose a writable path") from None
    finally:
        plt.close(fig)
    typer.echo(f"wrote {output}")


def validate(
    ref: Annotated[str, typer.Argument(metavar="PATH", help="Profile file or Dynamo profiler directory.")],
    gpu: GpuOption = None,
) -> None:
    """Exit 0 when the profile loads; otherwise one line per problem and a non-zero exit."""
    profile = _load(ref, gpu)
    typer.echo(f"ok: {profile.name} on {profile.gpu.name}, TP {profile.prefill_tp} prefill / "
               f"{profile.decode_tp} decode")


def export(
    ref: Annotated[str, typer.Argument(metavar="NAME|PATH", help="Built-in name or profile path.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="YAML file to write (our format).")],
    gpu: GpuOption = None,
) -> None:
    """Write a profile in our YAML format: a starting point for your own measurements."""
    import yaml

    from powerplanner.errors import ProfileError
    from powerplanner.model.profile_format import document_from_profile

    document = document_from_profile(_load(ref, gpu))
    try:
        output.write_text(yaml.safe_dump(document, sort_keys=False, width=120), encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"{output}: cannot write the profile ({exc}); choose a writable path") from None
    typer.echo(f"wrote {output}")
