"""The data of a run, whatever it trains on: SFT rows (`ft.data.pipeline`) or, with `rl` set,
preference pairs (`ft.data.pairs`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ft.data.pairs import pair_summary_lines, prepare_pairs
from ft.data.pipeline import Note, PreparedData, prepare_data, quiet, summary_lines

if TYPE_CHECKING:
    from ft.config.schema import FtConfig


def prepare_run_data(
    cfg: FtConfig, tokenizer: Any, use_cache: bool = True, note: Note = quiet
) -> tuple[PreparedData, list[str]]:
    """Rows or pairs ready for the trainer, and the lines that say what the preparation did;
    `note` hears each stage as it starts."""
    if cfg.rl:
        pairs = prepare_pairs(cfg, tokenizer, use_cache, note)
        return pairs, pair_summary_lines(pairs.report)
    rows = prepare_data(cfg, tokenizer, use_cache, note)
    return rows, summary_lines(rows.report)
