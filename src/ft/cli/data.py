"""`ft validate`, `ft format`, `ft preprocess`: everything before model weights load.

`ft validate` loads nothing heavy; `format` and `preprocess` load the tokenizer, never the weights.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape

from ft.cli.preview import SpanStyle, in_colour, token_cells

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
    explain: bool = typer.Option(
        False, "--explain", help="Show each key of the config and what ft does with it (axolotl's keys too)."
    ),
    overrides: list[str] = SET_OPTION,
) -> None:
    """Check a config: print every problem at once (exit 2), or a summary (exit 0)."""
    from ft.config.load import dump_config, read_config

    console = Console(soft_wrap=True)
    if explain:
        show_explanation(console, config)
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


def show_explanation(console: Console, config: Path) -> None:
    """A table of the config's keys: value, what kind of key it is to ft, what ft does with it."""
    from rich.table import Table

    from ft.config.explain import explain
    from ft.config.yaml_reader import read_yaml_mapping

    table = Table("key", "value", "ft", "what ft does", title=f"{config}: each key", title_justify="left")
    for line in explain(read_yaml_mapping(config)):
        table.add_row(escape(line.key), escape(line.value), line.kind, escape(line.what))
    console.print(table)


def _load(config: Path, overrides: list[str], console: Console) -> tuple[FtConfig, Any]:
    from ft.config.hub import prepare_hub_access
    from ft.config.load import read_config

    cfg, notes = read_config(config, overrides)
    # Before transformers and datasets are imported: they read the offline switch when imported.
    notes += prepare_hub_access(cfg, ("tokenizer", "data"))
    for note in notes:
        console.print(f"[dim]note: {escape(note)}[/]", highlight=False)
    from ft.models.tokenizer import load_tokenizer

    return cfg, load_tokenizer(cfg)


DEFAULT_COUNT = 3


def format_command(
    config: Path = CONFIG_ARG,
    count: int | None = typer.Option(
        None,
        "-n",
        "--count",
        min=1,
        help=f"How many examples to show (default {DEFAULT_COUNT}; with --stats none unless given).",
    ),
    tokens: bool = typer.Option(False, "--tokens", help="Also show token ids and which are trained."),
    stats: bool = typer.Option(False, "--stats", help="Statistics over the whole training set."),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="One JSON object per example: prompt, completion, text (+ input_ids, labels); "
        "for pairs: prompt, chosen, rejected (+ prompt_ids, chosen_ids, rejected_ids); "
        'with --stats a last line {"stats": ...}.',
    ),
    overrides: list[str] = SET_OPTION,
) -> None:
    """Show examples exactly as they will be trained: which spans are trained and which are masked
    (in colour on a terminal, marked with brackets when colour is off, piped or NO_COLOR is set).
    Preference pairs (rl): the prompt once, then the chosen and the rejected answer."""
    from ft.data.pipeline import preview_examples

    console = Console(soft_wrap=True, stderr=as_json)
    cfg, tokenizer = _load(config, overrides, console)
    shown = count if count is not None else (0 if stats else DEFAULT_COUNT)
    if cfg.rl:
        from ft.cli.pairs import format_pairs

        format_pairs(console, cfg, tokenizer, shown, tokens, stats, as_json)
        return
    examples, report = preview_examples(cfg, tokenizer, None if stats else shown)
    virtual = soft_prompt_length(cfg)
    if as_json:
        for example in examples[:shown]:
            record = example_json(example, tokens)
            if virtual:
                record["virtual_tokens"] = virtual
            typer.echo(json.dumps(record, ensure_ascii=False))
        if stats:
            typer.echo(json.dumps({"stats": {"scope": "whole training set", **report.to_json()}}))
        return
    style = SpanStyle(plain=not in_colour(console))
    if examples[:shown]:
        console.print(style.legend(tokens), highlight=False)
    for number, example in enumerate(examples[:shown], start=1):
        show_example(console, number, example, tokenizer, cfg.sequence_len, tokens, style, virtual)
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


def show_example(
    console: Console,
    number: int,
    example: Example,
    tokenizer: Any,
    limit: int,
    tokens: bool,
    style: SpanStyle,
    virtual: int = 0,
) -> None:
    from ft.data.tokens import IGNORE_INDEX

    trained = example.trained_tokens
    head = (
        f"[bold]example {number}[/] · {escape(example.key)} {escape(example.where)} · "
        f"{len(example.input_ids)} tokens, {trained} trained"
    )
    if virtual:
        head += f" · + {virtual} virtual tokens before them"
    if example.truncated:
        head += f" · [yellow]truncated to sequence_len {limit}[/]"
    console.rule(head, align="left")
    marker = [style.soft_prompt(virtual)] if virtual else []
    console.print("".join(marker) + style.spans(example.segments), highlight=False, markup=not style.plain)
    if tokens:
        scored = [label != IGNORE_INDEX for label in example.labels]
        cells = token_cells(tokenizer, example.input_ids, scored, style)
        console.print(" ".join([*marker, cells]), highlight=False, markup=not style.plain)


def show_report(console: Console, report: DataReport, cfg: DataSettings, whole_set: bool) -> None:
    from ft.cli.preview import show_bad_rows, show_too_long
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
    show_too_long(console, report, cfg, "row(s)")
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
    if report.no_trained_tokens:
        console.print(
            f"[yellow]{report.no_trained_tokens} row(s) with no token left to train on (dropped)[/]"
        )
    show_bad_rows(console, report, cfg, "row(s)")


def preprocess_command(config: Path = CONFIG_ARG, overrides: list[str] = SET_OPTION) -> None:
    """Tokenize, mask and pack once into dataset_prepared_path, keyed by a fingerprint of the inputs."""
    from ft.base.quiet import quiet_libraries
    from ft.data.pipeline import cache_dir
    from ft.data.prepare import prepare_run_data

    quiet_libraries()
    console = Console(soft_wrap=True)
    cfg, tokenizer = _load(config, overrides, console)
    if not cfg.dataset_prepared_path:
        cfg = cfg.model_copy(update={"dataset_prepared_path": DEFAULT_PREPARED_PATH})
        console.print(
            f"[dim]dataset_prepared_path not set: using {DEFAULT_PREPARED_PATH}[/]", highlight=False
        )
    began = time.monotonic()

    def note(line: str) -> None:  # each stage a line, with the time so far (plain in a log file)
        console.print(f"[dim]{time.monotonic() - began:6.1f} s  {escape(line)}[/]", highlight=False)

    prepared, summary = prepare_run_data(cfg, tokenizer, note=note)
    report = prepared.report
    where = cache_dir(cfg, prepared.fingerprint)
    status = "up to date (cached)" if report.from_cache else "written"
    console.print(f"[green]ok[/] {escape(str(where))}: {status}", highlight=False)
    for line in summary:
        console.print(escape(line), highlight=False)


DEFAULT_PREPARED_PATH = "last_run_prepared"


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command("validate")(validate_command)
    app.command("format")(format_command)
    app.command("preprocess")(preprocess_command)
