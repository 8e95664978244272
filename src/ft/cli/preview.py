"""Pieces of the `ft format` display shared by SFT rows and preference pairs: segments with
scored spans styled, token cells, the too-long and bad-row lines. Meaning is never in colour
alone: a leading space is shown as `·`, newlines as `↵`, and counts are written out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from ft.config.schema import DataSettings
    from ft.data.pipeline import DataReport
    from ft.data.prompts import Segment


def visible(text: str) -> str:
    """Whitespace made visible: newlines as ↵ (then the line break), tabs as →."""
    return text.replace("\t", "→").replace("\n", "↵\n")


def styled_segments(segments: Sequence[Segment]) -> str:
    """Rich markup of rendered segments: trained green, special tokens magenta, the rest dim."""
    parts = []
    for segment in segments:
        # A space that opens a segment is the prompt/answer boundary's: show it.
        shown = "·" + segment.text[1:] if segment.text.startswith(" ") else segment.text
        text = escape(visible(shown))
        if segment.special:
            style = "bold magenta" if segment.trained else "magenta"
        else:
            style = "green" if segment.trained else "dim"
        parts.append(f"[{style}]{text}[/]")
    return "".join(parts)


def token_cells(tokenizer: Any, ids: Sequence[int], scored: Sequence[bool]) -> str:
    """`id:piece` for each token, green where it is trained (scored), dim elsewhere."""
    pieces = tokenizer.convert_ids_to_tokens(list(ids))
    return " ".join(
        f"[{'green' if flag else 'dim'}]{token_id}:{escape(repr(piece)[1:-1])}[/]"
        for token_id, piece, flag in zip(ids, pieces, scored, strict=True)
    )


def show_too_long(console: Console, report: DataReport, cfg: DataSettings, noun: str) -> None:
    if report.too_long:
        action = {"drop": "dropped", "truncate": "truncated", "error": "an error in training"}[
            cfg.excess_length_strategy
        ]
        console.print(
            f"[yellow]{report.too_long} {noun} over sequence_len {cfg.sequence_len}: {action}[/]",
            highlight=False,
        )


def show_bad_rows(console: Console, report: DataReport, cfg: DataSettings, noun: str) -> None:
    bad = report.bad_rows
    if bad:
        verdict = "skipped (skip_invalid_rows)" if cfg.skip_invalid_rows else "training would stop on them"
        console.print(f"[red]{len(bad)} bad {noun}: {verdict}[/]", highlight=False)
        for row in bad[:10]:
            console.print(f"  {escape(str(row))}", highlight=False)
