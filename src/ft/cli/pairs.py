"""`ft format` for preference pairs (`rl` set): the prompt once, then the chosen and the rejected
answer with the scored spans marked, token counts, and statistics over the set.

Called by `ft.cli.data.format_command`; rendering and encoding are `ft.data.pairs`'.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from ft.cli.preview import SpanStyle
    from ft.config.schema import FtConfig
    from ft.data.pairs import PairExample
    from ft.data.pipeline import DataReport
    from ft.data.prompts import Segment


def format_pairs(
    console: Console, cfg: FtConfig, tokenizer: Any, shown: int, tokens: bool, stats: bool, as_json: bool
) -> None:
    """`shown` pairs (0 with --stats alone), then the report over them or, with `stats`, the set."""
    from ft.cli.preview import SpanStyle, in_colour
    from ft.data.pairs import preview_pairs

    pairs, report = preview_pairs(cfg, tokenizer, None if stats else shown)
    if as_json:
        for pair in pairs[:shown]:
            typer.echo(json.dumps(pair_json(pair, tokens), ensure_ascii=False))
        if stats:
            typer.echo(json.dumps({"stats": {"scope": "whole training set", **report.to_json()}}))
        return
    style = SpanStyle(plain=not in_colour(console))
    if pairs[:shown]:
        console.print(style.legend(tokens), highlight=False)
    for number, pair in enumerate(pairs[:shown], start=1):
        show_pair(console, number, pair, tokenizer, cfg.sequence_len, tokens, style)
    show_pair_report(console, report, pairs, cfg, whole_set=stats)


def pair_json(pair: PairExample, with_tokens: bool) -> dict[str, Any]:
    """prompt, chosen, rejected as text (each answer with its terminator); ids with `with_tokens`."""
    from ft.data.prompts import segments_text

    record: dict[str, Any] = {
        "prompt": segments_text(pair.prompt),
        "chosen": segments_text(_scored(pair.chosen)),
        "rejected": segments_text(_scored(pair.rejected)),
    }
    if pair.truncated:
        record["truncated"] = True
    if with_tokens:
        record.update(prompt_ids=pair.prompt_ids, chosen_ids=pair.chosen_ids, rejected_ids=pair.rejected_ids)
    return record


def _scored(segments: list[Segment]) -> list[Segment]:
    """The answer up to its last scored segment (a format's text after the terminator is not scored)."""
    last = max((i for i, s in enumerate(segments) if s.trained), default=-1)
    return segments[: last + 1]


def show_pair(
    console: Console,
    number: int,
    pair: PairExample,
    tokenizer: Any,
    limit: int,
    tokens: bool,
    style: SpanStyle,
) -> None:
    from ft.cli.preview import token_cells

    head = (
        f"[bold]pair {number}[/] · {escape(pair.key)} {escape(pair.where)} · prompt {len(pair.prompt_ids)} "
        f"tokens, chosen {len(pair.chosen_ids)}, rejected {len(pair.rejected_ids)} (scored)"
    )
    if pair.truncated:
        head += f" · [yellow]truncated to sequence_len {limit}[/]"
    console.rule(head, align="left")
    markup = not style.plain
    console.print("[bold]prompt[/]", highlight=False)
    console.print(style.spans(pair.prompt), highlight=False, markup=markup)
    if tokens:
        cells = token_cells(tokenizer, pair.prompt_ids, [False] * len(pair.prompt_ids), style)
        console.print(cells, highlight=False, markup=markup)
    for label, segments, ids in (
        ("chosen ✓", pair.chosen, pair.chosen_ids),
        ("rejected ✗", pair.rejected, pair.rejected_ids),
    ):
        console.print(f"[bold]{label}[/]", highlight=False)
        console.print(style.spans(segments), highlight=False, markup=markup)
        if tokens:
            console.print(
                token_cells(tokenizer, ids, [True] * len(ids), style), highlight=False, markup=markup
            )


def show_pair_report(
    console: Console, report: DataReport, pairs: list[PairExample], cfg: FtConfig, whole_set: bool
) -> None:
    from ft.cli.preview import show_bad_rows, show_too_long
    from ft.data.pipeline import SplitReport

    scope = "whole training set" if whole_set else "shown pairs"
    console.rule(f"[bold]{scope}[/]", align="left")
    train = report.train
    console.print(
        f"pairs {train.rows} of {report.rows_read} read · {train.sequences} sequences · tokens {train.tokens:,} "
        f"· scored {train.trained_tokens:,} (the answers)",
        highlight=False,
    )
    if pairs:
        for label, lengths in (
            ("prompt", [len(p.prompt_ids) for p in pairs]),
            ("chosen", [len(p.chosen_ids) for p in pairs]),
            ("rejected", [len(p.rejected_ids) for p in pairs]),
            ("prompt + longer answer", [p.longest for p in pairs]),
        ):
            pct = " ".join(f"{k} {v}" for k, v in SplitReport(lengths=lengths).percentiles().items())
            console.print(f"tokens per {label}: {pct}", highlight=False)
        longer = sum(len(p.chosen_ids) > len(p.rejected_ids) for p in pairs)
        console.print(
            f"chosen longer than rejected in {longer} of {len(pairs)} pairs "
            "(a strong lean teaches length, not content) · "
            f"sequence_len {cfg.sequence_len}, max_prompt_len {cfg.max_prompt_len or 'not set'}",
            highlight=False,
        )
    show_too_long(console, report, cfg, "pair(s)")
    show_bad_rows(console, report, cfg, "pair(s)")
