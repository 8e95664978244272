"""Pieces of the `ft format` display shared by SFT rows and preference pairs: segments with
trained spans marked (`SpanStyle`), token cells, the too-long and bad-row lines. Meaning is never
in colour alone: with colour off, brackets mark trained text; spaces that would not show are `·`,
newlines `↵`, and counts are written out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from ft.config.schema import DataSettings
    from ft.data.pipeline import DataReport
    from ft.data.prompts import Segment


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


def in_colour(console: Console) -> bool:
    """Colour reaches the reader: a terminal with colours, NO_COLOR unset (rich reads both)."""
    return console.color_system is not None and not console.no_color


def token_cells(tokenizer: Any, ids: Sequence[int], trained: Sequence[bool], style: SpanStyle) -> str:
    """`id:piece` for each token, marked as `style` marks trained text."""
    pieces = tokenizer.convert_ids_to_tokens(list(ids))
    return " ".join(
        style.token(token_id, piece, flag) for token_id, piece, flag in zip(ids, pieces, trained, strict=True)
    )


def show_too_long(console: Console, report: DataReport, cfg: DataSettings, noun: str) -> None:
    if report.too_long:
        done = {
            "dropped": report.dropped_too_long,
            "truncated": report.truncated,
            "split into sequence_len pieces": report.split_long,
        }
        action = (
            ", ".join(f"{count} {what}" for what, count in done.items() if count) or "an error in training"
        )
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
