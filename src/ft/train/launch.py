"""What `accelerate launch` asked this run for (FSDP, DeepSpeed), checked against what it will get,
before any weights load.

accelerate passes its config file to the processes it starts as environment variables
(`ACCELERATE_USE_FSDP`, `FSDP_STATE_DICT_TYPE`, `ACCELERATE_USE_DEEPSPEED`, ...); a run config can ask
for the same with the `fsdp` / `fsdp_config` / `deepspeed` keys. Two outcomes would otherwise be silent:
- on a machine without CUDA, accelerate 1.15 shards with neither: it builds a MULTI_CPU (DDP over
  gloo) state for a CPU run and sets FSDP only for GPU-like device types, DeepSpeed only `if not cpu`
  (accelerate/state.py), so the processes train data-parallel, each holding the whole model;
- with `fsdp_state_dict_type: SHARDED_STATE_DICT`, transformers' `Trainer.save_model` writes no
  model at all (it saves only for FULL_STATE_DICT), so the run folder would end without its adapter
  or weights, after the whole run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ft.base.errors import FtError
from ft.config.schema import DistributedSettings


def _flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in ("1", "true", "yes")


def fsdp_requested(cfg: DistributedSettings, env: Mapping[str, str]) -> bool:
    return _flag(env, "ACCELERATE_USE_FSDP") or bool(cfg.fsdp)


def deepspeed_requested(cfg: DistributedSettings, env: Mapping[str, str]) -> bool:
    return _flag(env, "ACCELERATE_USE_DEEPSPEED") or bool(cfg.deepspeed)


def fsdp_state_dict_type(cfg: DistributedSettings, env: Mapping[str, str]) -> str:
    """The state dict type the trainer will use: the run config's fsdp_config (with or without
    axolotl's `fsdp_` prefix; transformers' default FULL_STATE_DICT), else accelerate's variable,
    else accelerate's plugin default: SHARDED_STATE_DICT for FSDP2, FULL_STATE_DICT for FSDP1."""
    if cfg.fsdp:
        settings: Mapping[str, Any] = cfg.fsdp_config or {}
        value = settings.get("fsdp_state_dict_type") or settings.get("state_dict_type") or "FULL_STATE_DICT"
        return str(value).upper()
    if env.get("FSDP_STATE_DICT_TYPE"):
        return env["FSDP_STATE_DICT_TYPE"].upper()
    return "SHARDED_STATE_DICT" if env.get("FSDP_VERSION", "1").strip() == "2" else "FULL_STATE_DICT"


def check_launch(cfg: DistributedSettings, use_cpu: bool, env: Mapping[str, str]) -> list[str]:
    """Notes for the log; raises FtError for a setting under which the run would save no weights."""
    fsdp = fsdp_requested(cfg, env)
    if fsdp and fsdp_state_dict_type(cfg, env) == "SHARDED_STATE_DICT":
        raise FtError(
            "fsdp_state_dict_type: SHARDED_STATE_DICT: transformers' Trainer saves no model for a sharded "
            "state dict, so the run folder would end without its adapter or weights",
            hint="set fsdp_state_dict_type: FULL_STATE_DICT in the accelerate config (the shards are "
            "gathered on rank 0 when saving; configs/accelerate/fsdp.yaml does); with fsdp_version: 2 "
            "accelerate's default is SHARDED_STATE_DICT",
        )
    sharding = "FSDP" if fsdp else "DeepSpeed" if deepspeed_requested(cfg, env) else None
    if sharding is None or not use_cpu:
        return []
    processes = env.get("WORLD_SIZE", "1")
    return [
        f"{sharding} asked for, but accelerate shards only on GPUs: on this machine without CUDA the "
        f"{processes} process(es) train data-parallel (DDP over gloo), each holding the whole model"
    ]
