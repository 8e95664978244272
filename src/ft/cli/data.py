"""`ft validate`, `ft format`, `ft preprocess`: everything before model weights load.

`ft validate` loads nothing heavy; `format` and `preprocess` load the tokenizer, never the weights.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from ft.config.schema import AdapterSettings, DataSettings, FtConfig
    from ft.data.pipeline import DataReport, Example
    from ft.data.prompts import Segment

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
        'with --stats a last line {"stats": ...}.',
    ),
    overrides: list[str] = SET_OPTION,
) -> None:
    """Show examples exactly as they will be trained: which spans are trained and which are masked
    (in colour on a terminal, marked with brackets when colour is off, piped or NO_COLOR is set)."""
    from ft.data.pipeline import preview_examples

    console = Console(soft_wrap=True, stderr=as_json)
    cfg, tokenizer = _load(config, overrides, console)
    shown = count if count is not None else (0 if stats else DEFAULT_COUNT)
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


def in_colour(console: Console) -> bool:
    """Colour reaches the reader: a terminal with colours, NO_COLOR unset (rich reads both)."""
    return console.color_system is not None and not console.no_color


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


VISIBLE = {"\t": "→", "\n": "↵\n"}
SPACE = "·"


def visible_segments(texts: list[str]) -> list[str]:
    """The segments' texts with whitespace made visible: newlines as ↵ (then the line break), tabs
    as →, and as · every space that would otherwise be lost on screen: at the start or end of a
    line, of the text or of a segment (the prompt/answer boundary), and in runs of two or more."""
    whole = "".join(texts)
    edges: set[int] = set()
    position = 0
    for text in texts:
        edges.update((position, position + len(text) - 1))
        position += len(text)
    shown = [VISIBLE.get(char, char) for char in whole]
    for index, char in enumerate(whole):
        if char != " ":
            continue
        before = whole[index - 1] if index else "\n"
        after = whole[index + 1] if index + 1 < len(whole) else "\n"
        if index in edges or "\n" in (before, after) or " " in (before, after):
            shown[index] = SPACE
    pieces, position = [], 0
    for text in texts:
        pieces.append("".join(shown[position : position + len(text)]))
        position += len(text)
    return pieces


@dataclass(frozen=True)
class SpanStyle:
    """How trained and masked text is told apart: colours, or (colour off) brackets around what
    is trained, so the meaning never rests on colour alone."""

    plain: bool
    OPEN = "⟦"
    CLOSE = "⟧"

    def legend(self, tokens: bool) -> str:
        whitespace = "↵ newline, → tab, · a space that would not show"
        if self.plain:
            cells = f"; tokens as id:piece, {self.OPEN}trained{self.CLOSE}" if tokens else ""
            return (
                f"legend: {self.OPEN}trained{self.CLOSE}, masked (not trained) unmarked; {whitespace}{cells}"
            )
        return (
            "legend: [green]trained[/], [dim]masked (not trained)[/], [magenta]special token[/]; "
            f"{escape(whitespace)}"
        )

    def spans(self, segments: list[Segment]) -> str:
        parts = []
        inside = False
        for segment, text in zip(segments, visible_segments([s.text for s in segments]), strict=True):
            if self.plain:
                if segment.trained != inside:
                    parts.append(self.OPEN if segment.trained else self.CLOSE)
                    inside = segment.trained
                parts.append(text)
                continue
            if segment.special:
                color = "bold magenta" if segment.trained else "magenta"
            else:
                color = "green" if segment.trained else "dim"
            parts.append(f"[{color}]{escape(text)}[/]")
        if inside:
            parts.append(self.CLOSE)
        return "".join(parts)

    def soft_prompt(self, virtual: int) -> str:
        """Where the soft prompt goes, shown in words (not only by colour) before the row's text."""
        marker = f"⟨soft prompt: {virtual} virtual tokens, trained⟩"
        return marker if self.plain else f"[bold magenta]{marker}[/]"

    def token(self, token_id: int, piece: str, trained: bool) -> str:
        cell = f"{token_id}:{repr(piece)[1:-1]}"
        if self.plain:
            return f"{self.OPEN}{cell}{self.CLOSE}" if trained else cell
        return f"[{'green' if trained else 'dim'}]{escape(cell)}[/]"


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
        from ft.data.tokens import IGNORE_INDEX

        pieces = tokenizer.convert_ids_to_tokens(example.input_ids)
        cells = [
            style.token(token_id, piece, label != IGNORE_INDEX)
            for token_id, piece, label in zip(example.input_ids, pieces, example.labels, strict=True)
        ]
        console.print(" ".join(marker + cells), highlight=False, markup=not style.plain)


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
    began = time.monotonic()

    def note(line: str) -> None:  # each stage a line, with the time so far (plain in a log file)
        console.print(f"[dim]{time.monotonic() - began:6.1f} s  {escape(line)}[/]", highlight=False)

    prepared = prepare_data(cfg, tokenizer, note=note)
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
