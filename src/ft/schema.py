"""The config schema: flat YAML with axolotl's key names, typed here in one model per section.

Every field carries its documentation (`description`), which feeds `ft validate --print`,
the config reference (docs/config.md) and the comments of the shipped configs.
The sections are mixins of one flat model, `FtConfig`, so the YAML stays flat (as in axolotl)
while each cross-field rule lives on the smallest section that owns its fields.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PROMPT_FORMATS = ("alpaca", "llama2_chat", "phi2", "phi3", "completion", "chat_template")
"""Dataset `type` values. A dataset may also give a custom `format` string instead."""

CHAT_TEMPLATES = ("alpaca", "llama2_chat", "phi2", "phi3", "tokenizer_default")
"""Templates that render chat `messages`: one of ft's formats, or the tokenizer's own chat template."""

OPTIMIZERS = (
    "adamw_torch",
    "adamw_torch_fused",
    "adamw_8bit",
    "adamw_bnb_8bit",
    "paged_adamw_32bit",
    "paged_adamw_8bit",
    "adafactor",
    "sgd",
)
LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup")

Dtype = Literal["auto", "bfloat16", "float16", "float32"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class DatasetSettings(Section):
    """One dataset: where it is, how its rows map to a prompt format."""

    path: str = Field(description="Local file (.json/.jsonl/.csv/.parquet), folder, or Hub dataset id.")
    type: str = Field(
        "alpaca",
        description="Prompt format: " + ", ".join(PROMPT_FORMATS) + ". Ignored when `format` is given.",
    )
    ds_type: Literal["json", "csv", "parquet", "arrow", "text"] | None = Field(
        None,
        description="Builder for local files when the extension does not tell (json, csv, parquet, ...).",
    )
    data_files: str | list[str] | None = Field(None, description="Files inside a Hub dataset or folder.")
    split: str = Field("train", description="Split to read.")
    name: str | None = Field(None, description="Dataset configuration name on the Hub.")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) of the dataset.")
    field: str | None = Field(None, description="Text column for `completion`, default `text`.")
    field_instruction: str = Field("instruction", description="Column that holds the instruction.")
    field_input: str = Field("input", description="Column that holds the optional input/context.")
    field_output: str = Field("output", description="Column that holds the answer.")
    field_system: str = Field("system", description="Column that holds a per-row system prompt, if any.")
    field_messages: str | None = Field(
        None,
        description="Column with the chat turns for `chat_template` (default: messages or conversations).",
    )
    message_property_mappings: dict[str, str] = Field(
        default_factory=lambda: {"role": "role", "content": "content"},
        description="Keys of each turn: {role: from, content: value} for ShareGPT.",
    )
    roles: dict[str, list[str]] | None = Field(
        None,
        description="Extra role names per role, e.g. {user: [human], assistant: [gpt]} "
        "(ShareGPT's human/gpt/system are known already).",
    )
    chat_template: str | None = Field(
        None, description="Template for this dataset's chat turns; default: the top-level `chat_template`."
    )
    system_prompt: str | None = Field(None, description="System prompt added to every row that has none.")
    format: str | None = Field(
        None, description="Custom prompt with {instruction}/{input} fields; the answer follows it."
    )
    no_input_format: str | None = Field(None, description="Custom prompt used when the row has no input.")


class ModelSettings(Section):
    base_model: str = Field(description="Hub id, local folder, or local .gguf file of the base model.")
    base_model_config: str | None = Field(
        None, description="Where to read the model config, if not base_model."
    )
    tokenizer_config: str | None = Field(None, description="Where to load the tokenizer, if not base_model.")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) of the base model.")
    trust_remote_code: bool = Field(
        False, description="Run model code from the Hub repository. Off unless set."
    )
    allow_pickle_weights: bool = Field(
        False, description="Allow .bin/.pt (pickle) weights when no safetensors exist. Pickle can run code."
    )
    model_type: str | None = Field(
        None, description="Accepted for axolotl configs: AutoModelForCausalLM only."
    )
    tokenizer_type: str | None = Field(None, description="Accepted for axolotl configs: AutoTokenizer only.")
    tokenizer_use_fast: bool = Field(True, description="Use the fast (Rust) tokenizer.")
    attn_implementation: str | None = Field(
        None, description="Attention kernel: eager, sdpa, flash_attention_2 (default: the library's choice)."
    )
    special_tokens: dict[str, str] = Field(
        default_factory=dict, description="bos_token / eos_token / pad_token / unk_token to set or add."
    )
    tokens: list[str] = Field(default_factory=list, description="Extra tokens to add to the vocabulary.")
    chat_template: str | None = Field(
        None,
        description="Template for chat datasets and the saved tokenizer: " + ", ".join(CHAT_TEMPLATES) + ".",
    )


class QuantizationSettings(Section):
    load_in_4bit: bool = Field(False, description="Load the base weights in 4-bit (bitsandbytes).")
    load_in_8bit: bool = Field(False, description="Load the base weights in 8-bit (bitsandbytes).")
    bnb_4bit_quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type.")
    bnb_4bit_use_double_quant: bool = Field(True, description="Quantize the quantization constants too.")
    bnb_4bit_compute_dtype: Dtype = Field(
        "auto", description="Matmul dtype of 4-bit layers; auto follows bf16/fp16."
    )
    bnb_config_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Extra BitsAndBytesConfig arguments (override the keys above)."
    )

    @model_validator(mode="after")
    def _one_quantization(self) -> QuantizationSettings:
        if self.load_in_4bit and self.load_in_8bit:
            raise ValueError("load_in_4bit and load_in_8bit are exclusive: pick one")
        return self


class AdapterSettings(Section):
    adapter: Literal["lora", "qlora"] | None = Field(
        None, description="lora, qlora (4-bit base), or empty for a full fine-tune."
    )
    lora_r: int = Field(8, gt=0, description="LoRA rank.")
    lora_alpha: float = Field(16, gt=0, description="LoRA scaling numerator (scale = alpha / r).")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA input.")
    lora_target_modules: list[str] | None = Field(
        None, description="Module names to adapt (e.g. q_proj, v_proj)."
    )
    lora_target_linear: bool = Field(False, description="Adapt every linear layer except the output head.")
    lora_modules_to_save: list[str] | None = Field(
        None,
        description="Modules trained in full and saved (embed_tokens, lm_head) e.g. after adding tokens.",
    )
    lora_fan_in_fan_out: bool = Field(False, description="True for GPT-2's Conv1D layers.")
    peft_use_dora: bool = Field(False, description="DoRA: weight-decomposed LoRA.")
    peft_use_rslora: bool = Field(False, description="rsLoRA: scale by alpha / sqrt(r).")
    lora_model_dir: str | None = Field(None, description="Existing adapter to continue training from.")


class DataSettings(Section):
    datasets: list[DatasetSettings] = Field(min_length=1, description="Training datasets, concatenated.")
    test_datasets: list[DatasetSettings] | None = Field(None, description="Evaluation datasets.")
    val_set_size: float = Field(
        0.0, ge=0, description="Held-out share (0 < x < 1) or row count (x >= 1) for evaluation."
    )
    dataset_prepared_path: str | None = Field(None, description="Cache folder for tokenized data.")
    sequence_len: int = Field(2048, gt=0, description="Maximum tokens per training sequence.")
    excess_length_strategy: Literal["drop", "truncate", "error"] = Field(
        "drop",
        description="Rows longer than sequence_len: drop them (counted), truncate them, or fail.",
    )
    skip_invalid_rows: bool = Field(
        False, description="Skip rows that cannot be rendered (counted and reported) instead of failing."
    )
    sample_packing: bool = Field(False, description="Pack several examples per sequence (padding-free).")
    pad_to_sequence_len: bool = Field(False, description="Pad every batch to sequence_len.")
    train_on_inputs: bool = Field(False, description="Also train on prompt tokens (default: answers only).")
    group_by_length: bool = Field(False, description="Batch rows of similar length together.")
    shuffle_merged_datasets: bool = Field(True, description="Shuffle the concatenated datasets.")

    @model_validator(mode="after")
    def _data_rules(self) -> DataSettings:
        if self.val_set_size and self.test_datasets:
            raise ValueError("val_set_size and test_datasets are exclusive: choose one eval split")
        return self


class TrainingSettings(Section):
    micro_batch_size: int = Field(1, gt=0, description="Rows per device per step.")
    eval_batch_size: int | None = Field(None, gt=0, description="Rows per device per eval step.")
    gradient_accumulation_steps: int = Field(1, gt=0, description="Micro-batches per optimizer step.")
    num_epochs: float = Field(1.0, gt=0, description="Passes over the training set.")
    max_steps: int | None = Field(None, gt=0, description="Stop after this many optimizer steps.")
    optimizer: str = Field("adamw_torch", description="Optimizer: " + ", ".join(OPTIMIZERS) + ".")
    lr_scheduler: str = Field("cosine", description="Scheduler: " + ", ".join(LR_SCHEDULERS) + ".")
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate.")
    warmup_ratio: float | None = Field(None, ge=0, lt=1, description="Warm-up share of the steps.")
    warmup_steps: int | None = Field(None, ge=0, description="Warm-up steps.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, ge=0, description="Gradient clipping norm (0 = off).")
    adam_beta1: float | None = Field(None, description="AdamW beta1.")
    adam_beta2: float | None = Field(None, description="AdamW beta2.")
    adam_epsilon: float | None = Field(None, description="AdamW epsilon.")
    bf16: bool | Literal["auto"] | None = Field(
        "auto", description="bf16 compute; auto: if the GPU supports it."
    )
    fp16: bool | None = Field(None, description="fp16 mixed precision.")
    tf32: bool | None = Field(None, description="Allow TF32 matmuls on Ampere+ GPUs.")
    gradient_checkpointing: bool = Field(False, description="Recompute activations to save memory.")
    logging_steps: int = Field(1, gt=0, description="Log every N optimizer steps.")
    eval_steps: int | float | None = Field(None, gt=0, description="Evaluate every N steps.")
    evals_per_epoch: int | None = Field(
        None, gt=0, description="Evaluations per epoch (instead of eval_steps)."
    )
    save_steps: int | float | None = Field(None, gt=0, description="Checkpoint every N steps.")
    saves_per_epoch: int | None = Field(
        None, gt=0, description="Checkpoints per epoch (instead of save_steps)."
    )
    save_total_limit: int | None = Field(None, gt=0, description="Keep at most N checkpoints.")
    seed: int = Field(42, description="Seed for data order, splits and initialisation.")
    resume_from_checkpoint: str | None = Field(None, description="Checkpoint folder to resume from.")
    early_stopping_patience: int | None = Field(
        None, gt=0, description="Stop after N evals without improvement."
    )
    neftune_noise_alpha: float | None = Field(None, gt=0, description="NEFTune embedding noise.")

    @model_validator(mode="after")
    def _training_rules(self) -> TrainingSettings:
        if self.warmup_ratio is not None and self.warmup_steps is not None:
            raise ValueError("warmup_ratio and warmup_steps are exclusive: set one")
        if self.fp16 and self.bf16 is True:
            raise ValueError("fp16 and bf16 are exclusive: set one")
        if self.eval_steps is not None and self.evals_per_epoch is not None:
            raise ValueError("eval_steps and evals_per_epoch are exclusive: set one")
        if self.save_steps is not None and self.saves_per_epoch is not None:
            raise ValueError("save_steps and saves_per_epoch are exclusive: set one")
        return self


class OutputSettings(Section):
    output_dir: str = Field("./outputs/run", description="Run folder: adapter, checkpoints, logs.")
    hub_model_id: str | None = Field(None, description="Accepted for axolotl configs; ft does not push.")


class LoggingSettings(Section):
    use_tensorboard: bool = Field(False, description="Write TensorBoard logs to the run folder.")
    wandb_project: str | None = Field(None, description="Weights & Biases project (needs wandb installed).")
    wandb_entity: str | None = Field(None, description="Weights & Biases entity.")
    wandb_name: str | None = Field(None, description="Weights & Biases run name.")
    wandb_run_id: str | None = Field(None, description="Weights & Biases run id.")
    wandb_mode: str | None = Field(None, description="Weights & Biases mode (online, offline, disabled).")
    wandb_watch: str | None = Field(None, description="Weights & Biases gradient watching.")
    wandb_log_model: str | None = Field(None, description="Weights & Biases model logging.")


class DistributedSettings(Section):
    deepspeed: str | None = Field(None, description="DeepSpeed JSON config file.")
    fsdp: list[str] | None = Field(None, description="FSDP options, e.g. [full_shard, auto_wrap].")
    fsdp_config: dict[str, Any] | None = Field(None, description="FSDP settings passed to accelerate.")


class FtConfig(
    ModelSettings,
    QuantizationSettings,
    AdapterSettings,
    DataSettings,
    TrainingSettings,
    OutputSettings,
    LoggingSettings,
    DistributedSettings,
):
    """The whole run. Cross-section rules live here; section rules on their sections."""

    @model_validator(mode="after")
    def _cross_section_rules(self) -> FtConfig:
        if self.adapter == "qlora" and not self.load_in_4bit:
            raise ValueError("adapter: qlora needs load_in_4bit: true (or use adapter: lora)")
        if (self.load_in_4bit or self.load_in_8bit) and self.adapter is None:
            raise ValueError("a 4-bit or 8-bit base cannot be fully fine-tuned: set adapter: lora or qlora")
        return self
