"""The `ft` command: the one error boundary of the package.

Command bodies live in the other `ft.cli` modules (one per command group, kept apart so that
the start-up path imports nothing heavy); this module builds the typer app and turns the
library's `FtError`s into one clear message and exit code 2. `FT_DEBUG=1` shows tracebacks.
"""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console
from rich.markup import escape

from ft import __version__
from ft.base.errors import FtError
from ft.cli.data import register as register_data_commands
from ft.cli.export import register as register_export_commands
from ft.cli.hub import register as register_hub_commands
from ft.cli.infer import register as register_infer_commands
from ft.cli.plan import register as register_plan_commands
from ft.cli.train import register as register_train_commands

app = typer.Typer(
    name="ft",
    help="Config-driven LoRA/QLoRA fine-tuning: validate, format, preprocess, train, merge, export, push, chat, eval.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"ft {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """ft: one YAML file describes a fine-tuning run; every mistake is caught before a GPU hour is spent."""


register_data_commands(app)
register_train_commands(app)
register_export_commands(app)
register_hub_commands(app)
register_infer_commands(app)
register_plan_commands(app)


def debug_enabled() -> bool:
    return os.environ.get("FT_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def report_error(err: FtError, console: Console) -> None:
    console.print(f"[bold red]error:[/] {escape(err.message)}", highlight=False, markup=True, soft_wrap=True)
    if err.hint:
        console.print(f"[bold]fix:[/] {escape(err.hint)}", highlight=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    stderr = Console(stderr=True)
    try:
        app(args=argv, standalone_mode=False)
    except FtError as err:
        if debug_enabled():
            raise
        report_error(err, stderr)
        sys.exit(err.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        stderr.print("aborted")
        sys.exit(130)
    except typer.Exit as err:
        sys.exit(err.exit_code)
    except typer.TyperException as err:  # usage errors: a bad option, a missing argument, no command
        show = getattr(err, "show", None)
        if callable(show):
            show()
        else:
            stderr.print(f"error: {escape(err.format_message())}", highlight=False)
        sys.exit(err.exit_code or 2)
