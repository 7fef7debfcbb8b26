"""`powerplanner agent`: the node power agent (a DaemonSet on GPU nodes)."""

from __future__ import annotations

from pathlib import Path

import typer

from powerplanner.commands.options import CONFIG_ENV, LOG_FORMAT_ENV, LOG_FORMAT_HELP, LOG_LEVEL_ENV, LOG_LEVEL_HELP
from powerplanner.errors import EndpointError


def register(app: typer.Typer) -> None:
    @app.command("agent")
    def agent(
        config: Path = typer.Option(..., "--config", "-c", envvar=CONFIG_ENV,
                                    help="Config file (YAML) with an `agent:` section."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Log the limits it would set; change nothing."),
        log_level: str = typer.Option("info", "--log-level", envvar=LOG_LEVEL_ENV, help=LOG_LEVEL_HELP),
        log_format: str = typer.Option("text", "--log-format", envvar=LOG_FORMAT_ENV, help=LOG_FORMAT_HELP),
        simulate_gpus: int = typer.Option(
            0, "--simulate-gpus", min=0, help="Manage N simulated GPUs (GPU-sim-0000, ...) instead of NVML: a demo."
        ),
    ) -> None:
        """Set each GPU's power limit from the annotation of the pod holding it; hand over on exit."""
        import logging

        from powerplanner.commands.logs import configure_logging
        from powerplanner.config import load_agent_config

        configure_logging(log_level, log_format)
        cfg = load_agent_config(config)
        from powerplanner.agent.app import node_name_from, run_agent
        from powerplanner.agent.gpu import BackendUnavailable, GpuBackend
        from powerplanner.agent.nvml_backend import NvmlBackend
        from powerplanner.agent.policy import EMPTY_NAMESPACES_LINE
        from powerplanner.agent.sim_backend import SimGpuBackend, sim_gpus

        node_name_from(cfg.agent)  # fail on a missing node name before touching the GPUs
        backend: GpuBackend
        if simulate_gpus:
            backend = SimGpuBackend(sim_gpus(simulate_gpus))
        else:
            try:
                backend = NvmlBackend.open()
            except BackendUnavailable as exc:
                raise EndpointError(str(exc)) from None
        if not cfg.agent.allowed_namespaces:  # valid (it parks free GPUs only), but rarely what was meant
            logging.getLogger("powerplanner.agent").warning(EMPTY_NAMESPACES_LINE)
        code = run_agent(cfg, backend, dry_run=dry_run)
        if code:
            raise typer.Exit(code)
