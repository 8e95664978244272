"""Training throughput: ft against a hand-written trl script, and ft with packing against without.

    python bench/train.py [--rows 256] [--batch 8]

All runs use the same tiny random Llama-style model (tests/tiny.py), the same alpaca-like rows
(short instructions, answers of widely varying length, like Stanford Alpaca's), LoRA on every
linear layer, the same batch size and one epoch, on the CPU in float32. It prints real (non-pad)
training tokens per second for:

- ft without packing (`ft.train.runner.run_training`, the code path of `ft train`)
- the usual notebook: trl's SFTTrainer on a text column, LoRA through `peft_config`
- ft with `sample_packing: true`

Tokens are counted from the rows each run trains on; the time is the trainer's own
`train_runtime` (the training loop only: no imports, model or data loading). Goals: ft / trl >=
0.95 and packed / unpacked >= 1.5. The machine's CPU may be shared: the load average is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import _env  # noqa: F401  (importing it sets up the environment)

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "the",
    "lazy",
    "dog",
    "what",
    "is",
    "capital",
    "of",
    "France",
    "Paris",
    "hello",
    "how",
    "are",
    "you",
    "today",
    "fine",
    "thank",
    "translate",
    "good",
    "morning",
    "give",
    "three",
    "tips",
    "for",
    "staying",
    "healthy",
    "eat",
    "well",
    "sleep",
    "exercise",
    "summarize",
    "following",
    "text",
    "in",
    "one",
    "sentence",
    "you",
    "are",
    "a",
    "helpful",
    "assistant",
]
SEQUENCE_LEN = 512
ALPACA = (
    "Below is an instruction that describes a task. Write a response that appropriately completes "
    "the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)


def alpaca_like_rows(count: int, seed: int = 0) -> list[dict[str, str]]:
    """Short instructions; answers from a few words to a few paragraphs (long-tailed, as in Alpaca)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        instruction = " ".join(rng.choices(WORDS, k=rng.randint(4, 16)))
        answer_words = min(int(rng.lognormvariate(3.0, 0.9)) + 1, 110)
        rows.append(
            {"instruction": instruction, "input": "", "output": " ".join(rng.choices(WORDS, k=answer_words))}
        )
    return rows


def ft_run(
    model_dir: Path, data: Path, out: Path, batch: int, packing: bool, **keys: Any
) -> tuple[float, int]:
    """`keys`: more config keys (bench/gpu sets a sequence_len or liger's keys)."""
    from ft.train.runner import run_training

    cfg = ft_config(model_dir, data, out, batch, packing, **keys)
    result = run_training(cfg, force=True)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    tokens = max(int(row["num_tokens"]) for row in rows if "num_tokens" in row)
    assert result.train_runtime_s is not None
    return result.train_runtime_s, tokens


def ft_config(model_dir: Path, data: Path, out: Path, batch: int, packing: bool, **keys: Any) -> Any:
    from ft.config.schema import FtConfig

    settings: dict[str, Any] = dict(
        base_model=str(model_dir),
        datasets=[{"path": str(data), "type": "alpaca"}],
        sequence_len=SEQUENCE_LEN,
        sample_packing=packing,
        adapter="lora",
        lora_r=8,
        lora_alpha=16,
        lora_target_linear=True,
        micro_batch_size=batch,
        num_epochs=1,
        learning_rate=1e-3,
        lr_scheduler="linear",
        # The notebook gets transformers' default optimizer (fused AdamW with torch >= 2.8): same here.
        optimizer="adamw_torch_fused",
        logging_steps=1,
        save_steps=10_000,
        output_dir=str(out),
    )
    settings.update(keys)
    return FtConfig(**settings)


def trl_notebook_run(
    model_dir: Path, rows: list[dict[str, str]], out: Path, batch: int, on_gpu: bool = False
) -> tuple[float, int]:
    """The shape of the usual notebook: a text column, SFTTrainer, peft_config; bf16 on a GPU
    (weights loaded in bf16, as ft loads them for LoRA there), float32 on a CPU."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.pad_token = tokenizer.unk_token
    texts = [ALPACA.format(**row) + row["output"] + tokenizer.eos_token for row in rows]
    dataset = Dataset.from_dict({"text": texts})
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16 if on_gpu else torch.float32)
    args = SFTConfig(
        output_dir=str(out),
        per_device_train_batch_size=batch,
        num_train_epochs=1,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        max_length=SEQUENCE_LEN,
        use_cpu=not on_gpu,
        bf16=on_gpu,
        gradient_checkpointing=False,
        report_to=[],
        disable_tqdm=True,
        seed=42,
    )
    peft_config = LoraConfig(
        r=8,
        lora_alpha=16,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        task_type="CAUSAL_LM",
    )
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config
    )
    output = trainer.train()
    tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    return float(output.metrics["train_runtime"]), tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()

    from tiny import save_tiny_model

    with tempfile.TemporaryDirectory(prefix="ft-bench-train-") as tmp_name:
        tmp = Path(tmp_name)
        model_dir = save_tiny_model(tmp / "tiny")
        rows = alpaca_like_rows(args.rows)
        data = tmp / "alpaca.jsonl"
        data.write_text("".join(json.dumps(row) + "\n" for row in rows))

        # The notebook runs first, so any warm-up cost falls on it, not on ft.
        results = {
            "trl notebook": trl_notebook_run(model_dir, rows, tmp / "trl", args.batch),
            "ft (no packing)": ft_run(model_dir, data, tmp / "ft", args.batch, packing=False),
            "ft (packing)": ft_run(model_dir, data, tmp / "ft-packed", args.batch, packing=True),
        }
    speed = {name: tokens / seconds for name, (seconds, tokens) in results.items()}
    print(f"{args.rows} alpaca-like rows, batch {args.batch}, 1 epoch, LoRA r=8, tiny model, CPU float32")
    for name, (seconds, tokens) in results.items():
        print(f"  {name:18s} {tokens:8d} real tokens in {seconds:6.2f} s = {speed[name]:9.0f} tokens/s")
    ft_vs_trl = speed["ft (no packing)"] / speed["trl notebook"]
    packed_vs_not = speed["ft (packing)"] / speed["ft (no packing)"]
    print(f"ft / trl notebook:    {ft_vs_trl:.2f}x (goal >= 0.95)")
    print(f"packing / no packing: {packed_vs_not:.2f}x (goal >= 1.5)")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
