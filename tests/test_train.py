"""`ft train` end to end on the tiny model: lora, qlora and full fine-tune through the CLI, the run
folder, refusing to overwrite, --force. Signals, kills and --resume: test_interrupt.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

ROWS = [
    {"instruction": "What is the capital of France?", "output": "Paris."},
    {"instruction": "Translate to French: good morning", "output": "bonjour"},
    {"instruction": "Give three tips for staying healthy.", "output": "Eat well, sleep, exercise."},
    {"instruction": "What is 2 + 2?", "output": "4"},
]
ADAPTER_RUN_FILES = {
    "adapter_config.json",
    "adapter_model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "config.yml",
    "run.json",
    "metrics.jsonl",
    "loss.png",
    "README.md",
}


def write_config(tmp_path: Path, model_dir: Path, name: str = "run", **overrides: object) -> Path:
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in ROWS * 4))
    config = {
        "base_model": str(model_dir),
        "datasets": [{"path": str(data), "type": "alpaca"}],
        "sequence_len": 128,
        "adapter": "lora",
        "lora_r": 8,
        "lora_alpha": 16,
        "lora_target_linear": True,
        "micro_batch_size": 4,
        "max_steps": 8,
        "learning_rate": 0.01,
        "lr_scheduler": "constant",
        "logging_steps": 1,
        "save_steps": 4,
        "output_dir": str(tmp_path / name),
        **overrides,
    }
    path = tmp_path / f"{name}.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_cli(*args: str) -> int:
    from ft.cli.app import main

    try:
        main(list(args))
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


def losses(run_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [row["loss"] for row in rows if "loss" in row]


def top_level(run_dir: Path) -> set[str]:
    return {p.name for p in run_dir.iterdir() if not p.name.startswith("checkpoint-")}


def test_lora_run_folder_loss_and_weights(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    config = write_config(tmp_path, tiny_model_dir)
    assert run_cli("train", str(config)) == 0
    run = tmp_path / "run"
    assert top_level(run) == ADAPTER_RUN_FILES
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-8"]
    out = capsys.readouterr().out
    assert "trainable parameters:" in out and f"run folder: {run}" in out

    info = json.loads((run / "run.json").read_text())
    assert info["global_step"] == 8 and info["adapter"] == "lora" and info["dtype"] == "float32"
    assert info["base_model_path"] == str(tiny_model_dir)
    assert info["quantization"]["bits"] is None
    assert info["library_versions"]["trl"] and info["data_fingerprint"]

    # The same 16 rows again and again: the loss must fall.
    train_losses = losses(run)
    assert len(train_losses) == 8 and train_losses[-1] < train_losses[0] - 0.3

    # LoRA B starts at zero: trained means non-zero. The base weights stay as they were.
    adapter = load_file(run / "adapter_model.safetensors")
    b_weights = [t for name, t in adapter.items() if "lora_B" in name]
    assert b_weights and all(t.abs().max() > 0 for t in b_weights)
    assert not any("base_layer" in name for name in adapter)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), run)
    q_base = base.model.layers[0].self_attn.q_proj.weight
    assert torch.equal(tuned.base_model.model.model.layers[0].self_attn.q_proj.base_layer.weight, q_base)

    # An existing run is never overwritten by accident.
    assert run_cli("train", str(config)) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--force" in err
    assert run_cli("train", str(config), "--force", "--set", "max_steps=2") == 0
    assert json.loads((run / "run.json").read_text())["global_step"] == 2
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-2"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # old run deleted


def test_same_config_trains_the_same_after_other_work(tiny_model_dir: Path, tmp_path: Path) -> None:
    """LoRA A and new embedding rows are random: ft seeds before drawing them, so whatever ran
    before in the process (here: draws from torch's global generator) does not change the run."""
    import torch

    runs = []
    for name in ("first", "second"):
        torch.rand(1000)
        assert run_cli("train", str(write_config(tmp_path, tiny_model_dir, name=name, max_steps=3))) == 0
        runs.append(losses(tmp_path / name))
    assert len(runs[0]) == 3 and runs[0] == runs[1]


def test_qlora_4bit_on_cpu(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, tiny_model_dir, adapter="qlora", load_in_4bit=True, save_steps=8)
    assert run_cli("train", str(config)) == 0
    run = tmp_path / "run"
    info = json.loads((run / "run.json").read_text())
    assert info["adapter"] == "qlora"
    assert info["quantization"] == {
        "bits": 4,
        "quant_type": "nf4",
        "double_quant": True,
        "compute_dtype": "float32",
    }
    assert top_level(run) == ADAPTER_RUN_FILES
    train_losses = losses(run)
    assert train_losses[-1] < train_losses[0] - 0.3


def test_full_finetune_writes_full_weights(tiny_model_dir: Path, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    config = write_config(tmp_path, tiny_model_dir, adapter=None, save_steps=8, learning_rate=0.001)
    assert run_cli("train", str(config)) == 0
    run = tmp_path / "run"
    files = top_level(run)
    assert {"config.json", "model.safetensors", "generation_config.json"} <= files
    assert not files & {"adapter_config.json", "adapter_model.safetensors", "training_args.bin"}
    assert "library_name: transformers" in (run / "README.md").read_text()  # ft's card, not the trainer's
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tuned = AutoModelForCausalLM.from_pretrained(run)
    assert not torch.equal(base.model.layers[0].mlp.up_proj.weight, tuned.model.layers[0].mlp.up_proj.weight)
    train_losses = losses(run)
    assert train_losses[-1] < train_losses[0]


def test_packed_lora_run_trains(tiny_model_dir: Path, tmp_path: Path) -> None:
    """sample_packing on the CPU (sdpa): ft's per-row packed collator. The 16 rows pack into a few
    rows of 512 tokens, so each step is the whole set and the loss must fall."""
    config = write_config(tmp_path, tiny_model_dir, sample_packing=True, sequence_len=512)
    assert run_cli("train", str(config)) == 0
    run = tmp_path / "run"
    assert json.loads((run / "run.json").read_text())["global_step"] == 8
    train_losses = losses(run)
    assert train_losses[-1] < train_losses[0] - 0.3
