"""`powerplanner profile fit`: learn the profile from Prometheus history with the online calibration's estimator
(docs/operations.md, "Calibration offline: profile fit"); the logic is live/history.py and live/profile_fit.py."""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from powerplanner.commands.options import CONFIG_ENV
from powerplanner.errors import UserError

if TYPE_CHECKING:
    from powerplanner.config import Config, PrometheusConfig
    from powerplanner.model.capped import CappedProfile
    from powerplanner.planning.calibration import CalibrationSettings

_UNITS_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration_s(text: str) -> float:
    """``90s``, ``30m``, ``2h``, ``1d``, ``1h30m`` (Prometheus' units) in seconds; one line naming the form else."""
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhdw])", text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise UserError(f"--since {text!r} is not a duration; write it as Prometheus does, e.g. 30m, 2h, 1d or 1h30m")
    seconds = sum(float(n) * _UNITS_S[u] for n, u in parts)
    if seconds <= 0:
        raise UserError(f"--since {text!r} is zero; give a positive duration, e.g. 2h")
    return seconds


def _config(path: Path | None) -> Config | None:
    from powerplanner.config import load_config

    return load_config(path) if path is not None else None


def fit(
    output: Annotated[Path, typer.Option("--output", "-o", help="YAML file to write (our profile format).")],
    since: Annotated[str, typer.Option("--since", help="How much history to fit, back from now: 30m, 2h, 1d.")],
    prometheus: Annotated[str | None, typer.Option("--prometheus", help="Prometheus URL (default: prometheus.url "
                                                   "of --config).")] = None,
    dgd: Annotated[str | None, typer.Option("--dgd", help="Name of the DynamoGraphDeployment (default: "
                                            "kubernetes.dgd_name of --config, else 'llm').")] = None,
    namespace: Annotated[str | None, typer.Option("--namespace", "-n", help="Its namespace, when a DGD of that "
                                                  "name runs in several.")] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", envvar=CONFIG_ENV, help="The planner's config: its prometheus section (auth, TLS, "
        "frontend, labels), window, SLA, profile and planner.calibration.")] = None,
    profile: Annotated[str | None, typer.Option("--profile", help="The given profile, the prior (default: the "
                                                "config's profile).")] = None,
    gpu: Annotated[str | None, typer.Option("--gpu", help="GPU of a Dynamo profile given with --profile.")] = None,
    step_s: Annotated[float | None, typer.Option("--step", help="Seconds between steps (default: the cap tick, "
                                                 "planner.cap_interval_s, as the live loop reads).", min=1)] = None,
    end: Annotated[float | None, typer.Option("--end", help="End of the history, Unix seconds (default: now).",
                                              min=0)] = None,
    min_windows: Annotated[int, typer.Option("--min-windows", help="Usable windows needed.", min=1)] = 10,
    learn_draw: Annotated[bool | None, typer.Option("--learn-draw/--no-learn-draw", help="Also learn idle and "
                                                    "natural draw (default: planner.calibration.learn_draw).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout, for machines.")] = False,
) -> None:
    """Learn each role's cap response from Prometheus history (the online calibration's estimator, run offline)
    and write the learned profile."""
    # Over 60 lines with its 14 option declarations, which typer wants in the signature; the work is in _inputs,
    # live/history.py and live/profile_fit.py.
    import math
    import time

    from powerplanner.live.history import HistoryReader
    from powerplanner.live.profile_fit import check_enough, summary
    from powerplanner.live.profile_fit import fit as run_fit
    from powerplanner.live.prometheus import PrometheusClient
    from powerplanner.live.prometheus_error import PrometheusError

    since_s = parse_duration_s(since)
    run = _inputs(_config(config), profile, gpu, step_s, learn_draw, dgd)
    step, window_s = run.step_s, run.window_s
    client = PrometheusClient.from_config(run.prometheus, url=prometheus)
    end_s = math.floor((time.time() if end is None else end) / step) * step  # on multiples of it, as a dashboard's
    start_s = end_s - math.floor(since_s / step) * step
    try:
        ns, steps = HistoryReader(client, run.prometheus, run.dgd, namespace).read(start_s, end_s, step, window_s)
    except PrometheusError as exc:
        raise UserError(f"prometheus: {exc.line}") from None
    finally:
        client.close()
    result = run_fit(steps, run.profile, run.settings, window_s, run.sla_ttft_s, run.sla_itl_s)
    check_enough(result, min_windows, since, window_s)
    report = summary(result, dgd=run.dgd, namespace=ns, window_s=window_s, step_s=step, start_s=start_s,
                     end_s=end_s, needed=min_windows)
    _write(report, output)
    if as_json:
        typer.echo(json.dumps({k: v for k, v in report.items() if k != "profile"}, indent=2, allow_nan=False))
        return
    typer.echo(f"fitted {result.windows_found} window(s) ({result.ticks_used} ticks) with good data over {since} "
               f"of history for DGD {ns}/{run.dgd} (window {window_s:g} s, step {step:g} s; prior: "
               f"{run.profile.name})")
    for role, params in report["parameters"].items():
        for key, p in params.items():
            std = "n/a" if p["std"] is None else f"{p['std']:.3g}"
            typer.echo(f"  {role:7} {key:18} learned {p['learned']:.4g} +- {std}   given {p['given']:.4g}")
    typer.echo(f"wrote {output}")


@dataclass(frozen=True)
class _Inputs:
    """What the fit takes from the config and the flags."""

    prometheus: PrometheusConfig
    profile: CappedProfile
    settings: CalibrationSettings
    window_s: float
    step_s: float
    sla_ttft_s: float
    sla_itl_s: float
    dgd: str


def _inputs(cfg: Config | None, profile: str | None, gpu: str | None, step_s: float | None,
            learn_draw: bool | None, dgd: str | None) -> _Inputs:
    from powerplanner.commands.profile import _load
    from powerplanner.config import PlannerConfig, ProfileConfig, PrometheusConfig, SlaConfig
    from powerplanner.core_settings import calibration_settings, metrics_window_s, profile_from_config
    from powerplanner.model.capped import CappedProfile

    planner = cfg.planner if cfg else PlannerConfig()
    sla = cfg.sla if cfg else SlaConfig()
    given = _load(profile, gpu) if profile else profile_from_config(cfg.profile if cfg else ProfileConfig())
    if not isinstance(given, CappedProfile):
        raise UserError(f"profile {given.name}: has no cap model to learn; give a profile in our format")
    settings = calibration_settings(planner.calibration)
    if learn_draw is not None:
        settings = dataclasses.replace(settings, learn_draw=learn_draw)
    prom = cfg.prometheus if cfg else PrometheusConfig()
    return _Inputs(
        prometheus=prom, profile=given, settings=settings,
        window_s=metrics_window_s(cfg) if cfg else (prom.window_s or planner.adjustment_interval_s),
        # every tick, as the live loop: a window's features average the caps of each tick in it; at one step per
        # window they would average two caps, and a probe inside a window would be mostly missed
        step_s=step_s or planner.cap_interval_s,
        sla_ttft_s=sla.ttft_ms / 1000.0, sla_itl_s=sla.itl_ms / 1000.0,
        dgd=dgd or (cfg.kubernetes.dgd_name if cfg else "llm"),
    )


def _write(report: dict[str, Any], output: Path) -> None:
    import yaml

    if report["profile"] is None:
        raise UserError(f"the learned profile cannot be written in our format: {report['profile_error']}")
    try:
        output.write_text(yaml.safe_dump(report["profile"], sort_keys=False, width=120), encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{output}: cannot write the profile ({exc}); choose a writable path") from None
    report["output"] = str(output)
