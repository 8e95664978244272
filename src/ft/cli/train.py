"""`ft train`: the command body. Heavy libraries are imported inside it (ft.train.runner does)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from ft.train.callbacks import TrainEvent
    from ft.train.runner import TrainResult


def _format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressView:
    """Renders TrainEvents: a progress bar with loss, tokens/s and time left, and one line per eval/note."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self.loss: float | None = None
        self.tokens_per_s: float | None = None

    def __call__(self, event: TrainEvent) -> None:
        handler = getattr(self, f"_on_{event.kind}", None)
        if handler is not None:
            handler(event)

    def _status(self) -> str:
        loss = f"{self.loss:.4f}" if self.loss is not None else "-"
        speed = f"{self.tokens_per_s:,.0f}" if self.tokens_per_s is not None else "-"
        return f"loss {loss}  tok/s {speed}"

    def _on_note(self, event: TrainEvent) -> None:
        self.console.print(f"[dim]{escape(event.message)}[/]", highlight=False)

    def _on_interrupt(self, event: TrainEvent) -> None:
        self.console.print(f"[yellow]{escape(event.message)}[/]", highlight=False)

    def _on_start(self, event: TrainEvent) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TextColumn("eta {task.fields[eta]}"),
            console=self.console,
            transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task(
            "train", total=event.max_steps, completed=event.step, status=self._status(), eta="-"
        )

    def _on_step(self, event: TrainEvent) -> None:
        if self.progress is not None and self.task is not None:
            eta = _format_eta(event.values.get("eta_s"))
            self.progress.update(self.task, completed=event.step, status=self._status(), eta=eta)

    def _on_log(self, event: TrainEvent) -> None:
        if "loss" in event.values:
            self.loss = float(event.values["loss"])
        if event.values.get("tokens_per_s") is not None:
            self.tokens_per_s = float(event.values["tokens_per_s"])
        self._on_step(event)

    def _on_eval(self, event: TrainEvent) -> None:
        loss = event.values.get("eval_loss")
        if loss is not None:
            self.console.print(
                f"step {event.step}: eval loss {loss:.4f}{_forgetting(event)}", highlight=False
            )

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def _forgetting(event: TrainEvent) -> str:
    kl = event.values.get("eval_forgetting_kl")
    if kl is None:
        return ""
    unchanged = event.values.get("eval_forgetting_unchanged", 0.0)
    ppl = event.values.get("eval_general_perplexity", 0.0)
    return f"  forgetting KL {kl:.4f} nats/token, {unchanged:.0%} answers unchanged, general perplexity {ppl:.2f}"


def print_summary(console: Console, result: TrainResult) -> None:
    def num(value: Any, fmt: str) -> str:
        return format(value, fmt) if value is not None else "-"

    console.print(f"[bold green]done[/] run folder: {result.run_dir}", highlight=False)
    console.print(
        f"steps {result.global_step}  train loss {num(result.final_train_loss, '.4f')}  "
        f"eval loss {num(result.final_eval_loss, '.4f')}  "
        f"tokens/s {num(result.tokens_per_s, ',.0f')}  time {_format_eta(result.train_runtime_s)}",
        highlight=False,
    )
    for note in result.notes:
        if note.startswith(("matplotlib", "forgetting")):
            console.print(f"[dim]{escape(note)}[/]", highlight=False)


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def train_command(
    config: Path = typer.Argument(..., help="The run's YAML config."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint in output_dir."),
    force: bool = typer.Option(
        False,
        "--force",
        help="Replace an existing output_dir that ft train wrote (the old run is kept aside until the "
        "new one ends with a checkpoint); never a folder ft did not create.",
    ),
    overrides: list[str] = typer.Option(
        [], "--set", help="Override a config key: --set key=value (repeatable; dotted paths for nested keys)."
    ),
) -> None:
    """Train: load the model, attach the adapter, run SFT, write the run folder (Ctrl-C saves a checkpoint)."""
    from ft.base.quiet import quiet_libraries
    from ft.config.load import read_config
    from ft.train.runner import run_training

    console = Console(soft_wrap=True)
    main = _is_main_process()
    cfg, notes = read_config(config, overrides)
    if main:
        for note in notes:
            console.print(f"[dim]{escape(note)}[/]", highlight=False)
    quiet_libraries()
    view = ProgressView(console)
    probes = []
    if cfg.eval_forgetting:
        from ft.infer.forgetting import ForgettingProbe

        probes.append(ForgettingProbe())
    try:
        result = run_training(
            cfg,
            resume=resume,
            force=force,
            on_event=view if main else None,
            config_path=config,
            eval_probes=probes,
        )
    finally:
        view.stop()
    if main:
        print_summary(console, result)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command("train")(train_command)
