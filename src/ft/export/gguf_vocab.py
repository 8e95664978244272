"""The tokenizer as GGUF metadata: tokens, their types, BPE merges or SentencePiece scores, special
token ids, whether BOS is added, and the chat template that renders the training format.

Byte-level BPE tokenizers (GPT-2, Llama 3, SmolLM, Qwen2) are written as llama.cpp's converter
writes them (`get_vocab_base`, `_set_vocab_gpt2`): llama.cpp picks its pre-tokenizer (the regex
that splits text before BPE) by name, and the name is found by hashing the ids of a fixed test
text, as the converter does; `PRE_TOKENIZERS` holds the hashes of the families ft exports.
SentencePiece tokenizers saved as a transformers `tokenizer.json` (Llama 2, Mistral) are written as
llama.cpp's `llama` model with one score per token; a merge's score is minus its rank, so
llama.cpp's highest-score-first merging repeats the BPE merges in order.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

import gguf

from ft.base.errors import FtError

CHECK_TEXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) ✅ "
    "🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ "
    "------======= нещо на Български ''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, "
    "'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL"
)
"""The converter's `chktxt` (convert_hf_to_gguf.py, get_vocab_base_pre), character for character."""

PRE_TOKENIZERS = {
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",  # Meta-Llama-3-8B
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",  # SmolLM-135M
    "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea": "qwen2",  # Qwen1.5-7B
    "d4540891389ea895b53b399da6ac824becc30f2fba0e9ddbb98f92e55ca0e97c": "qwen2",  # Qwen3-Embedding
    "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454": "gpt-2",  # openai-community/gpt2
    "fcace8b9cac38ce847670c970cd5892031a753a1ef381abd1d9af00f713da085": "phi-2",  # microsoft/phi-2
    "63b97e4253352e6f357cc59ea5b583e3a680eaeaf2632188c2b952de2588485e": "tekken",  # Mistral-Nemo
}
"""Hashes from llama.cpp's converter (get_vocab_base_pre) for the families ft exports."""

GPT2_PRE_TOKENIZER = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
"""A plain byte-level pre-tokenizer with GPT-2's regex: llama.cpp's `gpt-2` splits text the same way
(a tokenizer trained from scratch has no known hash but this structure)."""


@dataclass(frozen=True)
class Vocab:
    model: str
    """llama.cpp's tokenizer model: `gpt2` (byte-level BPE) or `llama` (SentencePiece)."""
    pre: str
    tokens: list[str]
    token_types: list[int]
    scores: list[float] | None


def pre_tokenizer_hash(tokenizer: Any) -> str:
    return sha256(str(tokenizer.encode(CHECK_TEXT)).encode()).hexdigest()


def pre_tokenizer_name(tokenizer: Any, tokenizer_json: dict[str, Any], source: str) -> str:
    """llama.cpp's name for the tokenizer's pre-tokenizer; FtError when ft does not know it."""
    name = PRE_TOKENIZERS.get(pre_tokenizer_hash(tokenizer))
    if name is not None:
        return name
    if tokenizer_json.get("pre_tokenizer") == GPT2_PRE_TOKENIZER:
        return "gpt-2"
    raise FtError(
        f"{source}: the tokenizer's pre-tokenizer is not one llama.cpp knows by name "
        f"(hash {pre_tokenizer_hash(tokenizer)[:16]}...)",
        hint="ft exports the Llama 3, SmolLM, Qwen2, GPT-2 and SentencePiece (Llama 2, Mistral) "
        "tokenizers; llama.cpp's convert_hf_to_gguf.py knows more",
    )


def looks_special(token: str) -> bool:
    """The converter's does_token_look_special, for added tokens not marked special."""
    return token in ("<pad>", "<mask>") or (token.startswith("<|") and token.endswith("|>"))


def read_tokenizer_json(folder: Path) -> dict[str, Any]:
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise FtError(
            f"{folder}: no tokenizer.json", hint="ft exports models with a fast (tokenizers) tokenizer"
        )
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")


def is_sentencepiece(tokenizer_json: dict[str, Any]) -> bool:
    """A SentencePiece model converted to tokenizer.json: BPE with byte fallback (`<0x0A>` tokens)."""
    model = tokenizer_json.get("model", {})
    return model.get("type") == "BPE" and bool(model.get("byte_fallback"))


def tokenizer_kind(tokenizer: Any, folder: Path) -> tuple[str, str]:
    """llama.cpp's tokenizer model and pre-tokenizer names; FtError for a tokenizer ft cannot write
    (checked before a run is merged, so the refusal comes before the work)."""
    tokenizer_json = read_tokenizer_json(folder)
    if is_sentencepiece(tokenizer_json):
        return "llama", "default"
    return "gpt2", pre_tokenizer_name(tokenizer, tokenizer_json, str(folder))


def build_vocab(tokenizer: Any, folder: Path, vocab_size: int) -> Vocab:
    model, pre = tokenizer_kind(tokenizer, folder)
    if max(tokenizer.get_vocab().values()) >= vocab_size:
        raise FtError(
            f"{folder}: the tokenizer has ids beyond the model's vocab_size {vocab_size}",
            hint="the embeddings were not resized for added tokens: merge the run again",
        )
    tokens, types = _tokens_and_types(tokenizer, vocab_size, sentencepiece=model == "llama")
    if model == "llama":
        scores = merge_rank_scores(tokens, read_tokenizer_json(folder))
        return Vocab(model, pre, tokens, [int(t) for t in types], scores)
    return Vocab(model, pre, tokens, [int(t) for t in types], None)


def _tokens_and_types(
    tokenizer: Any, vocab_size: int, sentencepiece: bool
) -> tuple[list[str], list[gguf.TokenType]]:
    """Every id up to vocab_size, unused ids as [PADn]: the converter's get_vocab_base for byte-level
    BPE (added tokens written as they decode), its LlamaHfVocab for SentencePiece (tokens as they
    are, `<0xNN>` byte tokens typed BYTE)."""
    reverse = {index: token for token, index in tokenizer.get_vocab().items()}
    added = tokenizer.get_added_vocab()
    decoder = tokenizer.added_tokens_decoder
    tokens: list[str] = []
    types: list[gguf.TokenType] = []
    for index in range(vocab_size):
        token = reverse.get(index)
        if token is None:
            tokens.append(f"[PAD{index}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        kind = gguf.TokenType.NORMAL
        if sentencepiece and BYTE_TOKEN.fullmatch(token):
            kind = gguf.TokenType.BYTE
        elif token in added:
            if not sentencepiece and not decoder[index].normalized:
                token = tokenizer.decode(tokenizer.encode(token, add_special_tokens=False))
            if decoder[index].special or looks_special(token):
                kind = gguf.TokenType.CONTROL
            else:
                token = token.replace("\u2581", " ")
                kind = gguf.TokenType.USER_DEFINED
        tokens.append(token)
        types.append(kind)
    return tokens, types


def merge_rank_scores(tokens: list[str], tokenizer_json: dict[str, Any]) -> list[float]:
    """Minus the rank of the merge that makes each token; 0 for single characters and specials."""
    rank: dict[str, int] = {}
    for index, merge in enumerate(tokenizer_json["model"].get("merges") or []):
        left, right = merge if isinstance(merge, list) else merge.split(" ", 1)
        rank.setdefault(left + right, index)
    return [-float(rank[token] + 1) if token in rank else 0.0 for token in tokens]


def write_vocab(
    writer: gguf.GGUFWriter, vocab: Vocab, folder: Path, adds_bos: bool, chat_template: str | None
) -> None:
    writer.add_tokenizer_model(vocab.model)
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.token_types)
    if vocab.scores is not None:
        writer.add_token_scores(vocab.scores)
    # SpecialVocab reads merges, special ids and add_*_token from the saved files, as the
    # converter does; the chat template and add_bos come from ft (probed, and the training format).
    # Merges for SentencePiece too: llama.cpp merges by score and ignores them, transformers'
    # GGUF loader rebuilds its tokenizer from them.
    special = gguf.SpecialVocab(folder, load_merges=True, n_vocab=len(vocab.tokens))
    special.chat_template = None
    special.add_special_token["bos"] = adds_bos
    special.add_to_gguf(writer, quiet=True)
    if chat_template:
        writer.add_chat_template(chat_template)
