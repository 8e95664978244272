"""`ft validate`. Loads nothing heavy: the config is checked offline, before any model loads."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console


def validate_command(
    config: Path = typer.Argument(..., help="The run's YAML config."),
    print_config: bool = typer.Option(
        False, "--print", help="Show the resolved config, defaults filled in, secrets redacted."
    ),
    overrides: list[str] = typer.Option(
        [], "--set", help="Override a config key: --set key=value (repeatable; datasets[0].path=x.jsonl)."
    ),
) -> None:
    """Check a config: print every problem at once (exit 2), or a summary (exit 0)."""
    from ft.config import dump_config, read_config

    console = Console(soft_wrap=True)
    cfg, notes = read_config(config, overrides)
    for note in notes:
        console.print(f"[dim]note: {note}[/]", highlight=False)
    if print_config:
        console.print(dump_config(cfg), highlight=False, markup=False)
        return
    adapter = cfg.adapter or "full fine-tune"
    bits = "4-bit" if cfg.load_in_4bit else "8-bit" if cfg.load_in_8bit else "16/32-bit"
    console.print(
        f"[green]ok[/] {config}: {cfg.base_model} ({bits}, {adapter}), "
        f"{len(cfg.datasets)} dataset(s), sequence_len {cfg.sequence_len}",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command("validate")(validate_command)
