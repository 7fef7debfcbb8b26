"""`powerplanner plan`: one decision, and its power-safe steps, for one observation.

Useful to see what a policy would do in a given state without a cluster: the observation is a JSON file
(docs/observation.md); without ``--config`` a default config is used with the observation's budget.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperOption

from powerplanner.commands.options import CONFIG_ENV, renamed

POLICY_HELP = "One of: {names}."


class PlanCommand(TyperCommand):
    """Lists the policies in ``--policy``'s help only when the help is shown: the registry imports planning/ and
    numpy, which every process building this CLI would pay for, the node agent's included (docs/install.md,
    "Images")."""

    def format_help(self, ctx: Any, formatter: Any) -> None:  # typer's (vendored) click types
        from powerplanner.planning.registry import policy_names

        for param in self.params:
            if param.name == "policy" and isinstance(param, TyperOption):
                param.help = POLICY_HELP.format(names=", ".join(policy_names()))
        super().format_help(ctx, formatter)


def decision_to_dict(decision: Any) -> dict[str, Any]:
    """A JSON-ready dict of a :class:`~powerplanner.model.values.Decision` (enums as their values)."""
    import dataclasses
    from enum import Enum

    def convert(value: Any) -> Any:
        if isinstance(value, Enum):
            return value.value
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, dict):
            return {str(convert(k)): convert(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [convert(v) for v in value]
        return value

    out: dict[str, Any] = convert(decision)
    return out


def register(app: typer.Typer) -> None:
    @app.command("plan", cls=PlanCommand)
    def plan(
        observation_path: Annotated[
            str | None, typer.Option("--observation", help="Observation JSON file (see docs/observation.md).")
        ] = None,
        observation_old: Annotated[str | None, typer.Option("-o", hidden=True)] = None,  # -o is --output elsewhere
        policy: Annotated[
            str | None,
            typer.Option("--policy", "-p", help=POLICY_HELP.format(names="see `powerplanner plan --help`")),
        ] = None,
        config_path: Annotated[
            str | None, typer.Option("--config", "-c", envvar=CONFIG_ENV,
                                     help="Config YAML (default: defaults + observation budget).")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the decision as JSON.")] = False,
    ) -> None:
        """Print the decision (targets, reasons, power, attainment) and its transition steps."""
        import json

        from powerplanner.config import config_from_mapping, load_config
        from powerplanner.core_settings import build_planner, profile_from_config
        from powerplanner.errors import ConfigError, ObservationError
        from powerplanner.observation_schema import load_observation

        # Here, not at the top: the CLI loads every command module, and the planner core (numpy) would otherwise
        # sit in every process, the node agent's included (docs/internals.md, the agent's footprint).
        from powerplanner.planning.registry import policy_names

        observation = renamed("--observation", observation_path, "-o", observation_old)
        if observation is None:
            raise ObservationError("plan: no observation; give one with --observation FILE (docs/observation.md)")
        if policy is not None and policy not in policy_names():
            raise ConfigError(f"--policy {policy!r} is not a policy; use one of: {', '.join(policy_names())}")
        doc = load_observation(observation)
        if config_path is not None:
            config = load_config(config_path)
        else:
            if doc.budget_watts is None:
                raise ObservationError(
                    f"{observation}: budget_watts is missing; add it to the observation or pass --config"
                )
            config = config_from_mapping({"budget": {"watts": doc.budget_watts}}, "default config")
        obs = doc.to_value(config.budget.watts)
        profile = profile_from_config(config.profile)
        decision = build_planner(config, profile, policy).tick(obs)
        if as_json:
            typer.echo(json.dumps(decision_to_dict(decision), indent=2))
            return
        _print_rich(decision, profile.name)


def _print_rich(decision: Any, profile_name: str) -> None:
    from rich.console import Console
    from rich.table import Table

    from powerplanner.model.roles import ROLES

    console = Console(highlight=False)
    flags = [name for name in ("budget_limited", "infeasible") if getattr(decision, name)]
    console.print(
        f"[bold]policy[/] {decision.policy}   [bold]profile[/] {profile_name}   "
        f"[bold]budget[/] {decision.budget_watts:,.0f} W" + (f"   [bold red]{', '.join(flags)}[/]" if flags else "")
    )
    targets = Table(title="targets")
    for col in ("role", "replicas", "cap W", "predicted attainment"):
        targets.add_column(col, justify="right" if col != "role" else "left")
    for role in ROLES:
        t = decision.target(role)
        att = decision.predicted_attainment.get(role.value)
        targets.add_row(role.value, str(t.replicas), f"{t.cap_watts:.0f}", "-" if att is None else f"{att:.1%}")
    console.print(targets)
    console.print(
        f"projected provisioned {decision.projected_provisioned_watts:,.0f} W, "
        f"predicted draw {decision.predicted_draw_watts:,.0f} W"
    )
    if decision.forecast is not None:
        f = decision.forecast
        console.print(
            f"forecast: {f.request_rate_per_s:.2f} req/s, ISL {f.isl_tokens:.0f}, OSL {f.osl_tokens:.0f} tokens"
        )
    console.print("reasons: " + ", ".join(r.value for r in decision.reasons))
    for note in decision.notes:
        console.print(f"note: {note}")
    if not decision.steps:
        console.print("steps: none (already at the target)")
        return
    steps = Table(title="steps, in order")
    for col in ("#", "action", "role", "value", "provisioned after W", "waits for drain"):
        steps.add_column(col)
    for i, s in enumerate(decision.steps, 1):
        value = f"{s.value:.0f} W" if s.kind.value == "set_cap" else f"{s.value:.0f} replicas"
        steps.add_row(str(i), s.kind.value, s.role.value, value, f"{s.provisioned_after_watts:,.0f}",
                      "yes" if s.wait_for_drain else "")
    console.print(steps)
