"""The tokenizer of a config: loaded from the base model (a folder, a .gguf file or the Hub), with
the config's special tokens, extra tokens and a pad token applied. Encoding lives in `ft.data.tokens`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ft.base.errors import FtError
from ft.data.tokens import SPECIAL_TOKEN_KEYS

if TYPE_CHECKING:
    from ft.config.schema import ModelSettings


def tokenizer_source(cfg: ModelSettings) -> str:
    return cfg.tokenizer_config or cfg.base_model


def load_tokenizer(cfg: ModelSettings) -> Any:
    """The tokenizer of the config, with `special_tokens`, `tokens` and a pad token applied."""
    tokenizer = load_raw_tokenizer(cfg)
    apply_special_tokens(cfg, tokenizer)
    choose_pad_token(tokenizer)
    return tokenizer


def load_raw_tokenizer(cfg: ModelSettings) -> Any:
    from transformers import AutoTokenizer

    from ft.config.sources import resolve_model_source
    from ft.models.gguf import load_gguf_tokenizer

    ref = tokenizer_source(cfg)
    source = resolve_model_source(ref)
    key = "tokenizer_config" if cfg.tokenizer_config else "base_model"
    try:
        if source.kind == "gguf":
            tokenizer = load_gguf_tokenizer(Path(source.location))
        else:
            tokenizer = AutoTokenizer.from_pretrained(
                source.location,
                revision=cfg.revision if source.kind == "hub" else None,
                trust_remote_code=cfg.trust_remote_code,
                use_fast=cfg.tokenizer_use_fast,
            )
    except (OSError, ValueError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise FtError(
            f"{key}: cannot load a tokenizer from {ref!r}: {first_line}",
            hint="offline? a Hub id needs the model in the local cache (HF_HUB_OFFLINE=1)"
            if source.kind == "hub"
            else None,
        ) from err
    if not getattr(tokenizer, "is_fast", False):
        raise FtError(
            f"{key}: {ref!r} has only a slow (Python) tokenizer; ft needs a fast one for exact label masks",
            hint="use a model with a tokenizer.json, or set tokenizer_use_fast: true",
        )
    return tokenizer


def apply_special_tokens(cfg: ModelSettings, tokenizer: Any) -> list[str]:
    """Set `special_tokens` (reusing tokens the vocabulary has) and add `tokens`; returns those added."""
    vocab = tokenizer.get_vocab()
    added: list[str] = []
    for key, value in cfg.special_tokens.items():
        if key not in SPECIAL_TOKEN_KEYS:
            raise FtError(
                f"special_tokens.{key}: unknown special token kind",
                hint="one of: " + ", ".join(SPECIAL_TOKEN_KEYS),
            )
        if value in vocab:
            setattr(tokenizer, key, value)
        else:
            tokenizer.add_special_tokens({key: value})
            added.append(value)
    new = [token for token in cfg.tokens if token not in vocab]
    if new:
        tokenizer.add_tokens(new)
        added += new
    return added


def choose_pad_token(tokenizer: Any) -> None:
    """Give a tokenizer without a pad token one it already has: UNK, else EOS.

    EOS as padding is safe here: labels are built by ft, never derived from pad positions, so
    the EOS at the end of each answer is still trained (trl would mask it otherwise).
    """
    if tokenizer.pad_token is not None:
        return
    if tokenizer.unk_token is not None and tokenizer.unk_token != tokenizer.eos_token:
        tokenizer.pad_token = tokenizer.unk_token
    else:
        tokenizer.pad_token = tokenizer.eos_token
