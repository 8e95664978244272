"""`ft chat`, `ft generate`, `ft eval`. Heavy libraries are imported inside the command bodies."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
