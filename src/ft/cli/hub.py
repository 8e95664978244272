"""`ft push`. The Hub client is imported inside the command body."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape


def push_command(
    source: Path = typer.Argument(
        ..., help="A run folder, a merged model folder, or a .gguf file ft export wrote."
    ),
    repo_id: str = typer.Argument(
        ...,
        help="The Hub repo, org/name, or a name alone for the token's own namespace (created when missing).",
    ),
    private: bool = typer.Option(False, "--private", help="Create the repo as private."),
    revision: str | None = typer.Option(None, "--revision", help="The branch to push to (default: main)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be uploaded and upload nothing."),
) -> None:
    """Upload to the Hugging Face Hub with a generated model card; the token comes from HF_TOKEN only."""
    from ft.runs.card import card_for_push
    from ft.runs.hub import files_to_push, hub_token, push

    console = Console(soft_wrap=True, highlight=False)
    if dry_run:
        for local, name in files_to_push(source):
            console.print(f"{escape(name)}  ({local.stat().st_size:,} bytes)")
        console.print("README.md  (generated model card)")
        return
    hub_token()  # before the card is built: no token, no work
    result = push(
        source, repo_id, lambda repo: card_for_push(source, repo), private=private, revision=revision
    )
    console.print(f"[bold green]done[/] {len(result.files)} files pushed to {escape(result.repo_id)}")
    if result.url:
        console.print(f"commit: {escape(result.url)}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command("push")(push_command)
