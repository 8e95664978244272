"""Rendered segments into token ids and labels (the tokenizer is loaded by `ft.models.tokenizer`).

Encoding: each token is trained when any of its characters lies in a trained segment (offset
mapping of a fast tokenizer). Special segments (BOS, EOS, `<|end|>`) become their one id directly.

The boundary rule: where an untrained prompt meets a trained answer, the prompt is encoded on its
own, exactly as inference will encode it, and the answer as its continuation. Encoding the whole
string in one piece would usually give the same ids, but not where whitespace meets the boundary:
a byte-level BPE reads "\n" + "  indented" as "\n " + " indented", and a prompt's trailing "\n\n"
as one token at the end of a text but as two before a word (GPT-2's pre-tokenizer looks one
character ahead). The model would then learn answers after a prompt that inference never gives
it. A continuation is encoded after an anchor ("\n", dropped) for a tokenizer that marks the start
of a text (SentencePiece's "▁"): tokenized alone, every answer would start with a stray "▁" that
the model would learn to emit. axolotl encodes the prompt and the answer of its instruction types
apart too (so the ids are the same for byte-level tokenizers), and its chat templates in one piece.
Consecutive untrained (or trained) segments are encoded together; a segment marked `separate`
(input_output's) is always encoded on its own, as axolotl does.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ft.base.errors import FtError
from ft.data.prompts import Segment

if TYPE_CHECKING:
    pass

IGNORE_INDEX = -100
SPECIAL_TOKEN_KEYS = ("bos_token", "eos_token", "pad_token", "unk_token")


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of everything in the tokenizer that changes encoding."""
    import hashlib

    h = hashlib.sha256()
    h.update(tokenizer.backend_tokenizer.to_str().encode())
    for key in SPECIAL_TOKEN_KEYS:
        h.update(f"{key}={getattr(tokenizer, key, None)}".encode())
    h.update(str(getattr(tokenizer, "chat_template", None)).encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]


def encode_segments(tokenizer: Any, segments: Sequence[Segment], train_on_inputs: bool = False) -> Encoded:
    """Token ids and labels (-100 where not trained) for one rendered example."""
    return encode_many(tokenizer, [segments], train_on_inputs)[0]


def encode_many(
    tokenizer: Any, examples: Sequence[Sequence[Segment]], train_on_inputs: bool = False
) -> list[Encoded]:
    """`encode_segments` for many examples, with one batched tokenizer call for all their text."""
    runs: list[list[Segment]] = []
    plans: list[list[tuple[str, Any]]] = []
    for segments in examples:
        plan: list[tuple[str, Any]] = []
        current: list[Segment] = []
        for segment in segments:
            if segment.special or segment.separate:
                if current:
                    plan.append(("run", len(runs)))
                    runs.append(current)
                    current = []
                if segment.special:
                    plan.append(("special", segment))
                elif segment.text:
                    plan.append(("run", len(runs)))
                    runs.append([segment])
            elif segment.text:
                current.append(segment)
        if current:
            plan.append(("run", len(runs)))
            runs.append(current)
        plans.append(plan)
    tokenized = _tokenize_runs(tokenizer, runs)
    special_ids: dict[str, int] = {}
    out = []
    for plan in plans:
        ids: list[int] = []
        labels: list[int] = []
        for kind, value in plan:
            if kind == "special":
                token_id = _special_id(tokenizer, value.text, special_ids)
                ids.append(token_id)
                labels.append(
                    token_id
                    if (value.trained or train_on_inputs) and value.special != "bos"
                    else IGNORE_INDEX
                )
            else:
                run_ids, run_labels = tokenized[value]
                ids += run_ids
                labels += run_ids if train_on_inputs else run_labels
        if labels:
            labels[0] = (
                IGNORE_INDEX  # never predicted; in a packed row it would be predicted from another example
            )
        out.append(Encoded(ids, labels))
    return out


def _special_id(tokenizer: Any, text: str, cache: dict[str, int]) -> int:
    if text not in cache:
        token_id = tokenizer.convert_tokens_to_ids(text)
        if token_id is None or (token_id == tokenizer.unk_token_id and text != tokenizer.unk_token):
            raise FtError(
                f"the format needs {text!r} as one token, but the tokenizer does not have it",
                hint=f"add it: tokens: [{text!r}] (with lora_modules_to_save for its new embedding row)",
            )
        cache[text] = int(token_id)
    return cache[text]


BATCH = 1000


def _tokenize_runs(tokenizer: Any, runs: list[list[Segment]]) -> list[tuple[list[int], list[int]]]:
    out: list[tuple[list[int], list[int]]] = []
    encode = _batch_encoder(tokenizer)
    anchor = _continuation_anchor(encode)
    for start in range(0, len(runs), BATCH):
        batch = runs[start : start + BATCH]
        texts = ["".join(s.text for s in run) for run in batch]
        pieces = [(k, begin, end) for k, run in enumerate(batch) for begin, end in _pieces(run)]
        encoded = encode([(anchor if begin else "") + texts[k][begin:end] for k, begin, end in pieces])
        joined: list[tuple[list[int], list[tuple[int, int]]]] = [([], []) for _ in batch]
        for (k, begin, _), (piece_ids, piece_offsets) in zip(pieces, encoded, strict=True):
            ids, offsets = joined[k]
            skip = len(anchor) if begin else 0
            for token, (first, last) in zip(piece_ids, piece_offsets, strict=True):
                if last <= skip:
                    continue  # the anchor's own token
                ids.append(token)
                offsets.append((max(first, skip) - skip + begin, last - skip + begin))
        out += [
            (ids, _labels_by_offset(run, ids, offsets))
            for run, (ids, offsets) in zip(batch, joined, strict=True)
        ]
    return out


def _pieces(run: list[Segment]) -> list[tuple[int, int]]:
    """(start, end) of the run's pieces: it is cut where an untrained prompt meets a trained answer."""
    cuts = [0]
    position = 0
    for before, after in itertools.pairwise(run):
        position += len(before.text)
        if not before.trained and after.trained:
            cuts.append(position)
    cuts.append(position + len(run[-1].text))
    return list(itertools.pairwise(cuts))


ANCHOR = "\n"


def _continuation_anchor(encode: Any) -> str:
    """The text to encode before a continuation and drop: "\n" for a tokenizer that marks the start of
    a text (SentencePiece's "▁"), so the continuation reads as the middle of a text; "" for the
    others (a byte-level BPE would join the anchor to a continuation's leading spaces)."""
    (alone, _), (anchored, offsets) = encode(["a", ANCHOR + "a"])
    tail = [token for token, (begin, _) in zip(anchored, offsets, strict=True) if begin >= len(ANCHOR)]
    return ANCHOR if alone != tail else ""


def _batch_encoder(tokenizer: Any) -> Any:
    """Ids and character offsets for a batch of texts, without special tokens.

    The Rust tokenizer is called directly when it has no truncation or padding configured (its
    output is then exactly the transformers call's); that skips a per-text Python conversion
    that costs about a fifth of the encoding time.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and backend.truncation is None and backend.padding is None:

        def encode_backend(texts: list[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
            return [(e.ids, e.offsets) for e in backend.encode_batch(texts, add_special_tokens=False)]

        return encode_backend

    def encode_transformers(texts: list[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
        encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
        return list(zip(encoded["input_ids"], encoded["offset_mapping"], strict=True))

    return encode_transformers


def _labels_by_offset(run: list[Segment], ids: list[int], offsets: list[tuple[int, int]]) -> list[int]:
    """A token is trained when any of its characters belongs to a trained segment.

    Tokens rarely straddle a prompt/answer boundary (formats end prompts at a newline or a
    special token); when one does, training it keeps the answer's first characters in the loss.
    Offsets grow monotonically, so each trained segment maps to one slice of tokens (bisect).
    """
    labels = [IGNORE_INDEX] * len(ids)
    if not ids:
        return labels
    begins = [begin for begin, _ in offsets]
    ends = [end for _, end in offsets]
    position = 0
    for segment in run:
        start, stop = position, position + len(segment.text)
        position = stop
        if not segment.trained:
            continue
        first = bisect.bisect_right(ends, start)
        last = bisect.bisect_left(begins, stop)
        labels[first:last] = ids[first:last]
    return labels


def pad_batch(input_ids: list[list[int]], labels: list[list[int]], pad_id: int) -> tuple[Any, Any, Any]:
    """Right-padded tensors: ids (pad), labels (-100), attention mask."""
    import torch

    width = max(len(row) for row in input_ids)
    ids = torch.full((len(input_ids), width), pad_id, dtype=torch.long)
    targets = torch.full((len(input_ids), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(input_ids), width), dtype=torch.long)
    for index, (row_ids, row_labels) in enumerate(zip(input_ids, labels, strict=True)):
        ids[index, : len(row_ids)] = torch.tensor(row_ids)
        targets[index, : len(row_labels)] = torch.tensor(row_labels)
        mask[index, : len(row_ids)] = 1
    return ids, targets, mask
