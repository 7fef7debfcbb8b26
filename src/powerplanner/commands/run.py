"""`powerplanner run`: the live planner against Prometheus and a Kubernetes DynamoGraphDeployment."""

from __future__ import annotations

import logging
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run(
        config: Path = typer.Option(..., "--config", "-c", help="Config file (YAML)."),
        once: bool = typer.Option(False, "--once", help="Run one tick and exit."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Decide and log; change nothing in the cluster."),
        log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
        admin_bind: str | None = typer.Option(
            None, "--admin-bind", metavar="HOST:PORT",
            help="Listen address of the admin endpoint, overriding budget.admin.bind (the Helm chart passes the "
            "pod IP here).",
        ),
    ) -> None:
        """Keep a Dynamo prefill/decode deployment inside its power budget: every cap tick, observe
        Prometheus, decide replicas and per-GPU caps, and apply them in a power-safe order."""
        from powerplanner.errors import UserError
        from powerplanner.live.service import run_service

        level = getattr(logging, log_level.upper(), None)
        if not isinstance(level, int):
            raise UserError(f"--log-level: unknown level {log_level!r}; use debug, info, warning or error")
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        code = run_service(config, once=once, dry_run=dry_run, admin_bind=admin_bind)
        if code:
            raise typer.Exit(code)
