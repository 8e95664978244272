"""What ft does with each of axolotl's config keys: the table behind `translate_axolotl`,
`ft validate --explain` and docs/axolotl-keys.md.

Every key of every axolotl release (src/ft/config/axolotl_keys.json, generated from axolotl's
schema of each release by scripts/axolotl_keys.py) has one status:
- supported: an ft field of the same name and meaning;
- mapped: read as ft keys, with a note (`flash_attention: true` is `attn_implementation`);
- ignored: dropped with a note, because honouring it would not change the trained weights
  (logging details, kernels that compute the same result faster, the Hub without a Hub);
- unsupported: a problem line saying why and what to do; a key that turns on a whole feature ft
  lacks (DPO, reward models, multimodal, distillation, ...) names that feature in one line.
Left unset (empty, null, false, or axolotl's own default), a known key is accepted without a word.
A test checks that every key of the generated list has a status here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from ft.config.rl import RL_REFUSED

KEYS_FILE = Path(__file__).with_name("axolotl_keys.json")

Mapper = Callable[[Any], dict[str, Any]]


def _to(key: str, value: Any = None) -> Mapper:
    """Map to `key`, with `value` when given, else with the axolotl value as it is."""
    return lambda given: {key: given if value is None else value}


def _checkpointing(value: Any) -> dict[str, Any]:
    # axolotl's "offload" / "offload_disk" also move the saved activations off the GPU: memory only.
    return {"gradient_checkpointing": True} if value in ("offload", "offload_disk") else {}


# ---------------------------------------------------------------------------------------------
# Mapped: read as ft keys, with a note.

LIGER_KEYS = (
    "liger_rope",
    "liger_rms_norm",
    "liger_glu_activation",
    "liger_swiglu",
    "liger_layer_norm",
    "liger_cross_entropy",
    "liger_fused_linear_cross_entropy",
    "liger_rms_norm_gated",
)

RENAMED: dict[str, Mapper] = {
    "flash_attention": _to("attn_implementation", "flash_attention_2"),
    "sdp_attention": _to("attn_implementation", "sdpa"),
    "eager_attention": _to("attn_implementation", "eager"),
    "flex_attention": _to("attn_implementation", "flex_attention"),
    "noisy_embedding_alpha": _to("neftune_noise_alpha"),
    "dpo_beta": _to("rl_beta"),  # axolotl's older name
    "adamw_beta1": _to("adam_beta1"),
    "adamw_beta2": _to("adam_beta2"),
    "adamw_epsilon": _to("adam_epsilon"),
    "revision_of_model": _to("revision"),
    "model_revision": _to("revision"),
    "type_of_model": _to("model_type"),
    "evaluation_strategy": _to("eval_strategy"),
    "dataset_num_proc": _to("dataset_processes"),
    "model_config": _to("overrides_of_model_config"),
    # axolotl's 2023 name: it set TrainingArguments' push_to_hub with this repo.
    "push_to_hub_model_id": _to("hub_model_id"),
    # axolotl's old packing key: pack up to this many tokens.
    "max_packed_sequence_len": lambda n: {"sequence_len": n, "sample_packing": True},
    # Liger's Triton kernels compute the same model faster: trl's use_liger_kernel on CUDA.
    **dict.fromkeys(LIGER_KEYS, _to("use_liger_kernel", True)),
}

# Mapped only for some values (the value decides); other values are problems of the target key.
VALUE_MAPPED: dict[str, Callable[[Any], dict[str, Any]]] = {
    "gradient_checkpointing": _checkpointing,
}

# Keys read by code in ft.config.axolotl (the value decides how), with how they are read.
MAPPED_BY_CODE: dict[str, str] = {
    "gradient_checkpointing": 'true / false as in ft; "offload" and "offload_disk" read as true (memory options)',
    "plugins": "the Liger plugin is its liger_* keys; Cut Cross Entropy and Kernels plugins ignored "
    "(speed only), SwanLab and lm-eval ignored (logging, evaluation); any other plugin refused",
    "batch_size": "axolotl's old total batch: gradient_accumulation_steps = batch_size / micro_batch_size "
    "(ignored when gradient_accumulation_steps is set, as in axolotl)",
    "cosine_min_lr_ratio": "read as lr_scheduler: cosine_with_min_lr, lr_scheduler_kwargs: {min_lr_rate: ratio}",
    "fsdp_version": "read as fsdp_config.version",
    "hub_strategy": "end as in ft; every_save, checkpoint and all_checkpoints read as end (the finished "
    "run is pushed once, without the checkpoints on the way)",
    "default_system_message": "the system prompt of legacy ShareGPT datasets (conversation:) without one",
    "tokens": "a list: tokens to add; a mapping (axolotl before v0.3): read as special_tokens",
}
DATASET_MAPPED_BY_CODE: dict[str, str] = {
    "conversation": "legacy ShareGPT: the FastChat template, read as chat_template (chatml, llama3, "
    "llama-2, vicuna_v1.1, zephyr, mistral) with FastChat's default system prompt",
    "type": "ft's types, axolotl's instruction types, sharegpt (read as chat_template), or a custom "
    "prompt mapping (read as format / field_* keys with axolotl's defaults)",
}

DATASET_RENAMED: dict[str, Callable[[Any, Mapping[str, Any]], dict[str, Any]]] = {
    # axolotl's deprecated per-turn keys, now message_property_mappings in both.
    "message_field_role": lambda v, ds: {"message_property_mappings": {**_mappings(ds), "role": v}},
    "message_field_content": lambda v, ds: {"message_property_mappings": {**_mappings(ds), "content": v}},
    # Legacy ShareGPT: the turn's `from` values that mean the user and the assistant.
    "field_human": lambda v, ds: {"roles": {**_roles(ds), "user": [v]}},
    "field_model": lambda v, ds: {"roles": {**_roles(ds), "assistant": [v]}},
    "train_on_split": lambda v, ds: {"split": v},
    "text_column": lambda v, ds: {"field": v},
}


def _mappings(dataset: Mapping[str, Any]) -> dict[str, Any]:
    current = dataset.get("message_property_mappings")
    return dict(current) if isinstance(current, Mapping) else {"role": "role", "content": "content"}


def _roles(dataset: Mapping[str, Any]) -> dict[str, Any]:
    current = dataset.get("roles")
    return dict(current) if isinstance(current, Mapping) else {}


# ---------------------------------------------------------------------------------------------
# Ignored: honouring it would not change the trained weights. Dropped, with a note when set.

SAME_RESULT = "a speed or memory option; ft computes the same result without it"
LOGGER = "metrics go to metrics.jsonl, and to TensorBoard, W&B or MLflow when set"
LAUNCHER = "set by the launcher (accelerate, torchrun)"
NO_HUB = "ft pushes only the finished run folder (hub_model_id), not datasets"
EVAL_ELSEWHERE = "an extra evaluation outside training; use `ft eval` after training"

IGNORED: dict[str, str] = {
    "strict": "ft always rejects unknown keys",
    "debug": "use FT_DEBUG=1 for tracebacks",
    **dict.fromkeys(("local_rank", "world_size", "ddp", "device"), LAUNCHER),
    **dict.fromkeys(
        (
            "is_falcon_derived_model",
            "is_llama_derived_model",
            "is_mistral_derived_model",
            "is_qwen_derived_model",
        ),
        "ft reads the architecture from the model",
    ),
    "save_safetensors": "ft always saves safetensors",
    "tokenizer_legacy": "ft uses the tokenizer's own setting",
    "tokenizer_save_jinja_files": "ft saves the chat template inside the tokenizer config",
    "resize_token_embeddings_to_32x": "ft resizes the embeddings only when tokens are added",
    "xformers_attention": "choose a kernel with attn_implementation",
    "base_model_ignore_patterns": "ft loads the safetensors weights of the model folder",
    **dict.fromkeys(
        (
            "flash_attn_cross_entropy",
            "flash_attn_rms_norm",
            "flash_attn_fuse_qkv",
            "flash_attn_fuse_mlp",
            "flash_attn_d512",
            "flash_optimum",
            "flex_attn_compile_kwargs",
            "fused_attn_kernel",
            "sdpa_varlen",
            "cut_cross_entropy",
            "chunked_cross_entropy",
            "chunked_cross_entropy_num_chunks",
            "lora_mlp_kernel",
            "lora_qkv_kernel",
            "lora_o_kernel",
            "lora_embedding_kernel",
            "use_kernels",
            "tiled_mlp",
            "tiled_mlp_num_shards",
            "tiled_mlp_use_original_mlp",
            "activation_offloading",
            "layer_offloading",
            "gradient_checkpointing_ratio",
            "selective_checkpointing",
            "torch_compile",
            "torch_compile_backend",
            "torch_compile_mode",
            "torch_compile_options",
            "deepcompile",
            "torch_empty_cache_steps",
            "gc_steps",
            "gc_collect_steps",
            "experimental_skip_move_to_device",
            "experts_implementation",
            "moe_grouped_backend",
            "moe_bnb_fast",
            "moe_dequant_chunk_size",
            "use_scattermoe",
            "expert_backend",
            "use_sonicmoe",
            "pad_to_multiple_of",
            "remove_unused_columns",
            "collator_pad_to_longest",
            "low_cpu_mem_usage",
            "dataset_keep_in_memory",
            "dataloader_num_workers",
            "dataloader_pin_memory",
            "dataloader_prefetch_factor",
            "sample_packing_eff_est",
            "sample_packing_group_size",
            "sample_packing_bin_size",
            "sample_packing_mp_start_method",
            "sample_packing_sequentially",
            "eval_sample_packing",
            "preprocess_iterable",
            "streaming",
            "streaming_multipack_buffer_size",
            "num_dataset_shards_to_save",
            "is_preprocess",
            "skip_prepare_dataset",
            "future_timeout",
        ),
        SAME_RESULT,
    ),
    "device_map": "ft places the model itself (one device per process)",
    **dict.fromkeys(
        ("ddp_timeout", "ddp_bucket_cap_mb", "ddp_broadcast_buffers", "ddp_find_unused_parameters"),
        "configure the launcher (accelerate) instead",
    ),
    **dict.fromkeys(
        (
            "include_tokens_per_second",
            "include_tkps",
            "total_num_tokens",
            "total_supervised_tokens",
            "use_wandb",
            "use_comet",
            "use_swanlab",
            "use_trackio",
            "use_otel_metrics",
            "otel_metrics_host",
            "otel_metrics_port",
            "axolotl_config_path",
            "profiler_steps",
            "profiler_steps_start",
            "loss_watchdog_threshold",
            "loss_watchdog_patience",
            "save_name_prefix",
        ),
        LOGGER,
    ),
    "push_dataset_to_hub": NO_HUB,
    "hf_use_auth_token": "ft reads HF_TOKEN from the environment",
    **dict.fromkeys(
        ("bfloat16", "float16", "float32", "bloat16", "torch_dtype"),
        "ft picks the compute dtype from bf16 / fp16",
    ),
    "save_first_step": "ft saves at save_steps",
    "save_only_model": "ft also saves the optimizer state, so that --resume works (more disk, same weights)",
    "eval_table_size": "a W&B prediction table of axolotl's",
    "eval_max_new_tokens": "a W&B prediction table of axolotl's",
    "eval_table_max_new_tokens": "a W&B prediction table of axolotl's",
    "eval_sequence_len": "ft evaluates at sequence_len",
    **dict.fromkeys(
        (
            "do_bench_eval",
            "bench_dataset",
            "bench_split",
            "lm_eval_tasks",
            "lm_eval_batch_size",
            "lm_eval_model",
            "lm_eval_post_train",
            "generate_samples",
            "num_generation_samples",
            "generation_interval",
            "generation_max_new_tokens",
            "generation_max_length",
            "generation_temperature",
            "generation_top_k",
            "generation_top_p",
            "generation_do_sample",
            "generation_prompt_ratio",
            "generation_steps",
        ),
        EVAL_ELSEWHERE,
    ),
    "merge_method": "merge with `ft merge RUN_DIR` after training",
    "inference": "use `ft chat` or `ft generate`",
    "gpu_memory_limit": "ft places the model itself; `ft plan` estimates the memory",
    "max_memory": "ft places the model itself; `ft plan` estimates the memory",
    "peft_autocast_adapter_dtype": "ft keeps the adapter in the compute dtype",
    "lora_out_dir": "ft writes the adapter to output_dir",
}

# Families of ignored keys, by prefix (other trackers, chat UIs).
IGNORED_PREFIXES: dict[str, str] = {
    "comet_": LOGGER,
    "swanlab_": LOGGER,
    "trackio_": LOGGER,
    "gradio_": "a chat UI of axolotl's; use `ft chat`",
}

# Keys whose value equals what ft always does: accepted silently; another value is unsupported.
SAME_AS_FT: dict[str, tuple[Any, ...]] = {
    "mean_resizing_embeddings": (True,),
    # axolotl loads the adapter on the CPU to merge it; `ft merge` always merges on the CPU.
    "lora_on_cpu": (True,),
}

# ---------------------------------------------------------------------------------------------
# Unsupported. A key that turns on a whole feature names it; the other problems of such a
# config (its preference datasets, ...) follow from the feature and are not listed.

RL_KEYS = (
    "ft's preference keys are rl (dpo, ipo, orpo), rl_beta, orpo_alpha, dpo_label_smoothing, "
    "max_prompt_len, precompute_ref_log_probs, ref_model"
)

FEATURES: dict[str, str] = {
    "reward_model": "reward-model training",
    "process_reward_model": "process reward-model training",
    "num_labels": "reward-model training",
    "trl": "online reinforcement learning (trl settings)",
    "vllm": "reinforcement learning with vLLM generation",
    "reward_funcs": "reinforcement learning",
    "center_rewards_coefficient": "reward-model training",
    "importance_weighting": "reinforcement learning",
    "sample_temperature": "reinforcement learning with Hatchery",
    "max_sample_tokens": "reinforcement learning with Hatchery",
    "processor_type": "multimodal (vision) fine-tuning",
    "processor_kwargs": "multimodal (vision) fine-tuning",
    "model_config_type": "multimodal (vision) fine-tuning",
    "freeze_mm_modules": "multimodal (vision) fine-tuning",
    "image_size": "multimodal (vision) fine-tuning",
    "image_resize_algorithm": "multimodal (vision) fine-tuning",
    "role_boundaries": "multimodal (vision) fine-tuning",
    "pretraining_dataset": "streaming pretraining",
    "pretraining_sample_concatenation": "streaming pretraining",
    "pretrain_multipack_attn": "streaming pretraining",
    "pretrain_multipack_buffer_size": "streaming pretraining",
    "kd_trainer": "knowledge distillation",
    "qat": "quantization-aware training",
    "quantization": "post-training quantization",
    "fp8": "fp8 training",
    "fp8_enable_fsdp_float8_all_gather": "fp8 training",
    "gptq": "training on a GPTQ-quantized base",
    "load_4bit": "training on a GPTQ-quantized base",
    "gptq_groupsize": "training on a GPTQ-quantized base",
    "gptq_model_v1": "training on a GPTQ-quantized base",
    "gptq_disable_exllama": "training on a GPTQ-quantized base",
    "model_quantization_config": "quantization configs other than bitsandbytes",
    "model_quantization_config_kwargs": "quantization configs other than bitsandbytes",
    "quantize_moe_experts": "quantized MoE experts",
    "nonexpert_quantization": "per-module quantization",
    "use_onebitllms": "1-bit models",
    "relora": "ReLoRA",
    "diffusion": "diffusion language-model training",
    "mask_token_id": "diffusion language-model training",
    "mask_token_str": "diffusion language-model training",
    "min_mask_ratio": "diffusion language-model training",
    "max_mask_ratio": "diffusion language-model training",
    "noise_schedule": "diffusion language-model training",
    "num_diffusion_steps": "diffusion language-model training",
    "eps": "diffusion language-model training",
    "ebft": RL_REFUSED["ebft"],
    "nemo_gym_enabled": "reinforcement learning with NeMo Gym",
    "hatchery": "reinforcement learning with Hatchery",
    "use_mora": "MoRA adapters",
    "mora": "MoRA adapters",
    "mora_type": "MoRA adapters",
    "llmcompressor": "LLM Compressor sparsification",
    "save_compressed": "LLM Compressor sparsification",
    "recipe": "LLM Compressor sparsification",
    "use_pose": "PoSE context extension",
    "use_ray": "Ray Train",
    "ray_num_workers": "Ray Train",
    "ray_run_name": "Ray Train",
    "resources_per_worker": "Ray Train",
    "unfrozen_parameters": "full training of chosen parameters",
    "train_attn": "full training of chosen parameters",
    "train_mlp": "full training of chosen parameters",
    "train_unembed": "full training of chosen parameters",
    "tokenizer_use_mistral_common": "mistral-common tokenizers",
    "llama4_linearized_experts": "Llama 4 linearized experts",
    "use_dsv4_kernels": "DeepSeek-V4 kernels",
    "use_glm_dsa_kernels": "GLM sparse-attention kernels",
    "dense_mixer": "DenseMixer MoE training",
    "context_parallel_size": "context parallelism",
    "sequence_parallel_degree": "sequence parallelism",
    "heads_k_stride": "sequence parallelism",
    "ring_attn_func": "sequence parallelism",
    "tensor_parallel_size": "tensor parallelism",
    "dp_shard_size": "N-D parallelism (data-shard sizes)",
    "dp_replicate_size": "N-D parallelism (data-replicate sizes)",
    "s2_attention": "shifted-sparse attention",
    "sage_attention": "8-bit SageAttention",
    "landmark_attention": "landmark attention",
    "xpos_rope": "xPos rotary embeddings",
    "scaling_softmax": "scaled softmax",
    "scaling_softmax_bias": "scaled softmax",
    "scaling_softmax_factor": "scaled softmax",
    "lora_target_parameters": "LoRA on raw parameters (MoE expert weights)",
    "liger_use_token_scaling": "Liger's token-scaled loss",
    "lora_alpha_pattern": "per-layer LoRA ranks",
    "lora_rank_pattern": "per-layer LoRA ranks",
    "peft": "peft initialisations (LoftQ)",
    "peft_init_lora_weights": "peft initialisations (LoftQ, PiSSA, ...)",
    "peft_layer_replication": "layer replication",
    "peft_ensure_weight_tying": "tied adapter weights",
    "fp32_norms": "per-module precision overrides",
    "fp32_norm_classes": "per-module precision overrides",
    "random_init_weights": "training from random weights",
    "reinit_weights": "training from random weights",
    "loss_fn": "custom losses",
    "loss_fn_config": "custom losses",
    "use_eaft": "entropy-aware fine-tuning",
    "trainer_cls": "custom trainers",
    "lr_quadratic_warmup": "quadratic warm-up",
    "cosine_constant_lr_ratio": "constant-then-cosine schedules",
    "lr_div_factor": "one-cycle schedules",
    "lr_groups": "per-group learning rates",
    "embedding_lr": "per-group learning rates",
    "embedding_lr_scale": "per-group learning rates",
    "optim_target_modules": "GaLore-style optimizers",
    "torchdistx_path": "the AnyPrecision optimizer",
    "adam_beta3": "the CAME optimizer",
    "adam_epsilon2": "the CAME optimizer",
    "fix_untrained_tokens": "untrained-token fixing",
    "shrink_embeddings": "embedding shrinking",
    "embeddings_skip_upcast": "embedding precision overrides",
    "cls_model_config": "sequence-classification models",
    "dynamic_checkpoint": "dynamic checkpointing",
    "pipeline": "reinforcement learning pipelines",
    "project_id": "reinforcement learning with Hatchery",
    "backend": "reinforcement learning with Hatchery",
    "base_url": "reinforcement learning with Hatchery",
    "api_key": "reinforcement learning with Hatchery",
    "lora_rank": "reinforcement learning with Hatchery",
    "num_samples": "reinforcement learning",
}
FEATURE_PREFIXES: dict[str, str] = {
    "unsloth_": "unsloth kernels",
    "kd_": "knowledge distillation",
    "relora_": "ReLoRA",
    "lisa_": "LISA layer sampling",
    "pose_": "PoSE context extension",
    "nemo_gym_": "reinforcement learning with NeMo Gym",
    "kto_": RL_REFUSED["kto"],
    "simpo_": RL_REFUSED["simpo"],
    "cpo_": RL_REFUSED["cpo"],
    "rpo_": "RPO preference training",
    "grpo_": RL_REFUSED["grpo"],
    "qgalore_": "the Q-GaLore optimizer",
    "dion_": "the Dion optimizer",
    "grokfast_": "the Grokfast optimizer",
    "spectrum_": "Spectrum layer selection",
    "dsv4_": "DeepSeek-V4 kernels",
    "gemma4_": "Gemma-4 kernels and quantization",
    "expert_parallel": "expert parallelism",
    "jagged_restart": "jagged-restart schedules",
    "log_sweep_": "learning-rate sweeps",
    "eaft_": "entropy-aware fine-tuning",
    "nvfp4_": "NVFP4 training",
}
FEATURE_REASON = "ft does not have it; train this config with axolotl"

# Options of features ft has, by prefix: refused one by one (the feature itself is trained).
UNSUPPORTED_PREFIXES: dict[str, str] = {
    "dpo_": f"an option of axolotl's DPO that ft does not have ({RL_KEYS})",
    "orpo_": f"an option of axolotl's ORPO that ft does not have ({RL_KEYS})",
}

# Values that leave a feature off: accepted silently, as unset.
OFF_VALUES: dict[str, tuple[Any, ...]] = {
    **dict.fromkeys(
        (
            "context_parallel_size",
            "sequence_parallel_degree",
            "tensor_parallel_size",
            "dp_shard_size",
            "dp_replicate_size",
            "expert_parallel_size",
            "ray_num_workers",
        ),
        (1,),
    ),
    "cosine_constant_lr_ratio": (0,),  # no constant phase
}

DISTRIBUTED = "ft trains on one node through accelerate (DeepSpeed or FSDP via deepspeed / fsdp_config)"

# Unsupported, with what to use in ft instead.
UNSUPPORTED: dict[str, str] = {
    "fsdp_final_state_dict_type": "ft saves the full adapter at the end; set fsdp_config.state_dict_type",
    "qlora_sharded_model_loading": DISTRIBUTED,
    "accelerator_config": DISTRIBUTED,
    "large_head_attention": "use attn_implementation",
    "peft_adapter": "set LoRA options with the lora_* and peft_use_* keys",
    "peft_trainable_token_indices": "train embeddings with lora_modules_to_save",
    "merge_lora": "merge with `ft merge RUN_DIR` after training",
    "model_kwargs": "model loading options are ft's; the config overrides go in overrides_of_model_config",
    "overrides_of_model_kwargs": "model loading options are ft's; the config overrides go in overrides_of_model_config",
    "rope_scaling": "put it in overrides_of_model_config: {rope_scaling: ...}",
    "multipack_real_batches": "ft packs by best fit",
    "batch_flattening": "use sample_packing (padding-free) instead",
    "auto_find_batch_size": "set micro_batch_size; `ft plan` estimates what fits",
    "added_tokens_overrides": "add tokens with `tokens` / special_tokens",
    "dataset_shard_num": "take a slice with `split`, e.g. train[:10%]",
    "dataset_shard_idx": "take a slice with `split`, e.g. train[:10%]",
    "special_tokens_to_add": "use `tokens`",
    "rl_adapter_ref_model": f"with a LoRA adapter ft's reference is the base model without it ({RL_KEYS})",
}

DATASET_FEATURES: dict[str, str] = {
    "field_thinking": "reasoning traces (field_thinking)",
    "template_thinking_key": "reasoning traces (field_thinking)",
    "split_thinking": "reasoning traces (field_thinking)",
    "field_tools": "tool definitions",
    "message_field_training": "per-turn training flags",
    "message_field_training_detail": "per-turn training flags",
    "field_label": "labelled preference or step data",
    "step_separator": "process reward-model data",
    "train_on_last_step_only": "process reward-model data",
    "logprobs_field": "knowledge distillation",
    "temperature": "knowledge distillation",
}

DATASET_UNSUPPORTED: dict[str, str] = {
    "shards": "take a slice with `split`, e.g. train[:10%]",
    "shards_idx": "take a slice with `split`, e.g. train[:10%]",
    "preprocess_shards": "remove it",
    "train_on_eot": "use train_on_eos (ft treats the turn terminator and EOS alike)",
    "input_format": "use format / no_input_format",
    "trust_remote_code": "ft never runs dataset loading scripts",
    "input_transform": "transform the data beforehand",
    "chosen_format": "ft renders a pair's answers with the run's format (chat_template or type)",
    "rejected_format": "ft renders a pair's answers with the run's format (chat_template or type)",
    "field_completion": "axolotl reads it for preference (KTO) data only; SFT rows use field_output",
    "prompt_format": "ft renders prompts with the run's format: SFT rows and pairs use format / type",
    "completion_format": "axolotl reads it for preference (KTO) data only; SFT rows use format",
    "max_completion_length": "rows longer than sequence_len follow excess_length_strategy",
    "train_test_split": "use val_set_size",
    "skip": "take a slice with `split`, e.g. train[100:]",
    "length": "synthetic datasets are not available",
    "sequence_length": "synthetic datasets are not available",
    "min_input_id": "synthetic datasets are not available",
    "max_input_id": "synthetic datasets are not available",
    "seed": "ft shuffles with the top-level seed",
    "push_to_hub": NO_HUB,
    "save_to_disk": "ft caches prepared data in dataset_prepared_path",
}

DATASET_SAME_AS_FT: dict[str, tuple[Any, ...]] = {
    "train_on_eot": ("turn",),
    # axolotl's defaults: without reasoning columns in the data they change nothing.
    "field_thinking": ("reasoning_content",),
    "template_thinking_key": ("reasoning_content",),
}

# axolotl's `plugins:` entries: the liger plugin is its liger_* keys, speed-only ones are ignored.
PLUGINS: dict[str, tuple[Literal["mapped", "ignored", "unsupported"], str]] = {
    "axolotl.integrations.liger.LigerPlugin": ("mapped", "its liger_* keys turn on trl's use_liger_kernel"),
    "axolotl.integrations.cut_cross_entropy.CutCrossEntropyPlugin": ("ignored", SAME_RESULT),
    "axolotl.integrations.kernels.KernelsPlugin": ("ignored", SAME_RESULT),
    "axolotl.integrations.swanlab.SwanLabPlugin": ("ignored", LOGGER),
    "axolotl.integrations.lm_eval.LMEvalPlugin": ("ignored", EVAL_ELSEWHERE),
}

# ---------------------------------------------------------------------------------------------


Kind = Literal["supported", "mapped", "ignored", "unsupported", "unknown"]
GENERIC = "not available in ft"
"""The status of a key of axolotl's list that no entry above names (a test keeps there none)."""


@dataclass(frozen=True)
class KeyStatus:
    kind: Kind
    note: str = ""
    feature: str | None = None
    """For a key that turns on a whole feature ft lacks: the feature's name."""


@cache
def known_keys() -> dict[str, Any]:
    """axolotl's keys across releases: {"top": {key: [first, last]}, "dataset": ..., "defaults": ...}."""
    data: dict[str, Any] = json.loads(KEYS_FILE.read_text(encoding="utf-8"))
    return data


def axolotl_default(key: str) -> Any:
    return known_keys()["defaults"].get(key, _NO_DEFAULT)


def leaves_it_off(key: str, value: Any) -> bool:
    """axolotl's default, or a value that turns nothing on (`context_parallel_size: 1`)."""
    return value == axolotl_default(key) or value in OFF_VALUES.get(key, ())


_NO_DEFAULT = object()


def _by_prefix(key: str, table: Mapping[str, str]) -> str | None:
    return next((why for prefix, why in table.items() if key.startswith(prefix)), None)


def top_key_status(key: str, ft_fields: Mapping[str, Any]) -> KeyStatus:
    """What ft does with a top-level key (`ft_fields`: FtConfig's fields)."""
    if key in MAPPED_BY_CODE:
        return KeyStatus("mapped", MAPPED_BY_CODE[key])
    if key in RENAMED:
        return KeyStatus("mapped", "read as an ft key")
    if key in ft_fields:
        return KeyStatus("supported")
    if key in FEATURES:
        return KeyStatus("unsupported", FEATURE_REASON, feature=FEATURES[key])
    if (feature := _by_prefix(key, FEATURE_PREFIXES)) is not None:
        return KeyStatus("unsupported", FEATURE_REASON, feature=feature)
    if key in IGNORED:
        return KeyStatus("ignored", IGNORED[key])
    if (why := _by_prefix(key, IGNORED_PREFIXES)) is not None:
        return KeyStatus("ignored", why)
    if key in UNSUPPORTED:
        return KeyStatus("unsupported", UNSUPPORTED[key])
    if (why := _by_prefix(key, UNSUPPORTED_PREFIXES)) is not None:
        return KeyStatus("unsupported", why)
    if key in SAME_AS_FT:
        values = " or ".join(json.dumps(v) for v in SAME_AS_FT[key])
        return KeyStatus("supported", f"only {values}: what ft always does")
    if key in known_keys()["top"]:
        return KeyStatus("unsupported", GENERIC)
    return KeyStatus("unknown")


def dataset_key_status(key: str, ft_fields: Mapping[str, Any]) -> KeyStatus:
    """What ft does with a key of one dataset entry (`ft_fields`: DatasetSettings' fields)."""
    if key in DATASET_MAPPED_BY_CODE:
        return KeyStatus("mapped", DATASET_MAPPED_BY_CODE[key])
    if key in DATASET_RENAMED:
        return KeyStatus("mapped", "read as an ft key")
    if key in ft_fields:
        return KeyStatus("supported")
    if key in DATASET_FEATURES:
        return KeyStatus("unsupported", FEATURE_REASON, feature=DATASET_FEATURES[key])
    if key in DATASET_UNSUPPORTED:
        return KeyStatus("unsupported", DATASET_UNSUPPORTED[key])
    if key in known_keys()["dataset"]:
        return KeyStatus("unsupported", GENERIC)
    return KeyStatus("unknown")
