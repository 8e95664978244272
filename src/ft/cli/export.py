"""`ft merge` and `ft export`. Heavy libraries are imported inside the command bodies."""

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


def export_command(
    source: Path = typer.Argument(..., help="A run folder (merged first) or a merged model folder."),
    gguf: str = typer.Option(
        ...,
        "--gguf",
        help="f32, f16, bf16, q8_0, q5_1, q5_0, q4_1, q4_0; K-quants (q4_k_m, q5_k_m, q6_k, ...) "
        "when llama-cpp-python is installed.",
    ),
    out: Path | None = typer.Option(
        None, "--out", help="The GGUF file (default: SOURCE-TYPE.gguf beside SOURCE)."
    ),
    force: bool = typer.Option(
        False, "--force", help="Replace an existing file (and its Modelfile and record)."
    ),
    adapter_only: bool = typer.Option(
        False, "--adapter-only", help="Only the LoRA adapter, for llama.cpp's --lora on a GGUF of the base."
    ),
    verify: bool = typer.Option(
        True,
        "--verify/--no-verify",
        help="Read the file back and compare its logits with the merged model's.",
    ),
) -> None:
    """A GGUF file for llama.cpp, Ollama and LM Studio, with an Ollama Modelfile, verified."""
    import logging
    import os

    from ft.cli.progress import StageProgress
    from ft.runs.folder import run_hub_access

    console = Console(soft_wrap=True)

    def log(message: str) -> None:
        console.print(f"[dim]{escape(message)}[/]", highlight=False)

    for note in run_hub_access(source):  # a run is merged first: its base, before the libraries load
        log(note)
    # transformers' GGUF loader (the verification) draws its own tqdm bar; tqdm reads this on import.
    os.environ.setdefault("TQDM_DISABLE", "1")
    from ft.base.quiet import quiet_libraries

    quiet_libraries()
    logging.getLogger("gguf").setLevel(logging.ERROR)  # the writer's notes; ft reports what it wrote
    from ft.base.signals import raise_on_signals
    from ft.export.gguf_export import export_gguf

    with raise_on_signals(export_stopped), StageProgress(console) as progress:
        result = export_gguf(
            source,
            gguf,
            out,
            force=force,
            adapter_only=adapter_only,
            verify=verify,
            log=log,
            on_tensor=lambda done, total: progress("tensors", done, total),
        )
    console.print(
        f"[bold green]done[/] {result.out}  ({result.bytes / 2**20:,.1f} MiB, {result.tensors} tensors)",
        highlight=False,
    )
    if result.modelfile is not None:
        console.print(f"Ollama: ollama create NAME -f {result.modelfile}", highlight=False)
    if result.modelfile_note:
        console.print(
            f"note: the Modelfile has no TEMPLATE: {escape(result.modelfile_note)}", highlight=False
        )
    checks = result.verification
    if "max_abs_logit_diff" in checks:
        tolerance = "-" if checks["tolerance"] is None else f"{checks['tolerance']:.3g}"
        console.print(
            f"type {result.type_name}  max |Δlogit| {checks['max_abs_logit_diff']:.3g} (tolerance {tolerance})  "
            f"top-1 agreement {checks['top1_agreement']:.1%}  time {result.seconds:.1f}s",
            highlight=False,
        )
    elif not checks:
        console.print("verification skipped (--no-verify)", highlight=False)
    console.print(f"record: {result.record}", highlight=False)


def export_stopped(signal_name: str) -> Exception:
    from ft.base.errors import TrainingInterrupted

    return TrainingInterrupted(
        f"ft export stopped by {signal_name}: nothing was written to --out", hint="run the same command again"
    )


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command("merge")(merge_command)
    app.command("export")(export_command)
