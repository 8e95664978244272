"""The SFTConfig builder (pure); the output-folder rules are in test_force.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from ft.base.errors import FtError
from ft.config.schema import FtConfig
from ft.models.precision import Precision
from ft.train.settings import build_sft_config, planned_steps, report_to, sft_config_kwargs

CPU = Precision("float32", bf16=False, fp16=False, use_cpu=True)
GPU_BF16 = Precision("bfloat16", bf16=True, fp16=False, use_cpu=False)


def make_cfg(**kw) -> FtConfig:
    return FtConfig(**{"base_model": "org/model", "datasets": [{"path": "data.jsonl"}], **kw})


def kwargs_for(cfg: FtConfig, rows: int = 100, has_eval: bool = True, precision: Precision = CPU) -> dict:
    return sft_config_kwargs(cfg, precision, Path("/tmp/run"), train_rows=rows, has_eval=has_eval)


def test_cpu_defaults_are_explicit() -> None:
    kw = kwargs_for(make_cfg(micro_batch_size=4, gradient_accumulation_steps=2, sequence_len=512))
    assert kw["use_cpu"] is True and kw["bf16"] is False and kw["fp16"] is False
    assert kw["activation_checkpointing"] is False
    assert kw["dataset_kwargs"] == {"skip_prepare_dataset": True}
    assert kw["packing"] is False and kw["padding_free"] is False and kw["max_length"] == 512
    assert kw["per_device_train_batch_size"] == 4 and kw["gradient_accumulation_steps"] == 2
    assert kw["max_steps"] == -1 and kw["num_train_epochs"] == 1.0
    assert kw["report_to"] == [] and kw["disable_tqdm"] is True
    # 100 rows / (4 x 2) -> 13 steps per epoch: eval and save once per epoch by default
    assert (kw["eval_strategy"], kw["eval_steps"]) == ("steps", 13)
    assert (kw["save_strategy"], kw["save_steps"]) == ("steps", 13)


def test_packing_is_padding_free_only_with_varlen_attention() -> None:
    """trl's padding-free path flattens a batch into one row: right for flash attention's varlen
    kernels; with sdpa/eager ft's per-row collator is used instead (ft.data.packing.PackedRowsCollator)."""
    kw = kwargs_for(make_cfg(sample_packing=True, sequence_len=256))
    assert kw["padding_free"] is False and kw["packing"] is False and kw["max_length"] is None
    flash = kwargs_for(
        make_cfg(sample_packing=True, sequence_len=256, attn_implementation="flash_attention_2")
    )
    assert flash["padding_free"] is True and flash["max_length"] is None


def test_schedule_optimizer_and_counts() -> None:
    cfg = make_cfg(
        optimizer="paged_adamw_8bit",
        lr_scheduler="constant_with_warmup",
        learning_rate=1e-4,
        warmup_ratio=0.1,
        max_grad_norm=0.5,
        weight_decay=0.01,
        seed=7,
        max_steps=30,
        evals_per_epoch=4,
        saves_per_epoch=2,
        save_total_limit=3,
        logging_steps=5,
        gradient_checkpointing=True,
        adam_beta2=0.95,
    )
    kw = kwargs_for(cfg, rows=80)
    assert kw["optim"] == "paged_adamw_8bit" and kw["lr_scheduler_type"] == "constant_with_warmup"
    assert kw["learning_rate"] == 1e-4 and kw["warmup_steps"] == 0.1 and kw["max_grad_norm"] == 0.5
    assert (
        kw["weight_decay"] == 0.01 and kw["seed"] == 7 and kw["max_steps"] == 30 and kw["adam_beta2"] == 0.95
    )
    assert kw["eval_steps"] == 20 and kw["save_steps"] == 40 and kw["save_total_limit"] == 3
    assert kw["logging_steps"] == 5
    assert kw["activation_checkpointing"] is True
    assert kw["activation_checkpointing_kwargs"] == {"use_reentrant": False}
    assert planned_steps(cfg, 80) == 30
    assert planned_steps(make_cfg(num_epochs=2, micro_batch_size=3), 10) == 8


def test_explicit_steps_and_no_eval() -> None:
    kw = kwargs_for(make_cfg(eval_steps=7, save_steps=9, warmup_steps=3), has_eval=False)
    assert kw["eval_strategy"] == "no" and "eval_steps" not in kw
    assert kw["save_steps"] == 9 and kw["warmup_steps"] == 3


def test_early_stopping_needs_eval() -> None:
    with pytest.raises(FtError, match="early_stopping_patience needs an eval split"):
        kwargs_for(make_cfg(early_stopping_patience=2), has_eval=False)
    kw = kwargs_for(make_cfg(early_stopping_patience=2))
    assert kw["metric_for_best_model"] == "eval_loss" and kw["greater_is_better"] is False


def test_reporting_targets() -> None:
    from ft.train.settings import _need

    assert report_to(make_cfg(use_tensorboard=True)) == ["tensorboard"]
    assert report_to(make_cfg(wandb_project="demo", use_mlflow=True)) == ["wandb", "mlflow"]
    assert report_to(make_cfg(wandb_project="demo", wandb_mode="disabled")) == []
    with pytest.raises(FtError, match="no_such_tracker_ft is not installed"):
        _need("no_such_tracker_ft", "use_tracker is set", "pip install it")


def test_real_sft_config_accepts_the_arguments(tmp_path: Path) -> None:
    args = build_sft_config(
        make_cfg(adapter="lora", sample_packing=True, optimizer="adamw_torch", lr_scheduler="cosine"),
        CPU,
        tmp_path,
        train_rows=10,
        has_eval=True,
    )
    assert args.use_cpu and not args.bf16 and not args.gradient_checkpointing
    assert not args.padding_free and args.dataset_kwargs == {"skip_prepare_dataset": True}
    assert args.ddp_find_unused_parameters is False


def test_gpu_bf16_flags() -> None:
    kw = kwargs_for(make_cfg(), precision=GPU_BF16)
    assert kw["bf16"] is True and kw["use_cpu"] is False


def test_axolotls_eval_and_save_strategies() -> None:
    epoch = kwargs_for(make_cfg(eval_strategy="epoch", save_strategy="epoch"))
    assert (
        epoch["eval_strategy"] == "epoch" and "eval_steps" not in epoch and epoch["save_strategy"] == "epoch"
    )
    off = kwargs_for(make_cfg(evals_per_epoch=0, saves_per_epoch=0))
    assert off["eval_strategy"] == "no" and off["save_strategy"] == "no"
    best = kwargs_for(make_cfg(load_best_model_at_end=True, metric_for_best_model="eval_sacrebleu"))
    assert (best["load_best_model_at_end"], best["metric_for_best_model"], best["greater_is_better"]) == (
        True,
        "eval_sacrebleu",
        True,
    )
    assert kwargs_for(make_cfg(load_best_model_at_end=True))["greater_is_better"] is False  # eval_loss
    with pytest.raises(FtError, match="load_best_model_at_end needs evaluations, and evaluation is off"):
        kwargs_for(make_cfg(load_best_model_at_end=True, evals_per_epoch=0))


def test_optimizer_arguments_schedules_and_sampling() -> None:
    kw = kwargs_for(
        make_cfg(
            optim_args={"momentum": 0.9, "nesterov": True},
            lr_scheduler="cosine_with_min_lr",
            lr_scheduler_kwargs={"min_lr_rate": 0.1},
            curriculum_sampling=True,
            dataloader_drop_last=True,
            gradient_checkpointing=True,
            gradient_checkpointing_kwargs={"use_reentrant": True},
        )
    )
    assert kw["optim_args"] == "momentum=0.9,nesterov=True"
    assert kw["lr_scheduler_kwargs"] == {"min_lr_rate": 0.1} and kw["train_sampling_strategy"] == "sequential"
    assert kw["dataloader_drop_last"] is True
    assert kw["activation_checkpointing_kwargs"] == {"use_reentrant": True}
    # axolotl's FSDP2 configs give fsdp_config alone: full sharding with auto-wrapping.
    fsdp = kwargs_for(make_cfg(fsdp_config={"version": 2, "reshard_after_forward": True}))
    assert fsdp["fsdp"] == "full_shard auto_wrap" and fsdp["fsdp_config"]["version"] == 2


def test_an_optimizer_whose_package_is_missing_is_named_before_training() -> None:
    import importlib.util

    if importlib.util.find_spec("torchao") is not None:
        pytest.skip("torchao is installed here")
    with pytest.raises(FtError, match="optimizer adamw_torch_8bit is set but torchao is not installed"):
        kwargs_for(make_cfg(optimizer="adamw_torch_8bit"))


def test_checkpointing_keys_renamed_for_transformers_before_5_23() -> None:
    import dataclasses

    from ft.train.settings import with_known_checkpointing_names

    @dataclasses.dataclass
    class Before523:
        gradient_checkpointing: bool = False
        gradient_checkpointing_kwargs: dict | None = None

    @dataclasses.dataclass
    class Since523:
        activation_checkpointing: bool = False
        activation_checkpointing_kwargs: dict | None = None

    kwargs = {
        "activation_checkpointing": True,
        "activation_checkpointing_kwargs": {"use_reentrant": False},
        "seed": 1,
    }
    assert with_known_checkpointing_names(kwargs, Before523) == {
        "gradient_checkpointing": True,
        "gradient_checkpointing_kwargs": {"use_reentrant": False},
        "seed": 1,
    }
    assert with_known_checkpointing_names(kwargs, Since523) == kwargs
