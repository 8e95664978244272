"""The check's models, data and run configs, built once in the work folder (nothing from the Hub).

- `big`: Llama-3.2-1B's architecture (its config.json, bench/gpu/llama-3.2-1b.json: 1,235,814,400
  parameters, tied embeddings, vocabulary 128,256) with random bf16 weights, for memory and speed.
  In --tiny mode it is the tiny test model.
- `tiny`: tests/tiny.py's model and tokenizer, for exactness (resume, merge, precision, FSDP).
Both use tests/tiny.py's byte-level BPE tokenizer: token ids stay below its 400 entries, which
changes nothing in the cost of a token. The rows are bench/train.py's alpaca-like rows.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
BIG_CONFIG = HERE / "llama-3.2-1b.json"


def tiny_model(work: Path) -> Path:
    from tiny import save_tiny_model

    folder = work / "models" / "tiny"
    if not (folder / "config.json").is_file():
        save_tiny_model(folder)
    return folder


def big_model(work: Path, tiny_mode: bool) -> Path:
    """Llama-3.2-1B's shape with random weights, initialised on the GPU and saved in bf16."""
    if tiny_mode:
        return tiny_model(work)
    folder = work / "models" / "llama-3.2-1b-random"
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tiny import build_tokenizer

    tokenizer = build_tokenizer()
    settings: dict[str, Any] = json.loads(BIG_CONFIG.read_text())
    settings.update(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(LlamaConfig(**settings)).to(torch.bfloat16)
    tmp = folder.with_name(folder.name + ".tmp")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    del model
    torch.cuda.empty_cache()
    tmp.rename(folder)
    return folder


def alpaca_rows(work: Path, count: int, seed: int = 0) -> Path:
    from train import alpaca_like_rows

    path = work / "data" / f"alpaca-{count}-{seed}.jsonl"
    if not path.is_file():
        write_rows(path, alpaca_like_rows(count, seed))
    return path


def long_rows(work: Path, count: int, words: int) -> Path:
    """Rows longer than any sequence_len used here: with `excess_length_strategy: truncate` every
    row is exactly sequence_len tokens, so a batch has no padding (the plan's full-length case)."""
    from train import WORDS

    path = work / "data" / f"long-{count}-{words}.jsonl"
    if not path.is_file():
        rng = random.Random(1)
        rows = [
            {
                "instruction": " ".join(rng.choices(WORDS, k=8)),
                "output": " ".join(rng.choices(WORDS, k=words)),
            }
            for _ in range(count)
        ]
        write_rows(path, rows)
    return path


def write_rows(path: Path, rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def run_config(work: Path, name: str, model: Path, data: Path, **keys: Any) -> Path:
    """A run config file as a user writes one; `keys` override the defaults below."""
    config: dict[str, Any] = {
        "base_model": str(model),
        "datasets": [{"path": str(data), "type": "alpaca"}],
        "sequence_len": 512,
        "adapter": "lora",
        "lora_r": 16,
        "lora_alpha": 32,
        "lora_target_linear": True,
        "micro_batch_size": 4,
        "max_steps": 20,
        "learning_rate": 2e-4,
        "lr_scheduler": "constant",
        "logging_steps": 1,
        "save_steps": 1000,
        "seed": 42,
        "output_dir": str(work / "runs" / name),
        **keys,
    }
    path = work / "configs" / f"{name}.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
