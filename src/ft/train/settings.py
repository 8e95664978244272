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
        _need("wandb", "wandb_project is set", "pip install wandb, or remove wandb_project")
        targets.append("wandb")
    if cfg.use_mlflow:
        _need("mlflow", "use_mlflow is set", "pip install mlflow-skinny (or mlflow), or remove use_mlflow")
        targets.append("mlflow")
    return targets


def _need(module: str, why: str, hint: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise FtError(f"{why} but {module} is not installed", hint=hint)


# Optimizers of transformers that need a package ft does not install (transformers' own import
# error would come only when training starts, after the model has loaded).
OPTIMIZER_PACKAGES = {
    "adamw_torch_4bit": "torchao",
    "adamw_torch_8bit": "torchao",
    "galore_adamw": "galore_torch",
    "galore_adamw_8bit": "galore_torch",
    "galore_adafactor": "galore_torch",
    "lomo": "lomo_optim",
    "adalomo": "lomo_optim",
    "grokadamw": "grokadamw",
    "schedule_free_radam": "schedulefree",
    "schedule_free_adamw": "schedulefree",
    "schedule_free_sgd": "schedulefree",
    "apollo_adamw": "apollo_torch",
    "stable_adamw": "optimi",
}


def _eval_settings(cfg: TrainingSettings, has_eval: bool, per_epoch: int) -> dict[str, Any]:
    off = cfg.eval_strategy == "no" or cfg.evals_per_epoch == 0
    if not has_eval or off:
        if cfg.early_stopping_patience or cfg.load_best_model_at_end:
            key = "early_stopping_patience" if cfg.early_stopping_patience else "load_best_model_at_end"
            raise FtError(
                f"{key} needs " + ("evaluations, and evaluation is off" if off else "an eval split"),
                hint=f"set val_set_size or test_datasets (and evaluate), or remove {key}",
            )
        return {"eval_strategy": "no"}
    settings: dict[str, Any] = {"per_device_eval_batch_size": cfg.eval_batch_size or cfg.micro_batch_size}
    if cfg.eval_strategy == "epoch":
        settings["eval_strategy"] = "epoch"
    else:
        settings.update(
            eval_strategy="steps", eval_steps=_every(cfg.eval_steps, cfg.evals_per_epoch, per_epoch)
        )
    return settings


def _every(steps: float | None, per_epoch_count: int | None, per_epoch: int) -> float:
    """Steps between two events: `steps` as given, else `per_epoch_count` times an epoch, else once."""
    if steps is not None:
        return steps
    if per_epoch_count:
        return max(1, per_epoch // per_epoch_count)
    return per_epoch


def _best_model_settings(cfg: TrainingSettings) -> dict[str, Any]:
    """Which checkpoint is best, for early stopping and load_best_model_at_end (eval_loss by default)."""
    if not (cfg.early_stopping_patience or cfg.load_best_model_at_end or cfg.save_strategy == "best"):
        return {}
    metric = cfg.metric_for_best_model or "eval_loss"
    greater = cfg.greater_is_better
    if greater is None:
        greater = not metric.removeprefix("eval_").endswith(("loss", "perplexity"))
    return {
        "metric_for_best_model": metric,
        "greater_is_better": greater,
        "load_best_model_at_end": cfg.load_best_model_at_end,
    }


def _save_settings(cfg: TrainingSettings, per_epoch: int) -> dict[str, Any]:
    limit = {"save_total_limit": cfg.save_total_limit}
    if cfg.save_strategy in ("no", "epoch", "best"):
        return {"save_strategy": cfg.save_strategy, **limit}
    if cfg.saves_per_epoch == 0:
        # No checkpoints in the run; the run folder still gets the final adapter.
        return {"save_strategy": "no", **limit}
    every = _every(cfg.save_steps, cfg.saves_per_epoch, per_epoch)
    # "steps" also saves at the last step, so a finished run always has a checkpoint to resume from.
    return {"save_strategy": "steps", "save_steps": every, **limit}


def _optimizer_settings(cfg: TrainingSettings) -> dict[str, Any]:
    package = OPTIMIZER_PACKAGES.get(cfg.optimizer)
    if package:
        _need(
            package,
            f"optimizer {cfg.optimizer} is set",
            f"pip install {package}, or choose another optimizer",
        )
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
    if cfg.optim_args:
        args = cfg.optim_args
        # transformers takes "key=value,key=value"; axolotl also accepts a mapping.
        settings["optim_args"] = (
            args if isinstance(args, str) else ",".join(f"{k}={v}" for k, v in args.items())
        )
    if cfg.lr_scheduler_kwargs:
        settings["lr_scheduler_kwargs"] = dict(cfg.lr_scheduler_kwargs)
    return settings


def _distributed_settings(cfg: DistributedSettings) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    if cfg.deepspeed:
        settings["deepspeed"] = cfg.deepspeed
    if cfg.fsdp or cfg.fsdp_config:
        # axolotl's FSDP2 configs give fsdp_config alone: full sharding with auto-wrapping.
        settings["fsdp"] = " ".join(cfg.fsdp or ["full_shard", "auto_wrap"])
        if cfg.fsdp_config:
            settings["fsdp_config"] = dict(cfg.fsdp_config)
    return settings


def _checkpointing_kwargs(cfg: TrainingSettings) -> dict[str, Any] | None:
    """Gradient checkpointing options: the config's, else non-reentrant (it back-propagates through
    frozen k-bit layers without inputs that require grad)."""
    if not cfg.gradient_checkpointing:
        return None
    return dict(cfg.gradient_checkpointing_kwargs or {"use_reentrant": False})


def _sampling(cfg: FtConfig) -> str:
    if cfg.curriculum_sampling:
        return "sequential"  # the rows in the order of the prepared data
    return "group_by_length" if cfg.group_by_length else "random"


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
        "activation_checkpointing_kwargs": _checkpointing_kwargs(cfg),
        "logging_strategy": "steps",
        "logging_steps": cfg.logging_steps,
        "report_to": report_to(cfg),
        "run_name": cfg.wandb_name or cfg.mlflow_run_name,
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
        "train_sampling_strategy": _sampling(cfg),
        "dataloader_drop_last": cfg.dataloader_drop_last,
        "neftune_noise_alpha": cfg.neftune_noise_alpha,
        # Liger's kernels are Triton (CUDA): on a CPU the run goes without them (run_training notes it).
        "use_liger_kernel": cfg.use_liger_kernel and not precision.use_cpu,
        "ddp_find_unused_parameters": False if cfg.adapter else None,
        **_optimizer_settings(cfg),
        **_eval_settings(cfg, has_eval, per_epoch),
        **_save_settings(cfg, per_epoch),
        **_best_model_settings(cfg),
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


def liger_note(cfg: TrainingSettings) -> str | None:
    """Liger's kernels run on CUDA only; elsewhere the run goes on without them, and says so."""
    if not cfg.use_liger_kernel:
        return None
    import torch

    if not torch.cuda.is_available():
        return "use_liger_kernel (axolotl's liger_* keys): no CUDA device, so trained without Liger's kernels"
    _need("liger_kernel", "use_liger_kernel is set", "pip install liger-kernel, or remove the liger_* keys")
    return None


def set_mlflow_env(cfg: LoggingSettings) -> None:
    """transformers' MLflowCallback reads its settings from the environment."""
    mapping = {
        "MLFLOW_TRACKING_URI": cfg.mlflow_tracking_uri,
        "MLFLOW_EXPERIMENT_NAME": cfg.mlflow_experiment_name,
        "HF_MLFLOW_LOG_ARTIFACTS": "TRUE" if cfg.hf_mlflow_log_artifacts else None,
    }
    if cfg.mlflow_tracking_uri and cfg.mlflow_tracking_uri.startswith("file:"):
        # MLflow 3 refuses a file store unless told: the config asks for one by name.
        mapping["MLFLOW_ALLOW_FILE_STORE"] = "true"
    for name, value in mapping.items():
        if cfg.use_mlflow and value:
            os.environ.setdefault(name, value)


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
