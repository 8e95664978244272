"""`ft merge`. Heavy libraries are imported inside the command body."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape


def merge_command(
    run_dir: Path = typer.Argument(..., help="The run folder of a finished LoRA/QLoRA ft train run."),
    out: Path | None = typer.Option(
        None, "--out", help="Where to write the merged model (default: RUN_DIR/merged)."
    ),
    dtype: str | None = typer.Option(
        None,
        "--dtype",
        help="bf16, fp16 or fp32 (default: the training compute dtype). Never a quantized dtype.",
    ),
    max_shard_size: str = typer.Option(
        "5GB", "--max-shard-size", help="Largest safetensors shard, e.g. 5GB."
    ),
    force: bool = typer.Option(
        False,
        "--force",
        help="Replace an existing --out folder that ft merge wrote (swapped in by renames once the new "
        "model is complete); never a folder ft did not create.",
    ),
    streaming: bool | None = typer.Option(
        None,
        "--streaming/--in-memory",
        help="Merge tensor by tensor from the base's shards (bounded memory), or in memory with peft "
        "(default: by the model's size against the available memory).",
    ),
    verify: bool = typer.Option(
        True, "--verify/--no-verify", help="Compare merged and base+adapter logits on a probe batch."
    ),
) -> None:
    """Fold the adapter into the unquantized base: sharded safetensors, tokenizer, generation config."""
    from ft.runs.folder import run_hub_access

    console = Console(soft_wrap=True)

    def log(message: str) -> None:
        console.print(f"[dim]{escape(message)}[/]", highlight=False)

    for note in run_hub_access(run_dir):  # before the Hugging Face libraries read the offline switch
        log(note)
    from ft.base.quiet import quiet_libraries

    quiet_libraries()  # before ft.train.callbacks and ft.export.merge import bitsandbytes, which logs on import
    from ft.base.signals import raise_on_signals
    from ft.export.merge import merge_run

    with raise_on_signals(merge_stopped):  # SIGTERM too: the temporary folder is removed on the way out
        result = merge_run(
            run_dir,
            out,
            dtype=dtype,
            max_shard_size=max_shard_size,
            force=force,
            streaming=streaming,
            verify=verify,
            log=log,
        )
    console.print(f"[bold green]done[/] merged model: {result.out_dir}", highlight=False)
    diff = "-" if result.max_abs_logit_diff is None else f"{result.max_abs_logit_diff:.3g}"
    console.print(
        f"dtype {result.dtype}  {result.mode}  {result.weight_files} weight file(s)  "
        f"max |Δlogit| {diff}  time {result.seconds:.1f}s",
        highlight=False,
    )


def merge_stopped(signal_name: str) -> Exception:
    from ft.base.errors import TrainingInterrupted

    return TrainingInterrupted(
        f"ft merge stopped by {signal_name}: nothing new was written to --out",
        hint="run the same command again",
    )


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command("merge")(merge_command)
