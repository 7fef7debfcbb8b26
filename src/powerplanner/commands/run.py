"""`powerplanner run`: not built yet (see the open issues)."""

from __future__ import annotations

import typer

from powerplanner.errors import UserError


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run() -> None:
        """Not available yet."""
        raise UserError("`powerplanner run` is not implemented yet in this version")
