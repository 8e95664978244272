"""Sample packing: best-fit decreasing of example lengths into sequences of at most `capacity`.

Packed examples do not attend to each other: each packed row carries `seq_lengths`, from which
trl's padding-free collator restarts `position_ids` at every example, and transformers turns
restarting position ids into a block-diagonal attention mask (and masks the first label of
each example, which would otherwise be predicted from the previous one).
"""

from __future__ import annotations

import bisect


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
