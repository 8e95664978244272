"""Trainer settings from the config: the trl SFTConfig (pure), the step count, and the environment
variables the Hub libraries and wandb read."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ft.base.errors import FtError
from ft.config.schema import DistributedSettings, FtConfig, LoggingSettings, TrainingSettings
from ft.data.packing import varlen_attention
from ft.models.precision import Precision

if TYPE_CHECKING:
    from trl import SFTConfig


def world_size_from_env() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process_from_env() -> bool:
    """Rank 0 before torch.distributed is set up (torchrun / accelerate set RANK)."""
    return int(os.environ.get("RANK", "0")) == 0


def steps_per_epoch(cfg: TrainingSettings, train_rows: int, world_size: int = 1) -> int:
    rows_per_step = cfg.micro_batch_size * cfg.gradient_accumulation_steps * world_size
    return max(1, math.ceil(train_rows / rows_per_step))


def planned_steps(cfg: TrainingSettings, train_rows: int, world_size: int = 1) -> int:
    if cfg.max_steps:
        return cfg.max_steps
    return max(1, math.ceil(cfg.num_epochs * steps_per_epoch(cfg, train_rows, world_size)))


def report_to(cfg: LoggingSettings) -> list[str]:
    targets = []
    if cfg.use_tensorboard:
        targets.append("tensorboard")
    if cfg.wandb_project and cfg.wandb_mode != "disabled":
        import importlib.util

        if importlib.util.find_spec("wandb") is None:
            raise FtError(
                "wandb_project is set but wandb is not installed",
                hint="pip install wandb, or remove wandb_project",
            )
        targets.append("wandb")
    return targets


def _eval_settings(cfg: TrainingSettings, has_eval: bool, per_epoch: int) -> dict[str, Any]:
    if not has_eval:
        if cfg.early_stopping_patience:
            raise FtError(
                "early_stopping_patience needs an eval split",
                hint="set val_set_size or test_datasets, or remove early_stopping_patience",
            )
        return {"eval_strategy": "no"}
    if cfg.eval_steps is not None:
        every: float = cfg.eval_steps
    elif cfg.evals_per_epoch:
        every = max(1, per_epoch // cfg.evals_per_epoch)
    else:
        every = per_epoch
    settings: dict[str, Any] = {
        "eval_strategy": "steps",
        "eval_steps": every,
        "per_device_eval_batch_size": cfg.eval_batch_size or cfg.micro_batch_size,
    }
    if cfg.early_stopping_patience:
        settings.update(metric_for_best_model="eval_loss", greater_is_better=False)
    return settings


def _save_settings(cfg: TrainingSettings, per_epoch: int) -> dict[str, Any]:
    if cfg.save_steps is not None:
        every: float = cfg.save_steps
    elif cfg.saves_per_epoch:
        every = max(1, per_epoch // cfg.saves_per_epoch)
    else:
        every = per_epoch
    # "steps" also saves at the last step, so a finished run always has a checkpoint to resume from.
    return {"save_strategy": "steps", "save_steps": every, "save_total_limit": cfg.save_total_limit}


def _optimizer_settings(cfg: TrainingSettings) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "optim": cfg.optimizer,
        "learning_rate": cfg.learning_rate,
        "lr_scheduler_type": cfg.lr_scheduler,
        "weight_decay": cfg.weight_decay,
        "max_grad_norm": cfg.max_grad_norm,
        # transformers 5: warmup_steps takes a ratio (float < 1) or a step count.
        "warmup_steps": cfg.warmup_ratio if cfg.warmup_ratio is not None else (cfg.warmup_steps or 0),
    }
    for key in ("adam_beta1", "adam_beta2", "adam_epsilon"):
        value = getattr(cfg, key)
        if value is not None:
            settings[key] = value
    return settings


def _distributed_settings(cfg: DistributedSettings) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    if cfg.deepspeed:
        settings["deepspeed"] = cfg.deepspeed
    if cfg.fsdp:
        settings["fsdp"] = " ".join(cfg.fsdp)
        if cfg.fsdp_config:
            settings["fsdp_config"] = dict(cfg.fsdp_config)
    return settings


def sft_config_kwargs(
    cfg: FtConfig,
    precision: Precision,
    run_dir: Path,
    *,
    train_rows: int,
    has_eval: bool,
    world_size: int = 1,
) -> dict[str, Any]:
    """The SFTConfig arguments as a plain dict (what `build_sft_config` passes; easy to test)."""
    per_epoch = steps_per_epoch(cfg, train_rows, world_size)
    kwargs: dict[str, Any] = {
        "output_dir": str(run_dir),
        "per_device_train_batch_size": cfg.micro_batch_size,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        "num_train_epochs": cfg.num_epochs,
        "max_steps": cfg.max_steps or -1,
        "seed": cfg.seed,
        "data_seed": cfg.seed,
        # trl defaults to bf16=True and gradient checkpointing on: always say what we mean.
        "bf16": precision.bf16,
        "fp16": precision.fp16,
        "use_cpu": precision.use_cpu,
        # transformers 5.23 renamed gradient_checkpointing to activation_checkpointing.
        "activation_checkpointing": cfg.gradient_checkpointing,
        "activation_checkpointing_kwargs": {"use_reentrant": False} if cfg.gradient_checkpointing else None,
        "logging_strategy": "steps",
        "logging_steps": cfg.logging_steps,
        "report_to": report_to(cfg),
        "run_name": cfg.wandb_name,
        "disable_tqdm": True,
        "log_level": "warning",
        # Rows are already tokenized, masked and (optionally) packed by ft.data.pipeline: trl must not redo it.
        "dataset_kwargs": {"skip_prepare_dataset": True},
        "packing": False,
        # Packed rows carry seq_lengths. With flash attention, trl's padding-free collation turns
        # them into restarting position_ids (varlen kernels); otherwise ft's PackedRowsCollator
        # does it per row (see ft.data.packing). trl refuses max_length with padding-free (it could not
        # enforce it); ft.data.pipeline has already cut rows to sequence_len.
        "padding_free": cfg.sample_packing and varlen_attention(cfg.attn_implementation),
        "max_length": None if cfg.sample_packing else cfg.sequence_len,
        "pad_to_multiple_of": cfg.sequence_len
        if cfg.pad_to_sequence_len and not cfg.sample_packing
        else None,
        "train_sampling_strategy": "group_by_length" if cfg.group_by_length else "random",
        "neftune_noise_alpha": cfg.neftune_noise_alpha,
        "ddp_find_unused_parameters": False if cfg.adapter else None,
        **_optimizer_settings(cfg),
        **_eval_settings(cfg, has_eval, per_epoch),
        **_save_settings(cfg, per_epoch),
        **_distributed_settings(cfg),
    }
    if cfg.tf32 is not None:
        kwargs["tf32"] = cfg.tf32
    return kwargs


def build_sft_config(
    cfg: FtConfig,
    precision: Precision,
    run_dir: Path,
    *,
    train_rows: int,
    has_eval: bool,
    world_size: int = 1,
) -> SFTConfig:
    from trl import SFTConfig

    kwargs = sft_config_kwargs(
        cfg, precision, run_dir, train_rows=train_rows, has_eval=has_eval, world_size=world_size
    )
    try:
        return SFTConfig(**with_known_checkpointing_names(kwargs, SFTConfig))
    except ValueError as err:
        raise FtError(f"training settings rejected by transformers/trl: {err}") from err


def with_known_checkpointing_names(kwargs: dict[str, Any], config_class: Any) -> dict[str, Any]:
    """transformers 5.23 renamed `gradient_checkpointing(_kwargs)` to `activation_checkpointing(_kwargs)`;
    earlier 5.x releases (5.17 on the GPU machine of bench/gpu) know only the old names."""
    import dataclasses

    known = {field.name for field in dataclasses.fields(config_class)}
    if "activation_checkpointing" in known:
        return kwargs
    renamed = {
        "activation_checkpointing": "gradient_checkpointing",
        "activation_checkpointing_kwargs": "gradient_checkpointing_kwargs",
    }
    return {renamed.get(key, key): value for key, value in kwargs.items()}


# ---------------------------------------------------------------------------------------------
# The process environment


def set_wandb_env(cfg: LoggingSettings) -> None:
    """transformers' WandbCallback reads its settings from the environment."""
    mapping = {
        "WANDB_PROJECT": cfg.wandb_project,
        "WANDB_ENTITY": cfg.wandb_entity,
        "WANDB_RUN_ID": cfg.wandb_run_id,
        "WANDB_MODE": cfg.wandb_mode,
        "WANDB_WATCH": cfg.wandb_watch,
        "WANDB_LOG_MODEL": cfg.wandb_log_model,
    }
    for name, value in mapping.items():
        if value:
            os.environ.setdefault(name, value)
