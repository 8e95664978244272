"""axolotl's config keys that ft does not hold under the same name, so that an axolotl config loads.

Before validation, `translate_axolotl` sorts every key that is not an ft field:
- left unset (empty, null, false): dropped without a word, as axolotl itself reads it;
- renamed: mapped to ft's key with a note (`flash_attention: true` -> `attn_implementation`);
- without effect in ft (`strict`, `debug`, `local_rank`, ...): dropped, with a note when set;
- known to axolotl but not supported: a problem line saying so and what to do;
- anything else is left for the schema, which reports it as an unknown key (with a did-you-mean).

An empty value of an ft field that does not take null (`gradient_checkpointing:` in many axolotl
examples) also means "the default" here. The key lists come from axolotl's config reference
(docs/config.qmd) and schema (src/axolotl/utils/schemas/*.py), 2023-2025.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from ft.base.redact import redact
from ft.config.schema import DatasetSettings, FtConfig

# ---------------------------------------------------------------------------------------------
# Renamed keys: the value maps to ft keys (a function of the value), with a note.

Mapper = Callable[[Any], dict[str, Any]]


def _to(key: str, value: Any = None) -> Mapper:
    """Map to `key`, with `value` when given, else with the axolotl value as it is."""
    return lambda given: {key: given if value is None else value}


RENAMED: dict[str, Mapper] = {
    "flash_attention": _to("attn_implementation", "flash_attention_2"),
    "sdp_attention": _to("attn_implementation", "sdpa"),
    "eager_attention": _to("attn_implementation", "eager"),
    "flex_attention": _to("attn_implementation", "flex_attention"),
    "noisy_embedding_alpha": _to("neftune_noise_alpha"),
    "revision_of_model": _to("revision"),
    "model_revision": _to("revision"),
    "type_of_model": _to("model_type"),
    # axolotl's old packing key: pack up to this many tokens.
    "max_packed_sequence_len": lambda n: {"sequence_len": n, "sample_packing": True},
}

DATASET_RENAMED: dict[str, Callable[[Any, Mapping[str, Any]], dict[str, Any]]] = {
    # axolotl's deprecated per-turn keys, now message_property_mappings in both.
    "message_field_role": lambda v, ds: {"message_property_mappings": {**_mappings(ds), "role": v}},
    "message_field_content": lambda v, ds: {"message_property_mappings": {**_mappings(ds), "content": v}},
}

VALUE_RENAMED: dict[str, dict[str, str]] = {
    # axolotl's template names for the templates ft has.
    "chat_template": {"phi_3": "phi3", "llama2": "llama2_chat"},
    # axolotl removed `sharegpt` in favour of `chat_template`; ft reads ShareGPT turns there.
    "type": {"sharegpt": "chat_template", "sharegpt:chat": "chat_template"},
}


def _mappings(dataset: Mapping[str, Any]) -> dict[str, Any]:
    current = dataset.get("message_property_mappings")
    return dict(current) if isinstance(current, Mapping) else {"role": "role", "content": "content"}


# ---------------------------------------------------------------------------------------------
# Keys without effect in ft: dropped; a note says why when the key is set.

IGNORED: dict[str, str] = {
    "strict": "ft always rejects unknown keys",
    "debug": "use FT_DEBUG=1 for tracebacks",
    "local_rank": "set by the launcher (accelerate, torchrun)",
    "is_falcon_derived_model": "ft reads the architecture from the model",
    "is_llama_derived_model": "ft reads the architecture from the model",
    "is_mistral_derived_model": "ft reads the architecture from the model",
    "is_qwen_derived_model": "ft reads the architecture from the model",
    "save_safetensors": "ft always saves safetensors",
    "tokenizer_legacy": "ft uses the tokenizer's own setting",
    "tokenizer_save_jinja_files": "ft saves the chat template inside the tokenizer config",
    "resize_token_embeddings_to_32x": "ft resizes the embeddings only when tokens are added",
    "xformers_attention": "choose a kernel with attn_implementation",
    "flash_attn_cross_entropy": "a kernel option of axolotl's own patches",
    "flash_attn_rms_norm": "a kernel option of axolotl's own patches",
    "flash_attn_fuse_qkv": "a kernel option of axolotl's own patches",
    "flash_attn_fuse_mlp": "a kernel option of axolotl's own patches",
    "flash_optimum": "a kernel option of axolotl's own patches",
    "eval_table_size": "a W&B prediction table of axolotl's",
    "eval_max_new_tokens": "a W&B prediction table of axolotl's",
    "eval_table_max_new_tokens": "a W&B prediction table of axolotl's",
    "eval_sample_packing": "ft packs eval data as it packs training data",
    "sample_packing_eff_est": "ft measures packing efficiency itself",
    "sample_packing_group_size": "a tuning knob of axolotl's packer",
    "sample_packing_bin_size": "a tuning knob of axolotl's packer",
    "total_num_tokens": "ft counts tokens itself",
    "dataset_processes": "ft tokenizes in one process",
    "dataset_num_proc": "ft tokenizes in one process",
    "dataset_keep_in_memory": "ft keeps the tokenized data on disk in dataset_prepared_path",
    "dataloader_num_workers": "ft uses the trainer's default",
    "dataloader_pin_memory": "ft uses the trainer's default",
    "dataloader_prefetch_factor": "ft uses the trainer's default",
    "low_cpu_mem_usage": "ft always loads with low memory use",
    "device_map": "ft places the model itself (one device per process)",
    "ddp_timeout": "configure the launcher (accelerate) instead",
    "ddp_bucket_cap_mb": "configure the launcher (accelerate) instead",
    "ddp_broadcast_buffers": "configure the launcher (accelerate) instead",
    "ddp_find_unused_parameters": "configure the launcher (accelerate) instead",
    "include_tokens_per_second": "ft reports tokens per second",
    "hf_use_auth_token": "ft reads HF_TOKEN from the environment",
    "loss_watchdog_threshold": "not implemented in ft; watch the loss curve",
    "loss_watchdog_patience": "not implemented in ft; watch the loss curve",
    "gc_steps": "not needed by ft",
    "bfloat16": "ft picks the compute dtype from bf16 / fp16",
    "float16": "ft picks the compute dtype from bf16 / fp16",
    "float32": "ft picks the compute dtype from bf16 / fp16",
    "save_first_step": "ft saves at save_steps",
    "skip_prepare_dataset": "ft prepares data on every run (cached by fingerprint)",
    "torch_compile": "ft does not compile the model",
    "torch_compile_backend": "ft does not compile the model",
    "torch_compile_mode": "ft does not compile the model",
}

# Keys whose value equals what ft always does: accepted silently; any other value is unsupported.
SAME_AS_FT: dict[str, tuple[Any, ...]] = {
    "gradient_checkpointing_kwargs": ({"use_reentrant": False},),
    "remove_unused_columns": (False,),
}

# ---------------------------------------------------------------------------------------------
# Known axolotl keys that ft does not support: the problem says so, and what to do.

SFT_ONLY = "ft does supervised fine-tuning only; use axolotl or trl for preference or RL training"
KERNELS = "ft uses peft's standard LoRA layers; remove it"
DISTRIBUTED = "ft trains on one node through accelerate (DeepSpeed or FSDP via deepspeed / fsdp_config)"
LOGGERS = "ft logs to TensorBoard (use_tensorboard) or W&B (wandb_*) only"

UNSUPPORTED: dict[str, str] = {
    **dict.fromkeys(
        (
            "rl",
            "rl_beta",
            "trl",
            "vllm",
            "reward_model",
            "process_reward_model",
            "num_labels",
            "max_prompt_len",
        ),
        SFT_ONLY,
    ),
    **dict.fromkeys(
        ("lora_mlp_kernel", "lora_qkv_kernel", "lora_o_kernel", "cut_cross_entropy", "use_kernels"), KERNELS
    ),
    **dict.fromkeys(
        (
            "sequence_parallel_degree",
            "context_parallel_size",
            "tensor_parallel_size",
            "dp_shard_size",
            "heads_k_stride",
            "ring_attn_func",
            "fsdp_version",
            "fsdp_final_state_dict_type",
            "qlora_sharded_model_loading",
            "use_ray",
            "accelerator_config",
        ),
        DISTRIBUTED,
    ),
    **dict.fromkeys(("use_comet", "use_mlflow", "hf_mlflow_log_artifacts"), LOGGERS),
    "s2_attention": "shifted-sparse attention is not available; use attn_implementation",
    "lora_on_cpu": "ft merges on the CPU with `ft merge`; remove it",
    "lora_target_parameters": "use lora_target_modules",
    "peft": "set LoRA options with the lora_* and peft_use_* keys",
    "peft_layers_to_transform": "adapt chosen layers with lora_target_modules",
    "peft_layers_pattern": "adapt chosen layers with lora_target_modules",
    "peft_layer_replication": "remove it",
    "peft_init_lora_weights": "ft uses peft's default initialisation",
    "peft_trainable_token_indices": "train embeddings with lora_modules_to_save",
    "loraplus_lr_ratio": "LoRA+ is not available; remove it",
    "loraplus_lr_embedding": "LoRA+ is not available; remove it",
    "relora": "ReLoRA is not available; remove it",
    "gptq": "a GPTQ base cannot be loaded; use load_in_4bit with an unquantized base",
    "qat": "quantization-aware training is not available",
    "quantization": "post-training quantization is not available; quantize the merged model separately",
    "fp8": "fp8 training is not available; use bf16 or fp16",
    "merge_lora": "merge with `ft merge RUN_DIR` after training",
    "unfrozen_parameters": "ft trains LoRA adapters and lora_modules_to_save only",
    "model_config": "model config overrides are not available",
    "overrides_of_model_config": "model config overrides are not available",
    "model_kwargs": "model loading overrides are not available",
    "overrides_of_model_kwargs": "model loading overrides are not available",
    "rope_scaling": "model config overrides are not available",
    "random_init_weights": "ft fine-tunes pretrained weights",
    "pretraining_dataset": "streaming pretraining is not available; use datasets with type: completion",
    "pretraining_sample_concatenation": "streaming pretraining is not available",
    "curriculum_sampling": "ft shuffles; set shuffle_merged_datasets: false to keep the data order",
    "sample_packing_sequentially": "ft packs by best fit",
    "multipack_real_batches": "ft packs by best fit",
    "batch_flattening": "use sample_packing (padding-free) instead",
    "plugins": "ft has no plugins",
    "auto_resume_from_checkpoints": "use `ft train --resume`",
    "batch_size": "set micro_batch_size and gradient_accumulation_steps",
    "auto_find_batch_size": "set micro_batch_size; `ft plan` estimates what fits",
    "eval_strategy": "use eval_steps or evals_per_epoch",
    "evaluation_strategy": "use eval_steps or evals_per_epoch",
    "save_strategy": "use save_steps or saves_per_epoch",
    "save_only_model": "ft saves optimizer state so that --resume works",
    "load_best_model_at_end": "remove it; pick a checkpoint from the run folder",
    "metric_for_best_model": "remove it",
    "greater_is_better": "remove it",
    "do_causal_lm_eval": "use `ft eval`",
    "eval_causal_lm_metrics": "use `ft eval`",
    "do_bench_eval": "use `ft eval`",
    "bench_dataset": "use `ft eval`",
    "generate_samples": "use `ft eval` or `ft generate`",
    "profiler_steps": "remove it",
    "lr_scheduler_kwargs": "use one of the named lr_scheduler values",
    "lr_quadratic_warmup": "use one of the named lr_scheduler values",
    "cosine_min_lr_ratio": "use one of the named lr_scheduler values",
    "cosine_constant_lr_ratio": "use one of the named lr_scheduler values",
    "lr_div_factor": "use one of the named lr_scheduler values",
    "lr_groups": "one learning rate for all trained parameters",
    "embedding_lr": "one learning rate for all trained parameters",
    "embedding_lr_scale": "one learning rate for all trained parameters",
    "optim_args": "set adam_beta1 / adam_beta2 / adam_epsilon",
    "optim_target_modules": "GaLore-style optimizers are not available",
    "torchdistx_path": "adamw_anyprecision is not available",
    "adam_beta3": "CAME is not available",
    "adam_epsilon2": "CAME is not available",
    "chat_template_jinja": "name a template in chat_template, or tokenizer_default for the tokenizer's own",
    "default_system_message": "set system_prompt on the dataset",
    "eot_tokens": "ft trains and stops at the template's own terminator",
    "added_tokens_overrides": "add tokens with `tokens` / special_tokens",
    "fix_untrained_tokens": "remove it",
    "shrink_embeddings": "remove it",
    "mean_resizing_embeddings": "remove it",
    "embeddings_skip_upcast": "remove it",
    "push_dataset_to_hub": "ft does not push to the Hub",
    "dataset_shard_num": "take a slice with `split`, e.g. train[:10%]",
    "dataset_shard_idx": "take a slice with `split`, e.g. train[:10%]",
    "dataset_exact_deduplication": "deduplicate the data beforehand",
    "min_sample_len": "ft drops empty answers; filter short rows beforehand",
    "use_pose": "PoSE is not available",
    "gpu_memory_limit": "remove it",
    "max_memory": "remove it",
    "processor_type": "ft fine-tunes text-only causal language models",
    "image_size": "ft fine-tunes text-only causal language models",
    "image_resize_algorithm": "ft fine-tunes text-only causal language models",
    "tokenizer_use_mistral_common": "ft loads the tokenizer with transformers",
    "cls_model_config": "ft reads the model config with AutoConfig",
    "model_quantization_config": "use load_in_4bit / load_in_8bit",
    "model_quantization_config_kwargs": "use bnb_config_kwargs",
    "inference": "use `ft chat` or `ft generate`",
    "special_tokens_to_add": "use `tokens`",
}

# Families of keys known by prefix (each has many members in axolotl's schema).
UNSUPPORTED_PREFIXES: dict[str, str] = {
    "dpo_": SFT_ONLY,
    "rpo_": SFT_ONLY,
    "orpo_": SFT_ONLY,
    "kto_": SFT_ONLY,
    "simpo_": SFT_ONLY,
    "cpo_": SFT_ONLY,
    "grpo_": SFT_ONLY,
    "kd_": "knowledge distillation is not available",
    "unsloth_": KERNELS,
    "liger_": KERNELS,
    "relora_": "ReLoRA is not available; remove it",
    "lisa_": "LISA layer sampling is not available; remove it",
    "pose_": "PoSE is not available",
    "ray_": DISTRIBUTED,
    "comet_": LOGGERS,
    "mlflow_": LOGGERS,
    "gradio_": "use `ft chat`",
    "fsdp_": "put FSDP settings in fsdp_config (passed to accelerate)",
    "activation_offloading": "use gradient_checkpointing",
}

DATASET_UNSUPPORTED: dict[str, str] = {
    "shards": "take a slice with `split`, e.g. train[:10%]",
    "shards_idx": "take a slice with `split`, e.g. train[:10%]",
    "preprocess_shards": "remove it",
    "conversation": "use type: chat_template with a chat_template name",
    "chat_template_jinja": "name a template in chat_template, or tokenizer_default",
    "drop_system_message": "remove system turns from the data beforehand",
    "message_field_training": "ft trains every assistant turn",
    "message_field_training_detail": "ft trains every assistant turn",
    "roles_to_train": "ft trains the assistant turns only",
    "train_on_eos": "ft trains the terminator of every assistant turn (turn)",
    "train_on_eot": "ft trains the terminator of every assistant turn",
    "split_thinking": "reasoning traces are not split",
    "field_thinking": "reasoning traces are not split",
    "template_thinking_key": "reasoning traces are not split",
    "field_tools": "tool definitions are not rendered",
    "field_human": "use type: chat_template with roles",
    "field_model": "use type: chat_template with roles",
    "input_transform": "transform the data beforehand",
    "input_format": "use format / no_input_format",
    "logprobs_field": "knowledge distillation is not available",
    "temperature": "knowledge distillation is not available",
    "trust_remote_code": "ft never runs dataset loading scripts",
    "system_format": "put the system prompt in `format` with {system}",
}

DATASET_SAME_AS_FT: dict[str, tuple[Any, ...]] = {
    "roles_to_train": (["assistant"],),
    "train_on_eos": ("turn",),
    "system_format": ("{system}",),
}

# axolotl's user-defined prompt (`type:` given as a mapping) holds these dataset keys.
USER_DEFINED_TYPE_KEYS = (
    "system_prompt",
    "system_format",
    "field_system",
    "field_instruction",
    "field_input",
    "field_output",
    "format",
    "no_input_format",
    "field",
)


# ---------------------------------------------------------------------------------------------


@dataclass
class Translation:
    data: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _show(value: Any) -> str:
    """A value as YAML would write it in flow style: true, null, "text", [a, b]."""
    return json.dumps(value, default=str)


def is_unset(value: Any) -> bool:
    """axolotl reads an empty value, null or false as "not set"."""
    return value is None or value is False or value == "" or value == [] or value == {}


def unsupported_reason(key: str) -> str | None:
    if key in UNSUPPORTED:
        return UNSUPPORTED[key]
    return next((why for prefix, why in UNSUPPORTED_PREFIXES.items() if key.startswith(prefix)), None)


def is_known(key: str) -> bool:
    """A key of axolotl's that ft maps, ignores or reports as unsupported."""
    return key in RENAMED or key in IGNORED or key in SAME_AS_FT or unsupported_reason(key) is not None


def translate_axolotl(data: Mapping[str, Any]) -> Translation:
    """ft's view of a raw config mapping: axolotl keys mapped or dropped, with notes and problems."""
    out = Translation({})
    # ft's own keys first, so that a renamed axolotl key can see what it would overwrite.
    for key, value in data.items():
        if key in FtConfig.model_fields:
            _keep_field(out.data, FtConfig, key, value)
    for key, value in data.items():
        if key not in FtConfig.model_fields and not (is_known(key) and is_unset(value)):
            _translate_top_key(out, key, value)
    _rename_value(out, "", "chat_template")
    for list_key in ("datasets", "test_datasets"):
        items = out.data.get(list_key)
        if isinstance(items, list):
            out.data[list_key] = [
                _translate_dataset(out, f"{list_key}[{i}]", item) if isinstance(item, Mapping) else item
                for i, item in enumerate(items)
            ]
    return out


def _translate_top_key(out: Translation, key: str, value: Any) -> None:
    shown = f"{key}: {_show(redact(value, key))}"
    if key in RENAMED:
        mapped = RENAMED[key](value)
        for target, new in mapped.items():
            old = out.data.get(target)
            if target in out.data and old is not None and old != new:
                out.problems.append(
                    f"{key}: means {target}: {_show(new)}, but {target} is {_show(old)}: keep one"
                )
                return
        out.data.update(mapped)
        read_as = ", ".join(f"{k}: {_show(v)}" for k, v in mapped.items())
        out.notes.append(f"{shown} (axolotl) read as {read_as}")
    elif key in IGNORED:
        out.notes.append(f"{shown} ignored: {IGNORED[key]}")
    elif key in SAME_AS_FT and value in SAME_AS_FT[key]:
        pass
    elif (reason := unsupported_reason(key)) is not None or key in SAME_AS_FT:
        out.problems.append(f"{key}: axolotl's {key} is not supported by ft: {reason or 'remove it'}")
    else:
        out.data[key] = value  # unknown: the schema reports it, with a did-you-mean


def _translate_dataset(out: Translation, where: str, item: Mapping[str, Any]) -> dict[str, Any]:
    kind = item.get("type")
    if isinstance(kind, Mapping):
        item = _flatten_user_defined_type(out, where, item, kind)
    dataset: dict[str, Any] = {}
    for key, value in item.items():
        if key in DatasetSettings.model_fields:
            _keep_field(dataset, DatasetSettings, key, value)
    for key, value in item.items():
        known = key in DATASET_RENAMED or key in DATASET_UNSUPPORTED
        if key in DatasetSettings.model_fields or (known and is_unset(value)):
            continue
        if value in DATASET_SAME_AS_FT.get(key, ()):
            continue
        if key in DATASET_RENAMED:
            dataset.update(DATASET_RENAMED[key](value, dataset))
            out.notes.append(f"{where}.{key}: {_show(value)} (axolotl) read as message_property_mappings")
        elif key in DATASET_UNSUPPORTED:
            reason = DATASET_UNSUPPORTED[key]
            out.problems.append(f"{where}.{key}: axolotl's {key} is not supported by ft: {reason}")
        else:
            dataset[key] = value  # unknown: the schema reports it
    if isinstance(dataset.get("type"), str) and dataset["type"].startswith("sharegpt"):
        # ShareGPT turns are {from: human, value: ...}: say so unless the config already does.
        dataset.setdefault("message_property_mappings", {"role": "from", "content": "value"})
    _rename_value(out, where, "type", dataset)
    _rename_value(out, where, "chat_template", dataset)
    return dataset


def _flatten_user_defined_type(
    out: Translation, where: str, item: Mapping[str, Any], kind: Mapping[str, Any]
) -> dict[str, Any]:
    """axolotl's `type: {format: ..., field_instruction: ...}` becomes keys of the dataset."""
    flat = {k: v for k, v in item.items() if k != "type"}
    unknown = [k for k in kind if k not in USER_DEFINED_TYPE_KEYS]
    if unknown:
        out.problems.append(
            f"{where}.type: unknown keys {unknown} in a custom prompt: use "
            + ", ".join(USER_DEFINED_TYPE_KEYS)
        )
    flat.update({k: v for k, v in kind.items() if k in USER_DEFINED_TYPE_KEYS})
    if not flat.get("format"):
        out.problems.append(
            f"{where}.type: a custom prompt needs `format`, e.g. 'User: {{instruction}}\\nAssistant:'"
        )
    else:
        out.notes.append(f"{where}.type: axolotl's custom prompt read as the dataset's format / field_* keys")
    return flat


def _rename_value(out: Translation, where: str, key: str, target: dict[str, Any] | None = None) -> None:
    holder = out.data if target is None else target
    value = holder.get(key)
    new = VALUE_RENAMED[key].get(value) if isinstance(value, str) else None
    if new is not None:
        holder[key] = new
        path = f"{where}.{key}" if where else key
        out.notes.append(f"{path}: {value} (axolotl) read as {new}")


# ---------------------------------------------------------------------------------------------
# Empty values of ft's own fields


def _keep_field(target: dict[str, Any], model: type[BaseModel], key: str, value: Any) -> None:
    """Keep `value`, except an empty one that the field cannot hold: axolotl means the default."""
    annotation = model.model_fields[key].annotation
    if value == "" and not _accepts(annotation, str):
        value = None
    if value is False and not _accepts(annotation, bool):
        value = None
    if value is None and not _accepts(annotation, type(None)):
        return
    target[key] = value


def _accepts(annotation: Any, kind: type) -> bool:
    """Whether a field's type admits values of `kind` (None, bool, str): walks unions and Optional."""
    if annotation is kind:
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_accepts(arg, kind) for arg in typing.get_args(annotation))
    if typing.get_origin(annotation) is typing.Literal:
        return any(isinstance(arg, kind) for arg in typing.get_args(annotation))
    return annotation is Any
