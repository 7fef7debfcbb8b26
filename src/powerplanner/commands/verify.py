"""`powerplanner verify`: check an installation end to end; exit 0 only when every check passes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from powerplanner.commands.options import CONFIG_ENV, renamed
from powerplanner.errors import UserError


class VerificationFailed(UserError):
    """Some check did not pass. Exit code 1 (a user error in the config itself exits 2)."""

    exit_code = 1


def register(app: typer.Typer) -> None:
    @app.command("verify")
    def verify(
        namespace: Annotated[str | None, typer.Option(
            "--namespace", "-n", help="Namespace of the DynamoGraphDeployment (default: kubernetes.namespace of "
            "--config).")] = None,
        dgd: Annotated[str | None, typer.Option("--dgd", help="Name of the DynamoGraphDeployment "
                                                "(default: kubernetes.dgd_name of --config, else 'llm').")] = None,
        config: Annotated[Path | None, typer.Option(
            "--config", "-c", envvar=CONFIG_ENV, help="The planner's config file: budget, Prometheus, labels and "
            "service names come from it.")] = None,
        prometheus: Annotated[str | None, typer.Option("--prometheus", help="Prometheus URL (default: "
                                                       "prometheus.url of --config).")] = None,
        json_output: Annotated[bool, typer.Option("--json", help="One JSON object on stdout, for machines.")] = False,
        kubeconfig: Annotated[str | None, typer.Option("--kubeconfig", help="kubeconfig file (default: in-cluster, "
                                                       "then KUBECONFIG / ~/.kube/config).")] = None,
        context: Annotated[str | None, typer.Option("--context", help="kubeconfig context to use.")] = None,
        as_user: Annotated[str | None, typer.Option("--as", help="Impersonate this user for every check, e.g. "
                                                    "system:serviceaccount:NS:pp-powerplanner-planner.")] = None,
        budget_watts: Annotated[float | None, typer.Option("--budget-watts", help="Budget in watts (overrides "
                                                           "--config).")] = None,
        budget_old: Annotated[float | None, typer.Option("--budget", hidden=True)] = None,
        max_age_s: Annotated[float, typer.Option("--max-age", help="Planner metrics older than this many seconds "
                                                 "are stale.")] = 120.0,
        planner_selector: Annotated[str, typer.Option("--planner-selector", help="Labels of the planner pods.")] = (
            "app.kubernetes.io/name=powerplanner,app.kubernetes.io/component=planner"),
        agent_selector: Annotated[str, typer.Option("--agent-selector", help="Labels of the agent pods.")] = (
            "app.kubernetes.io/name=powerplanner,app.kubernetes.io/component=agent"),
    ) -> None:
        """Check an installation: API and RBAC, the DGD, Prometheus and frontend metrics, the planner, the
        agents, annotations, applied limits and the budget. Each check passes or says what to fix."""
        import json

        from powerplanner.verify.setup import build_verifier

        budget = renamed("--budget-watts", budget_watts, "--budget", budget_old)
        verifier = build_verifier(
            namespace=namespace, dgd=dgd, config_path=config, prometheus_url=prometheus, kubeconfig=kubeconfig,
            context=context, as_user=as_user, budget_watts=budget, max_age_s=max_age_s,
            planner_selector=planner_selector, agent_selector=agent_selector,
        )
        report = verifier.run()
        if json_output:
            typer.echo(json.dumps(report.to_dict(), indent=2))
        else:
            typer.echo(report.render_text())
        if not report.ok:
            failing = [c.name for c in report.checks if not c.passed]
            failed = VerificationFailed(f"verify: {len(failing)} of {len(report.checks)} checks did not pass "
                                        f"({', '.join(failing)}); follow each fix above and run verify again")
            failed.reported_as_json = json_output  # the report above is the JSON: no second object
            raise failed
