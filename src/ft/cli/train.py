"""`ft train`: the command body. Heavy libraries are imported inside it (ft.train.runner does)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape

from ft.cli.progress import clock_text, on_terminal

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from ft.train.callbacks import TrainEvent
    from ft.train.runner import TrainResult


class ProgressView:
    """Renders TrainEvents. In a terminal: a bar with loss, tokens/s and time left. Off a terminal
    (nohup, Slurm, `> log`): one plain line per logged step (step/total, loss, learning rate,
    tokens/s, eta). Evaluations and notes are lines in both."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live = on_terminal(console)
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self.loss: float | None = None
        self.margin: float | None = None
        self.tokens_per_s: float | None = None

    def __call__(self, event: TrainEvent) -> None:
        handler = getattr(self, f"_on_{event.kind}", None)
        if handler is not None:
            handler(event)

    def _status(self) -> str:
        loss = f"{self.loss:.4f}" if self.loss is not None else "-"
        margin = f"  margin {self.margin:.3f}" if self.margin is not None else ""
        return f"loss {loss}{margin}  tok/s {_speed(self.tokens_per_s)}"

    def _line(self, text: str) -> None:
        self.console.print(text, highlight=False, markup=False)

    def _on_note(self, event: TrainEvent) -> None:
        self.console.print(f"[dim]{escape(event.message)}[/]", highlight=False)

    def _on_interrupt(self, event: TrainEvent) -> None:
        self.console.print(f"[yellow]{escape(event.message)}[/]", highlight=False)

    def _on_start(self, event: TrainEvent) -> None:
        if not self.live:
            self._line(f"training: step {event.step} of {event.max_steps}")
            return
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
            eta = clock_text(event.values.get("eta_s"))
            self.progress.update(self.task, completed=event.step, status=self._status(), eta=eta)

    def _on_log(self, event: TrainEvent) -> None:
        if "loss" in event.values:
            self.loss = float(event.values["loss"])
        if "rewards/margins" in event.values:
            self.margin = float(event.values["rewards/margins"])
        if event.values.get("tokens_per_s") is not None:
            self.tokens_per_s = float(event.values["tokens_per_s"])
        if self.live:
            self._on_step(event)
        elif "loss" in event.values:
            self._line(plain_step_line(event))

    def _on_eval(self, event: TrainEvent) -> None:
        loss = event.values.get("eval_loss")
        if loss is not None:
            margin = event.values.get("eval_rewards/margins")
            pairs = f", reward margin {margin:.4f}" if margin is not None else ""
            self.console.print(
                f"step {event.step}/{event.max_steps}: eval loss {loss:.4f}{pairs}{_forgetting(event)}",
                highlight=False,
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


def _speed(tokens_per_s: float | None) -> str:
    return f"{tokens_per_s:,.0f}" if tokens_per_s is not None else "-"


def plain_step_line(event: TrainEvent) -> str:
    """`step 10/50  loss 1.2345  lr 2.00e-04  tok/s 145  eta 2:30`: one logged step, off a terminal
    (preference runs: `margin 0.123` after the loss)."""
    values = event.values
    loss = values.get("loss")
    rate = values.get("learning_rate")
    margin = values.get("rewards/margins")
    return (
        f"step {event.step}/{event.max_steps}  loss {'-' if loss is None else format(loss, '.4f')}  "
        + ("" if margin is None else f"margin {margin:.3f}  ")
        + f"lr {'-' if rate is None else format(rate, '.2e')}  tok/s {_speed(values.get('tokens_per_s'))}  "
        f"eta {clock_text(values.get('eta_s'))}"
    )


def print_summary(console: Console, result: TrainResult) -> None:
    def num(value: Any, fmt: str) -> str:
        return format(value, fmt) if value is not None else "-"

    console.print(f"[bold green]done[/] run folder: {escape(str(result.run_dir))}", highlight=False)
    console.print(
        f"steps {result.global_step}  train loss {num(result.final_train_loss, '.4f')}  "
        f"eval loss {num(result.final_eval_loss, '.4f')}  "
        f"tokens/s {_speed(result.tokens_per_s)}  time {clock_text(result.train_runtime_s)}",
        highlight=False,
    )
    if result.preference is not None:
        console.print(preference_line(result.preference), highlight=False)
    for note in result.notes:
        if note.startswith(("matplotlib", "forgetting")):
            console.print(f"[dim]{escape(note)}[/]", highlight=False)


def preference_line(record: dict[str, Any]) -> str:
    """`dpo (reference: ...): reward margin 0.78, accuracy 1.00 (train); 0.75, 1.00 (eval)`."""
    parts = []
    for split in ("train", "eval"):
        rewards = record.get(f"final_{split}")
        if rewards and "margins" in rewards:
            accuracy = rewards.get("accuracies")
            shown = f", accuracy {accuracy:.2f}" if accuracy is not None else ""
            parts.append(f"reward margin {rewards['margins']:.4f}{shown} ({split})")
    return f"{record['method']} (reference: {record['reference']}): " + (
        "; ".join(parts) or "no rewards logged"
    )


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def train_command(
    config: Path = typer.Argument(..., help="The run's YAML config."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint in output_dir."),
    allow_changes: bool = typer.Option(
        False,
        "--allow-changes",
        help="With --resume: continue although the config (or the data) differs from what the run "
        "was started with; the changes are recorded in run.json.",
    ),
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
    from ft.config.hub import TRAIN_NEEDS, prepare_hub_access
    from ft.config.load import read_config

    console = Console(soft_wrap=True)
    main = _is_main_process()
    cfg, notes = read_config(config, overrides)
    if cfg.hub_model_id:
        from ft.runs.hub import hub_token

        hub_token()  # no token: stop before the Hub is probed, let alone before training
    # Before the training stack is imported: the Hugging Face libraries read the offline switch then.
    notes += prepare_hub_access(cfg, TRAIN_NEEDS)
    from ft.base.quiet import quiet_libraries
    from ft.runs.record import Launch
    from ft.train.runner import run_training

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
            allow_changes=allow_changes,
            on_event=view if main else None,
            launch=Launch(config, tuple(overrides)),
            eval_probes=probes,
        )
    finally:
        view.stop()
    if main:
        print_summary(console, result)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command("train")(train_command)
