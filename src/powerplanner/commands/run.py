"""`powerplanner run`: the live planner against Prometheus and a Kubernetes DynamoGraphDeployment."""

from __future__ import annotations

from pathlib import Path

import typer

from powerplanner.commands.options import CONFIG_ENV, LOG_FORMAT_ENV, LOG_FORMAT_HELP, LOG_LEVEL_ENV, LOG_LEVEL_HELP


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run(
        config: Path = typer.Option(..., "--config", "-c", envvar=CONFIG_ENV, help="Config file (YAML)."),
        once: bool = typer.Option(False, "--once", help="Run one tick and exit."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Decide and log; change nothing in the cluster."),
        log_level: str = typer.Option("info", "--log-level", envvar=LOG_LEVEL_ENV, help=LOG_LEVEL_HELP),
        log_format: str = typer.Option("text", "--log-format", envvar=LOG_FORMAT_ENV, help=LOG_FORMAT_HELP),
        as_json: bool = typer.Option(False, "--json", help="With --once: print the tick (GET /decision's body) as "
                                     "JSON on stdout; logs stay on stderr."),
        admin_bind: str | None = typer.Option(
            None, "--admin-bind", metavar="HOST:PORT",
            help="Listen address of the admin endpoint, overriding budget.admin.bind (the Helm chart passes the "
            "pod IP here).",
        ),
    ) -> None:
        """Keep a Dynamo prefill/decode deployment inside its power budget: every cap tick, observe
        Prometheus, decide replicas and per-GPU caps, and apply them in a power-safe order."""
        import json

        from powerplanner.commands.logs import configure_logging
        from powerplanner.errors import UserError
        from powerplanner.live.service import run_service

        if as_json and not once:
            raise UserError("--json prints one tick: add --once (the admin endpoint's GET /decision serves a running "
                            "planner's)")
        configure_logging(log_level, log_format)

        def print_tick(body: dict[str, object]) -> None:
            typer.echo(json.dumps(body, indent=2))

        code = run_service(config, once=once, dry_run=dry_run, admin_bind=admin_bind,
                           report=print_tick if as_json else None)
        if code:
            raise typer.Exit(code)
