"""Sample packing: best-fit decreasing of example lengths into sequences of at most `capacity`.

Packed examples do not attend to each other: each packed row carries `seq_lengths`, from which
trl's padding-free collator restarts `position_ids` at every example, and transformers turns
restarting position ids into a block-diagonal attention mask (and masks the first label of
each example, which would otherwise be predicted from the previous one).
"""

from __future__ import annotations

import bisect
from typing import Any


def pack_lengths(lengths: list[int], capacity: int) -> list[list[int]]:
    """Indices of `lengths` grouped into bins whose total is at most `capacity` (BFD, O(n log n))."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    room: list[tuple[int, int]] = []  # (free space, bin number), kept sorted
    bins: list[list[int]] = []
    for index in order:
        length = lengths[index]
        if length > capacity:
            raise ValueError(f"example {index} has {length} tokens, over the capacity {capacity}")
        slot = bisect.bisect_left(room, (length, -1))
        if slot < len(room):
            free, number = room.pop(slot)
            bins[number].append(index)
            free -= length
        else:
            number = len(bins)
            bins.append([index])
            free = capacity - length
        if free > 0:
            bisect.insort(room, (free, number))
    return bins


def padding_efficiency(lengths: list[int], batch_size: int) -> float:
    """Non-pad share when batches (in the given order) are padded to their longest row."""
    total = 0
    for start in range(0, len(lengths), batch_size):
        batch = lengths[start : start + batch_size]
        total += max(batch) * len(batch)
    return sum(lengths) / total if total else 1.0


def varlen_attention(attn_implementation: str | None) -> bool:
    """Kernels that take one flattened batch with sequence boundaries (flash attention)."""
    return bool(attn_implementation) and "flash" in str(attn_implementation)


class PackedRowsCollator:
    """Batches packed rows side by side, each padded at its end, with `position_ids` restarting at
    every example and no attention mask: transformers then builds a block-diagonal causal mask per
    row, so packed examples do not attend to each other.

    For attention kernels without variable-length support (sdpa, eager: every CPU run) this is the
    fast path: trl's padding-free collation would flatten the whole micro-batch into one row whose
    dense mask costs (batch x sequence_len)^2 instead of batch x sequence_len^2. With flash
    attention ft uses trl's padding-free path instead.
    """

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id
        self.real_tokens = 0
        """Non-pad tokens handed out so far (trl cannot count them in this layout)."""

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        from ft.data.tokens import IGNORE_INDEX

        width = max(len(row["input_ids"]) for row in rows)
        self.real_tokens += sum(len(row["input_ids"]) for row in rows)
        input_ids, labels, positions = [], [], []
        for row in rows:
            pad = width - len(row["input_ids"])
            input_ids.append(list(row["input_ids"]) + [self.pad_token_id] * pad)
            labels.append(list(row["labels"]) + [IGNORE_INDEX] * pad)
            lengths = list(row["seq_lengths"]) + ([pad] if pad else [])
            positions.append([p for length in lengths for p in range(length)])
        return {
            "input_ids": torch.tensor(input_ids),
            "labels": torch.tensor(labels),
            "position_ids": torch.tensor(positions),
        }
