"""Training tokens for `ft plan`: counted with the tokenizer when the data is local (no model is
loaded), estimated from max_steps otherwise, or unknown (and said so)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ft.base.errors import FtError
from ft.config.schema import FtConfig


@dataclass(frozen=True)
class Tokens:
    total: int | None
    how: str
    """'counted', 'estimated' or 'unknown', and from what."""
    longest: int | None = None
    """The longest training sequence when counted (capped at sequence_len); activations use it."""


def count_training_tokens(cfg: FtConfig) -> Tokens:
    """Tokens the run trains on: counted with the tokenizer when every dataset is local, else
    estimated from max_steps, else unknown."""
    from ft.data.rows import is_local

    rows_per_step = cfg.micro_batch_size * cfg.gradient_accumulation_steps
    if all(is_local(ds.path) for ds in cfg.datasets):
        try:
            return _counted_tokens(cfg, rows_per_step)
        except FtError as err:
            reason = f"counting failed ({err.message.splitlines()[0]})"
    else:
        reason = "not every dataset is local"
    if cfg.max_steps:
        sequences = 2 if cfg.rl else 1  # a preference pair is two sequences
        total = cfg.max_steps * rows_per_step * sequences * cfg.sequence_len
        rows = f"{rows_per_step} pairs x 2 sequences" if cfg.rl else f"{rows_per_step} rows"
        return Tokens(
            total,
            f"estimated ({reason}): max_steps {cfg.max_steps} x {rows} x sequence_len "
            f"{cfg.sequence_len}, an upper bound",
        )
    return Tokens(None, f"unknown ({reason}, no max_steps): hours are given per million tokens")


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def _row_lengths(cfg: FtConfig) -> tuple[list[int], list[int]]:
    """Per training row: the tokens it runs through the model, and its longest sequence. A
    preference pair runs two sequences (prompt + chosen, prompt + rejected)."""
    from ft.data.pipeline import split_eval, split_training_data
    from ft.models.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(offline_tokenizer_config(cfg))
    padded = cfg.sequence_len if cfg.pad_to_sequence_len else None
    if cfg.rl:
        from ft.data.pairs import preview_pairs

        pairs = split_eval(cfg, preview_pairs(cfg, tokenizer, None)[0])[0]
        return [2 * padded if padded else p.tokens for p in pairs], [p.longest for p in pairs]
    rows = split_training_data(cfg, tokenizer)[0]
    return [padded or len(e.input_ids) for e in rows], [len(e.input_ids) for e in rows]


def _counted_tokens(cfg: FtConfig, rows_per_step: int) -> Tokens:
    lengths, longest_rows = _row_lengths(cfg)
    if not lengths:
        raise FtError("no training rows")
    per_epoch = sum(lengths)
    longest = min(cfg.sequence_len if cfg.pad_to_sequence_len else max(longest_rows), cfg.sequence_len)
    if cfg.max_steps:
        per_row = cfg.sequence_len if cfg.sample_packing else per_epoch / len(lengths)
        total = int(cfg.max_steps * rows_per_step * per_row)
        rows = "pairs" if cfg.rl else "rows"
        how = f"counted: max_steps {cfg.max_steps} x {rows_per_step} {rows} x {per_row:.0f} tokens"
        return Tokens(total, how, longest)
    total = int(per_epoch * cfg.num_epochs)
    return Tokens(
        total,
        f"counted: {len(lengths):,} training {'pairs' if cfg.rl else 'rows'}, {per_epoch:,} tokens per epoch "
        "x num_epochs "
        f"{cfg.num_epochs:g} (padding not counted); longest row {longest}",
        longest,
    )


def offline_tokenizer_config(cfg: FtConfig) -> FtConfig:
    """The config with a Hub tokenizer replaced by its folder in the local Hugging Face cache, so
    that counting never waits on the Hub (unreachable, transformers retries for minutes). Raises
    FtError when the tokenizer is not in the cache: the tokens are then estimated."""
    from ft.config.sources import resolve_model_source
    from ft.models.tokenizer import tokenizer_source

    ref = tokenizer_source(cfg)
    if resolve_model_source(ref).kind != "hub":
        return cfg
    folder = cached_snapshot(ref, cfg.revision)
    if folder is None or not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise FtError(
            f"the tokenizer of {ref} is not in the local Hugging Face cache "
            f"(hf download {ref} to count the tokens)"
        )
    return cfg.model_copy(update={"tokenizer_config": str(folder)})


def cached_snapshot(repo_id: str, revision: str | None) -> Path | None:
    """The repo's snapshot folder in the local Hugging Face cache, without any request."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, revision=revision, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None
