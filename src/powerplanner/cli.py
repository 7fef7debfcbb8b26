"""The one command-line app. Each sub-command lives in ``powerplanner.commands.<name>`` and is
imported here; user errors (:class:`~powerplanner.errors.UserError`) become one line per problem and
a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import sys

import typer
from rich.console import Console
from rich.markup import escape

from powerplanner import __version__
from powerplanner.commands import agent, plan, profile, run, simulate, verify
from powerplanner.errors import UserError
from powerplanner.extras import missing_extra


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"powerplanner {__version__}")
        raise typer.Exit(0)


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="powerplanner",
        help="Power-aware autoscaler for disaggregated LLM inference: replicas and per-GPU power caps "
        "under a power budget.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    )

    @app.callback()
    def _root(
        version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                     help="Print the version and exit."),
    ) -> None:
        """Power-aware autoscaler for disaggregated LLM inference: replicas and per-GPU power caps under a power
        budget."""

    for module in (simulate, plan, run, agent, profile, verify):
        module.register(app)
    return app


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``powerplanner`` script."""
    app = build_app()
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    as_json = "--json" in (sys.argv[1:] if argv is None else argv)  # a machine reads stdout: errors in JSON too
    try:
        try:
            rc = app(args=argv, standalone_mode=False, prog_name="powerplanner")
        except ModuleNotFoundError as exc:  # an extra this install left out (docs/install.md, "Images")
            missing = missing_extra(exc)
            if missing is None:
                raise
            raise missing from None
        if isinstance(rc, int):
            return rc
    except UserError as exc:
        for line in exc.lines:
            err.print(f"[bold red]error:[/] {escape(line)}", markup=True)  # a line may hold [brackets]
        if as_json and not exc.reported_as_json:
            _print_json_error(list(exc.lines), exc.exit_code)
        return exc.exit_code
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        err.print("aborted")
        return 130
    except KeyboardInterrupt:
        return 130
    except typer.TyperException as exc:  # usage errors (unknown option, missing argument, bad value)
        show = getattr(exc, "show", None)  # usage errors know how to print themselves with a hint
        if callable(show):
            show()
        else:
            err.print(f"error: {exc.format_message()}", markup=False)
        if as_json:
            _print_json_error([exc.format_message()], int(exc.exit_code))
        return int(exc.exit_code)
    return 0


def _print_json_error(lines: list[str], exit_code: int) -> None:
    """On ``--json``, stdout holds one JSON object whatever happened (README, "Command line")."""
    print(json.dumps({"ok": False, "exit_code": exit_code, "errors": lines}))


if __name__ == "__main__":
    sys.exit(main())
