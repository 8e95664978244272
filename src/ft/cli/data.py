"""`ft validate`, `ft format`, `ft preprocess`: everything before model weights load.

`ft validate` loads nothing heavy; `format` and `preprocess` load the tokenizer, never the weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from ft.config.schema import AdapterSettings, DataSettings, FtConfig
    from ft.data.pipeline import DataReport, Example

CONFIG_ARG = typer.Argument(..., help="The run's YAML config.")
SET_OPTION = typer.Option(
    [], "--set", help="Override a config key: --set key=value (repeatable; datasets[0].path=x.jsonl)."
)


def validate_command(
    config: Path = CONFIG_ARG,
    print_config: bool = typer.Option(
        False, "--print", help="Show the resolved config, defaults filled in, secrets redacted."
    ),
    overrides: list[str] = SET_OPTION,
) -> None:
    """Check a config: print every problem at once (exit 2), or a summary (exit 0)."""
    from ft.config.load import dump_config, read_config

    console = Console(soft_wrap=True)
    cfg, notes = read_config(config, overrides)
    for note in notes:
        console.print(f"[dim]note: {escape(note)}[/]", highlight=False)
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


def _load(config: Path, overrides: list[str], console: Console) -> tuple[FtConfig, Any]:
    from ft.config.load import read_config
    from ft.models.tokenizer import load_tokenizer

    cfg, notes = read_config(config, overrides)
    for note in notes:
        console.print(f"[dim]note: {escape(note)}[/]", highlight=False)
    return cfg, load_tokenizer(cfg)


def format_command(
    config: Path = CONFIG_ARG,
    count: int = typer.Option(3, "-n", "--count", min=1, help="How many examples to show."),
    tokens: bool = typer.Option(False, "--tokens", help="Also show token ids and labels."),
    stats: bool = typer.Option(False, "--stats", help="Statistics over the whole training set."),
    as_json: bool = typer.Option(
        False, "--json", help="One JSON object per example: prompt, completion, text (+ input_ids, labels)."
    ),
    overrides: list[str] = SET_OPTION,
) -> None:
    """Show examples exactly as they will be trained: trained spans green, masked spans dim."""
    from ft.data.pipeline import preview_examples

    console = Console(soft_wrap=True, stderr=as_json)
    cfg, tokenizer = _load(config, overrides, console)
    examples, report = preview_examples(cfg, tokenizer, None if stats else count)
    virtual = soft_prompt_length(cfg)
    if as_json:
        for example in examples[:count]:
            record = example_json(example, tokens)
            if virtual:
                record["virtual_tokens"] = virtual
            typer.echo(json.dumps(record, ensure_ascii=False))
        return
    if not stats:
        for number, example in enumerate(examples, start=1):
            show_example(console, number, example, tokenizer, cfg.sequence_len, tokens, virtual)
    show_report(console, report, cfg, whole_set=stats)
    if virtual:
        console.print(
            f"soft prompt: {virtual} trained virtual tokens (embedding vectors, not text) go before each row's "
            f"first token; the model sees up to sequence_len + {virtual} = {cfg.sequence_len + virtual} positions",
            highlight=False,
        )


def soft_prompt_length(cfg: AdapterSettings) -> int:
    """The virtual tokens peft puts before every sequence (0 without a soft prompt)."""
    from ft.config.schema import SOFT_PROMPT_ADAPTERS

    return cfg.num_virtual_tokens if cfg.adapter in SOFT_PROMPT_ADAPTERS else 0


def soft_prompt_marker(virtual: int) -> str:
    """Where the soft prompt goes, shown in words (not only by colour) before the row's text."""
    return f"[bold magenta]⟨soft prompt: {virtual} virtual tokens, trained⟩[/]"


def example_json(example: Example, with_tokens: bool) -> dict[str, Any]:
    from ft.data.pipeline import prompt_and_completion

    prompt, completion = prompt_and_completion(example.segments)
    record: dict[str, Any] = {"prompt": prompt, "completion": completion, "text": prompt + completion}
    if example.truncated:
        record["truncated"] = True
    if with_tokens:
        record["input_ids"] = example.input_ids
        record["labels"] = example.labels
    return record


def visible(text: str) -> str:
    """Whitespace made visible: newlines as ↵ (then the line break), tabs as →."""
    return text.replace("\t", "→").replace("\n", "↵\n")


def show_example(
    console: Console,
    number: int,
    example: Example,
    tokenizer: Any,
    limit: int,
    tokens: bool,
    virtual: int = 0,
) -> None:
    trained = example.trained_tokens
    head = (
        f"[bold]example {number}[/] · {example.key} {example.where} · "
        f"{len(example.input_ids)} tokens, {trained} trained"
    )
    if virtual:
        head += f" · + {virtual} virtual tokens before them"
    if example.truncated:
        head += f" · [yellow]truncated to sequence_len {limit}[/]"
    console.rule(head, align="left")
    parts = [soft_prompt_marker(virtual)] if virtual else []
    for segment in example.segments:
        # A space that opens a segment is the prompt/answer boundary's: show it.
        shown = "·" + segment.text[1:] if segment.text.startswith(" ") else segment.text
        text = escape(visible(shown))
        if segment.special:
            style = "bold magenta" if segment.trained else "magenta"
        else:
            style = "green" if segment.trained else "dim"
        parts.append(f"[{style}]{text}[/]")
    console.print("".join(parts), highlight=False)
    if tokens:
        from ft.data.tokens import IGNORE_INDEX

        pieces = tokenizer.convert_ids_to_tokens(example.input_ids)
        cells = [
            f"[{'green' if label != IGNORE_INDEX else 'dim'}]{token_id}:{escape(repr(piece)[1:-1])}[/]"
            for token_id, piece, label in zip(example.input_ids, pieces, example.labels, strict=True)
        ]
        marker = [soft_prompt_marker(virtual)] if virtual else []
        console.print(" ".join(marker + cells), highlight=False)


def show_report(console: Console, report: DataReport, cfg: DataSettings, whole_set: bool) -> None:
    from ft.data.pipeline import is_weighted, mix_lines

    train = report.train
    scope = "whole training set" if whole_set else "shown rows"
    console.rule(f"[bold]{scope}[/]", align="left")
    share = 100 * train.trained_tokens / train.tokens if train.tokens else 0.0
    console.print(
        f"rows {train.rows} of {report.rows_read} read · tokens {train.tokens:,} · trained {train.trained_tokens:,} "
        f"({share:.1f}%)",
        highlight=False,
    )
    if train.lengths:
        pct = " ".join(f"{k} {v}" for k, v in train.percentiles().items())
        console.print(f"tokens per row: {pct} (sequence_len {cfg.sequence_len})", highlight=False)
    if report.too_long:
        action = {"drop": "dropped", "truncate": "truncated", "error": "an error in training"}[
            cfg.excess_length_strategy
        ]
        console.print(
            f"[yellow]{report.too_long} row(s) over sequence_len {cfg.sequence_len}: {action}[/]",
            highlight=False,
        )
    if train.packing_efficiency is not None:
        console.print(
            f"packing: {train.rows} rows in {train.sequences} sequences, efficiency {train.packing_efficiency:.3f}",
            highlight=False,
        )
    if len(report.mix) > 1 or is_weighted(report.mix):
        split = " (before the eval split: ft train takes it first)" if cfg.val_set_size else ""
        console.print(f"training mix by dataset weight{split}:", highlight=False)
        for line in mix_lines(report.mix):
            console.print(f"  {escape(line)}", highlight=False)
    bad = report.bad_rows
    if report.no_trained_tokens:
        console.print(
            f"[yellow]{report.no_trained_tokens} row(s) with no token left to train on (dropped)[/]"
        )
    if bad:
        verdict = "skipped (skip_invalid_rows)" if cfg.skip_invalid_rows else "training would stop on them"
        console.print(f"[red]{len(bad)} bad row(s): {verdict}[/]", highlight=False)
        for row in bad[:10]:
            console.print(f"  {escape(str(row))}", highlight=False)


def preprocess_command(config: Path = CONFIG_ARG, overrides: list[str] = SET_OPTION) -> None:
    """Tokenize, mask and pack once into dataset_prepared_path, keyed by a fingerprint of the inputs."""
    from ft.base.quiet import quiet_libraries
    from ft.data.pipeline import cache_dir, prepare_data, summary_lines

    quiet_libraries()
    console = Console(soft_wrap=True)
    cfg, tokenizer = _load(config, overrides, console)
    if not cfg.dataset_prepared_path:
        cfg = cfg.model_copy(update={"dataset_prepared_path": DEFAULT_PREPARED_PATH})
        console.print(
            f"[dim]dataset_prepared_path not set: using {DEFAULT_PREPARED_PATH}[/]", highlight=False
        )
    prepared = prepare_data(cfg, tokenizer)
    report = prepared.report
    where = cache_dir(cfg, prepared.fingerprint)
    status = "up to date (cached)" if report.from_cache else "written"
    console.print(f"[green]ok[/] {escape(str(where))}: {status}", highlight=False)
    for line in summary_lines(report):
        console.print(escape(line), highlight=False)


DEFAULT_PREPARED_PATH = "last_run_prepared"


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command("validate")(validate_command)
    app.command("format")(format_command)
    app.command("preprocess")(preprocess_command)
