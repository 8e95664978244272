"""LoRA config, target detection and attaching adapters."""

from __future__ import annotations

from pathlib import Path

import pytest

from ft.base.errors import FtError
from ft.config.schema import FtConfig
from ft.models.adapter import attach_adapter, build_lora_config, find_linear_targets, target_modules
from ft.models.loading import load_base_model
from ft.models.precision import Precision

CPU = Precision("float32", bf16=False, fp16=False, use_cpu=True)
LLAMA_LINEAR = ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]


def make_cfg(**kw) -> FtConfig:
    return FtConfig(
        **{"base_model": "org/model", "datasets": [{"path": "data.jsonl"}], "adapter": "lora", **kw}
    )


def test_lora_config_carries_every_setting() -> None:
    cfg = make_cfg(
        lora_r=4,
        lora_alpha=8,
        lora_dropout=0.1,
        lora_fan_in_fan_out=True,
        peft_use_dora=True,
        peft_use_rslora=True,
        lora_modules_to_save=["embed_tokens", "lm_head"],
    )
    lora = build_lora_config(cfg, ["q_proj", "v_proj"])
    assert (lora.r, lora.lora_alpha, lora.lora_dropout) == (4, 8, 0.1)
    assert lora.target_modules == {"q_proj", "v_proj"}
    assert lora.fan_in_fan_out and lora.use_dora and lora.use_rslora
    assert lora.modules_to_save == ["embed_tokens", "lm_head"]
    assert lora.task_type == "CAUSAL_LM"


def test_targets_needed() -> None:
    with pytest.raises(FtError, match="needs target modules"):
        target_modules(make_cfg(), model=None)
    assert target_modules(make_cfg(lora_target_modules=["q_proj"]), model=None) == ["q_proj"]


@pytest.mark.integration
def test_linear_targets_skip_the_head_also_in_4bit(tiny_model_dir: Path) -> None:
    full = load_base_model(make_cfg(base_model=str(tiny_model_dir)), None, CPU)
    assert find_linear_targets(full) == LLAMA_LINEAR
    kbit_cfg = make_cfg(base_model=str(tiny_model_dir), adapter="qlora", load_in_4bit=True)
    assert find_linear_targets(load_base_model(kbit_cfg, None, CPU)) == LLAMA_LINEAR


def test_linear_targets_include_gpt2_conv1d_and_lora_attaches() -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=64, n_positions=32))
    targets = find_linear_targets(model)
    assert targets == ["c_attn", "c_fc", "c_proj"]
    cfg = make_cfg(lora_target_linear=True, lora_fan_in_fan_out=True, lora_r=2)
    adapted = attach_adapter(cfg, model)
    # c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj: four layers, r x (in + out) each.
    assert adapted.trainable_params == 2 * ((16 + 48) + (16 + 16) + (16 + 64) + (64 + 16))


@pytest.mark.integration
def test_qlora_attach_with_checkpointing_trains_only_lora(tiny_model_dir: Path) -> None:
    import torch

    cfg = make_cfg(
        base_model=str(tiny_model_dir),
        adapter="qlora",
        load_in_4bit=True,
        lora_target_linear=True,
        lora_r=4,
        gradient_checkpointing=True,
    )
    adapted = attach_adapter(cfg, load_base_model(cfg, None, CPU))
    trainable = {name for name, p in adapted.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    assert adapted.trainable_params == sum(p.numel() for p in adapted.model.parameters() if p.requires_grad)
    assert adapted.target_modules == LLAMA_LINEAR
    # Backward through frozen 4-bit layers under non-reentrant checkpointing reaches the adapter.
    adapted.model.train()
    ids = torch.tensor([[1, 5, 6, 7, 8]])
    adapted.model(input_ids=ids, labels=ids).loss.backward()
    grads = [p.grad for name, p in adapted.model.named_parameters() if "lora_B" in name]
    assert grads and all(g is not None for g in grads)


@pytest.mark.integration
def test_continue_from_existing_adapter(tiny_model_dir: Path, tmp_path: Path) -> None:
    import torch

    cfg = make_cfg(base_model=str(tiny_model_dir), lora_target_modules=["q_proj", "v_proj"])
    first = attach_adapter(cfg, load_base_model(cfg, None, CPU))
    with torch.no_grad():
        for name, p in first.model.named_parameters():
            if "lora_B" in name:
                p.fill_(0.5)
    first.model.save_pretrained(tmp_path / "adapter")
    continued_cfg = make_cfg(base_model=str(tiny_model_dir), lora_model_dir=str(tmp_path / "adapter"))
    continued = attach_adapter(continued_cfg, load_base_model(continued_cfg, None, CPU))
    b_weights = [p for name, p in continued.model.named_parameters() if "lora_B" in name]
    assert b_weights and all(p.requires_grad and torch.all(p == 0.5) for p in b_weights)
    assert continued.target_modules == ["q_proj", "v_proj"]
    with pytest.raises(FtError, match="holds no adapter"):
        attach_adapter(make_cfg(lora_model_dir=str(tmp_path)), None)


@pytest.mark.integration
def test_full_finetune_trains_everything(tiny_model_dir: Path) -> None:
    cfg = make_cfg(base_model=str(tiny_model_dir), adapter=None)
    adapted = attach_adapter(cfg, load_base_model(cfg, None, CPU))
    assert adapted.trainable_params == adapted.total_params > 0
