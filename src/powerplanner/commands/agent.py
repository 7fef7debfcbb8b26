"""`powerplanner agent`: not built yet (see the open issues)."""

from __future__ import annotations

import typer

from powerplanner.errors import UserError


def register(app: typer.Typer) -> None:
    @app.command("agent")
    def agent() -> None:
        """Not available yet."""
        raise UserError("`powerplanner agent` is not implemented yet in this version")
