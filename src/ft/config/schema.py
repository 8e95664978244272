"""The config schema: flat YAML with axolotl's key names, typed here in one model per section.

Every field carries its documentation (`description`), which feeds `ft validate --print`,
the config reference (docs/config.md) and the comments of the shipped configs.
The sections are mixins of one flat model, `FtConfig`, so the YAML stays flat (as in axolotl)
while each cross-field rule lives on the smallest section that owns its fields.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterator, Mapping
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from ft.config.formats import (
    CHAT_TEMPLATES,
    INSTRUCTION_TYPES,
    PROMPT_FORMATS,
    custom_format_problems,
    is_chat_template,
    unsupported_type,
)
from ft.config.rl import RL_METHODS, RL_METHODS_TEXT, RL_REFUSED

OPTIMIZERS = (
    "adamw_torch",
    "adamw_torch_fused",
    "adamw_8bit",
    "adamw_bnb_8bit",
    "paged_adamw_32bit",
    "paged_adamw_8bit",
    "adafactor",
    "sgd",
    # transformers' other optimizers (OptimizerNames); a package some of them need is checked
    # when training starts (ft.train.settings).
    "adamw_torch_4bit",
    "adamw_torch_8bit",
    "adamw_anyprecision",
    "adagrad",
    "rmsprop",
    "ademamix",
    "ademamix_8bit",
    "paged_ademamix_32bit",
    "paged_ademamix_8bit",
    "lion_8bit",
    "lion_32bit",
    "paged_lion_8bit",
    "paged_lion_32bit",
    "rmsprop_bnb",
    "rmsprop_bnb_8bit",
    "rmsprop_bnb_32bit",
    "galore_adamw",
    "galore_adamw_8bit",
    "galore_adafactor",
    "lomo",
    "adalomo",
    "grokadamw",
    "schedule_free_radam",
    "schedule_free_adamw",
    "schedule_free_sgd",
    "apollo_adamw",
    "stable_adamw",
)
AXOLOTL_OPTIMIZERS = (
    "optimi_adamw",
    "ao_adamw_4bit",
    "ao_adamw_8bit",
    "ao_adamw_fp8",
    "adopt_adamw",
    "came_pytorch",
    "muon",
    "dion",
    "sinkgd",
    "flash_adamw",
    "flash_adam",
    "flash_sgd",
    "flash_sgdw",
    "flash_lion",
    "q_galore_adamw8bit",
)
"""axolotl's own optimizers (not transformers'): named as such when given."""
LR_SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "cosine_with_min_lr",
    "inverse_sqrt",
    "warmup_stable_decay",
)
EVAL_METRICS = ("sacrebleu", "bleu", "chrf", "ter", "rouge", "exact_match", "perplexity")
"""Generation metrics of eval_causal_lm_metrics (sacrebleu and bleu are the same BLEU)."""

Dtype = Literal["auto", "bfloat16", "float16", "float32"]

Problem = tuple[str, str]
"""A cross-field problem: (key path, message), e.g. ("adapter", "qlora needs load_in_4bit: true")."""


# ---------------------------------------------------------------------------------------------
# Cross-field rules run on the raw mapping, not on a validated model: pydantic skips
# after-validators as soon as one field is invalid, and the user should see every problem at
# once. So the rules read values the way pydantic would, and skip a value of the wrong type
# (its field error is reported anyway).


def is_true(value: Any) -> bool:
    """True when pydantic would read `value` as the bool True (so the string "false" is false)."""
    if isinstance(value, str):
        return value.strip().lower() in {"1", "on", "t", "true", "y", "yes"}
    return value is True or (type(value) is int and value == 1)


def _number(value: Any) -> float | None:
    """`value` as the finite number pydantic would read, else None (inf and nan are the schema's to report)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _is_set(data: Mapping[str, Any], key: str) -> bool:
    return data.get(key) is not None


def _choice_problem(kind: str, value: str, choices: tuple[str, ...], other: str = "") -> str:
    """`unknown optimizer 'adamw_torc' (did you mean adamw_torch?)`, or the valid names (and `other`)."""
    close = difflib.get_close_matches(value, choices, n=1, cutoff=0.6)
    if close:
        return f"unknown {kind} {value!r} (did you mean {close[0]}?)"
    return f"unknown {kind} {value!r}: use one of " + ", ".join(choices) + other


def _check_choice(
    data: Mapping[str, Any], key: str, kind: str, choices: tuple[str, ...]
) -> Iterator[Problem]:
    value = data.get(key)
    if isinstance(value, str) and value not in choices:
        yield key, _choice_problem(kind, value, choices)


def _exclusive(data: Mapping[str, Any], first: str, second: str, advice: str) -> Iterator[Problem]:
    if _is_set(data, first) and _is_set(data, second):
        yield second, f"{first} and {second} are exclusive: {advice}"


LARGEST_NUMBER = 2**31 - 1
"""Upper bound of numeric keys that set none of their own: a count beyond 32 bits is a typo, and
a number like 99999999999999999999 would only fail later, deep inside a library."""


def _takes_number_not_bool(annotation: Any) -> bool:
    kinds = set(get_args(annotation)) or {annotation}
    return bool(kinds & {int, float}) and bool not in kinds


def _too_large(value: Any) -> bool:
    """Beyond LARGEST_NUMBER, as an int (of any size) or a finite number; numbers written as text too."""
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            value = _number(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return abs(value) > LARGEST_NUMBER
    return isinstance(value, float) and math.isfinite(value) and abs(value) > LARGEST_NUMBER


class Section(BaseModel):
    # allow_inf_nan: `learning_rate: 1e999` would read as inf (and `.nan` as nan) and pass `gt=0`.
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _plain_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """pydantic reads true as 1 for a number; and numbers get an upper bound (LARGEST_NUMBER)."""
        field = cls.model_fields.get(info.field_name or "")
        if field is None or not _takes_number_not_bool(field.annotation):
            return value
        if isinstance(value, bool):
            raise ValueError(f"expected a number, got {str(value).lower()}")
        has_own_bound = any(hasattr(meta, "le") or hasattr(meta, "lt") for meta in field.metadata)
        if not has_own_bound and _too_large(value):
            shown = str(value) if len(str(value)) <= 20 else f"a number with {len(str(value))} digits"
            raise ValueError(f"must be at most {LARGEST_NUMBER}, got {shown}")
        return value

    @classmethod
    def check_rules(cls, data: Mapping[str, Any]) -> Iterator[Problem]:
        """The section's cross-field problems in a raw (unvalidated) mapping; none by default."""
        return iter(())


class DatasetSettings(Section):
    """One dataset: where it is, how its rows map to a prompt format."""

    path: str = Field(
        min_length=1, description="Local file (.json/.jsonl/.csv/.parquet), folder, or Hub dataset id."
    )
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
    field_system: str | None = Field(
        None,
        description="Column that holds a per-row system prompt. Default: `system` for a custom `format`; "
        "alpaca-style types read one only when this is set (axolotl's ignore it).",
    )
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
    chat_template_jinja: str | None = Field(
        None, description="Jinja text or .jinja file for this dataset (with chat_template: jinja)."
    )
    roles_to_train: list[str] = Field(
        default_factory=lambda: ["assistant"],
        description="Roles whose turns are trained in chat_template datasets (e.g. [assistant], [user, assistant]).",
    )
    drop_system_message: bool = Field(False, description="Drop the system turns of chat rows.")
    train_on_eos: Literal["turn", "all", "none", "last"] = Field(
        "turn",
        description="Turn terminators trained in chat_template datasets: after trained turns, after all "
        "turns, none, or the last one.",
    )
    system_prompt: str | None = Field(None, description="System prompt added to every row that has none.")
    field_prompt: str = Field(
        "prompt",
        description="With rl: the column that holds the prompt (text, or a list of chat turns).",
    )
    field_chosen: str = Field(
        "chosen", description="With rl: the column that holds the preferred answer (text, a turn or turns)."
    )
    field_rejected: str = Field(
        "rejected", description="With rl: the column that holds the dispreferred answer."
    )
    format: str | None = Field(
        None, description="Custom prompt with {instruction}/{input} fields; the answer follows it."
    )
    no_input_format: str | None = Field(None, description="Custom prompt used when the row has no input.")
    system_format: str | None = Field(
        None,
        description="Custom prompt: the system prompt's form before the turn, e.g. 'SYSTEM: {system}\\n'.",
    )
    weight: float = Field(
        1.0,
        gt=0,
        description="Training datasets: how many times each row is used. 0.1 takes a seeded 10% sample, "
        "2 every row twice, 2.5 every row twice plus a seeded half. Applied after the eval split; "
        "`ft format --stats` and `ft train` report the rows and shares of the mix.",
    )

    @classmethod
    def check_rules(cls, data: Mapping[str, Any]) -> Iterator[Problem]:
        custom = data.get("format")
        if isinstance(custom, str):
            yield from (("format", p) for p in custom_format_problems(custom))
        no_input = data.get("no_input_format")
        if isinstance(no_input, str):
            yield from (("no_input_format", p) for p in custom_format_problems(no_input))
            if "{input}" in no_input:
                yield "no_input_format", "cannot use {input}: it is the prompt for rows without input"
            if not isinstance(custom, str):
                yield "no_input_format", "needs `format` too (the prompt for rows with an input)"
        kind = data.get("type", "alpaca")
        if custom is None and isinstance(kind, str) and kind not in PROMPT_FORMATS:
            why = unsupported_type(kind)
            if why:
                yield "type", f"{kind!r} is {why}"
            else:
                yield "type", _type_problem(kind)
        yield from _check_template(data)


def _type_problem(kind: str) -> str:
    """A did-you-mean among ft's types (or, when very close, axolotl's instruction types), else the list."""
    main = tuple(f for f in PROMPT_FORMATS if f not in INSTRUCTION_TYPES)
    close = difflib.get_close_matches(kind, main, n=1, cutoff=0.6) or difflib.get_close_matches(
        kind, INSTRUCTION_TYPES, n=1, cutoff=0.85
    )
    if close:
        return f"unknown format {kind!r} (did you mean {close[0]}?)"
    return (
        f"unknown format {kind!r}: use one of " + ", ".join(main) + ", an axolotl instruction type "
        "(alpaca:chat, oasst, context_qa.load_v2, ...; see docs/config.md), or give a custom `format`"
    )


def _check_template(data: Mapping[str, Any]) -> Iterator[Problem]:
    name = data.get("chat_template")
    if isinstance(name, str) and not is_chat_template(name):
        yield "chat_template", _choice_problem("chat_template", name, CHAT_TEMPLATES)
    if name == "jinja" and not data.get("chat_template_jinja"):
        yield (
            "chat_template",
            "chat_template: jinja needs chat_template_jinja (the template text or a .jinja file)",
        )


class ModelSettings(Section):
    base_model: str = Field(
        min_length=1, description="Hub id, local folder, or local .gguf file of the base model."
    )
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
    overrides_of_model_config: dict[str, Any] = Field(
        default_factory=dict,
        description="Values set on the model's config before loading (axolotl's model_config), "
        "e.g. {output_router_logits: true}.",
    )
    chat_template: str | None = Field(
        None,
        description="Template for chat datasets and the saved tokenizer: "
        + ", ".join(CHAT_TEMPLATES)
        + ", or tokenizer_default_fallback_<name>.",
    )
    chat_template_jinja: str | None = Field(
        None, description="Jinja text or .jinja file of a custom chat template (with chat_template: jinja)."
    )
    chat_template_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra variables for the chat template, e.g. {enable_thinking: false}.",
    )
    eot_tokens: list[str] | None = Field(
        None,
        description="Tokens that end a turn in chat templates: trained (per train_on_eos) and stopped at "
        "(default: the template's own terminator, else EOS).",
    )

    @classmethod
    def check_rules(cls, data: Mapping[str, Any]) -> Iterator[Problem]:
        yield from _check_template(data)


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

    @classmethod
    def check_rules(cls, data: Mapping[str, Any]) -> Iterator[Problem]:
        if is_true(data.get("load_in_4bit")) and is_true(data.get("load_in_8bit")):
            yield "load_in_8bit", "load_in_4bit and load_in_8bit are exclusive: keep one"


LORA_ADAPTERS = ("lora", "qlora")
SOFT_PROMPT_ADAPTERS = ("prompt_tuning",)
LORA_KEYS = (
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "lora_target_modules",
    "lora_target_linear",
    "lora_modules_to_save",
    "lora_fan_in_fan_out",
    "peft_use_dora",
    "peft_use_rslora",
    "peft_layers_to_transform",
    "peft_layers_pattern",
    "loraplus_lr_ratio",
    "loraplus_lr_embedding",
)
SOFT_PROMPT_KEYS = ("num_virtual_tokens", "prompt_tuning_init", "prompt_tuning_init_text")


class AdapterSettings(Section):
    adapter: Literal["lora", "qlora", "prompt_tuning"] | None = Field(
        None,
        description="lora, qlora (4-bit base), prompt_tuning (a trained soft prompt, the model untouched), "
        "or empty for a full fine-tune.",
    )
    lora_r: int = Field(
        8, gt=0, le=65536, description="LoRA rank (at most 65536: no model has layers wider than that)."
    )
    lora_alpha: float = Field(16, gt=0, description="LoRA scaling numerator (scale = alpha / r).")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA input.")
    lora_target_modules: list[str] | str | None = Field(
        None,
        description="Module names to adapt (e.g. q_proj, v_proj), or one regular expression over full names.",
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
    peft_layers_to_transform: list[int] | int | None = Field(
        None, description="Adapt only these layer indices (peft's layers_to_transform)."
    )
    peft_layers_pattern: list[str] | str | None = Field(
        None, description="Name of the layer list for peft_layers_to_transform (e.g. layers), if not found."
    )
    loraplus_lr_ratio: float | None = Field(
        None,
        gt=0,
        description="LoRA+: learning rate of the B matrices = ratio x learning_rate (16 is typical).",
    )
    loraplus_lr_embedding: float | None = Field(
        None, gt=0, description="LoRA+: learning rate of adapted embedding layers (default 1e-6)."
    )
    num_virtual_tokens: int = Field(
        20,
        gt=0,
        le=4096,
        description="prompt_tuning: length of the soft prompt, in embedding vectors prepended to every "
        "sequence (trainable parameters: this x the model's hidden size).",
    )
    prompt_tuning_init: Literal["random", "text"] = Field(
        "random",
        description="prompt_tuning: start the soft prompt from random vectors (peft's default), or from the "
        "embeddings of `prompt_tuning_init_text`'s tokens (repeated or cut to num_virtual_tokens).",
    )
    prompt_tuning_init_text: str | None = Field(
        None,
        description="prompt_tuning with prompt_tuning_init: text: the text whose tokens start the prompt.",
    )

    @classmethod
    def check_rules(cls, data: Mapping[str, Any]) -> Iterator[Problem]:
        adapter = data.get("adapter")
        if data.get("lora_model_dir") and adapter not in LORA_ADAPTERS:
            yield "lora_model_dir", "an existing adapter needs adapter: lora or qlora"
        targets = data.get("lora_target_modules")
        if isinstance(targets, str) and re.fullmatch(r"\w+", targets):
            # A bare name as text would be read as a regular expression matching no full module name.
            yield (
                "lora_target_modules",
                f"expected a list, got {targets!r} (write [{targets}]; a text is a regular expression "
                "over full module names, e.g. '.*(q_proj|v_proj)')",
            )
        yield from _keys_for_other_adapter(data, adapter)
        init, text = data.get("prompt_tuning_init"), data.get("prompt_tuning_init_text")
        if init == "text" and not (isinstance(text, str) and text.strip()):
            yield (
                "prompt_tuning_init_text",
                "prompt_tuning_init: text needs the text whose tokens start the prompt",
            )
        if text is not None and init != "text" and adapter in SOFT_PROMPT_ADAPTERS:
            yield "prompt_tuning_init_text", "is used only with prompt_tuning_init: text"

    @classmethod
    def check_complete(cls, data: Mapping[str, Any]) -> Iterator[Problem]:
        """What a config file must say that a config built in code may leave to the adapter builder."""
        adapter = data.get("adapter")
        has_targets = data.get("lora_target_modules") or is_true(data.get("lora_target_linear"))
        if adapter in ("lora", "qlora") and not has_targets:
            yield (
                "lora_target_modules",
                f"adapter: {adapter} needs target layers: set lora_target_linear: true "
                "(every linear layer but the output head) or lora_target_modules: [q_proj, v_proj]",
            )


def _keys_for_other_adapter(data: Mapping[str, Any], adapter: Any) -> Iterator[Problem]:
    """A LoRA key with a soft prompt, or a soft-prompt key with LoRA, would be ignored: said, not
    dropped. A value equal to the default changes nothing (and a config built in code has them all)."""
    if adapter in SOFT_PROMPT_ADAPTERS:
        for key in _changed(data, LORA_KEYS):
            yield key, f"is a LoRA setting: adapter: {adapter} trains only a soft prompt; remove it"
    else:
        for key in _changed(data, SOFT_PROMPT_KEYS):
            yield key, "is a prompt_tuning setting: set adapter: prompt_tuning, or remove it"


def _changed(data: Mapping[str, Any], keys: tuple[str, ...]) -> Iterator[str]:
    for key in keys:
        value = data.get(key)
        if value not in (None, [], AdapterSettings.model_fields[key].default):
            yield key


class DataSettings(Section):
    datasets: list[DatasetSettings] = Field(min_length=1, description="Training datasets, concatenated.")
    test_datasets: list[DatasetSettings] | None = Field(None, description="Evaluation datasets.")
    val_set_size: float = Field(
        0.0, ge=0, description="Held-out share (0 < x < 1) or row count (x >= 1) for evaluation."
    )
    dataset_prepared_path: str | None = Field(None, description="Cache folder for tokenized data.")
    sequence_len: int = Field(2048, gt=0, description="Maximum tokens per training sequence.")
    excess_length_strategy: Literal["drop", "truncate", "error", "raise", "split"] | None = Field(
        None,
        description="Rows longer than sequence_len: drop them (counted), truncate them, fail (error; "
        "axolotl's raise), or split them into sequence_len pieces. Default: drop, but split for "
        "completion datasets (as axolotl does).",
    )
    skip_invalid_rows: bool = Field(
        False,
        description="Skip rows that cannot be used (counted, reported, the first few listed) instead of "
        "failing. Whole-file problems still fail: a cut or invalid .json array, a CSV or .json file that "
        "is not UTF-8, a mapped column missing from a CSV/parquet/arrow file.",
    )
    sample_packing: bool = Field(False, description="Pack several examples per sequence (padding-free).")
    pad_to_sequence_len: bool = Field(False, description="Pad every batch to sequence_len.")
    train_on_inputs: bool = Field(False, description="Also train on prompt tokens (default: answers only).")
    group_by_length: bool = Field(False, description="Batch rows of similar length together.")
    shuffle_merged_datasets: bool = Field(
        True, description="Shuffle the concatenated datasets (seeded); false keeps the files' order."
    )
    shuffle_before_merging_datasets: bool = Field(
        False, description="Shuffle each dataset (seeded) before concatenating them."
    )
    dataset_exact_deduplication: bool = Field(
        False, description="Drop rows whose tokens and labels equal an earlier row's (counted)."
    )
    min_sample_len: int | None = Field(
        None, gt=0, description="Drop rows with fewer tokens than this (counted)."
    )
    dataset_processes: int | None = Field(
        None, ge=1, description="Processes that render and tokenize the data (default: one)."
    )

    @classmethod
    def check_rules(cls, data: Mapping[str, Any]) -> Iterator[Problem]:
        share = _number(data.get("val_set_size"))
        if share and data.get("test_datasets"):
            yield "test_datasets", "val_set_size and test_datasets are exclusive: choose one eval split"
        if share is not None and share >= 1 and not share.is_integer():
            yield "val_set_size", f"{share:g} is neither a share (0 < x < 1) nor a whole row count"
        for key in ("datasets", "test_datasets"):
            items = data.get(key)
            for index, item in enumerate(items if isinstance(items, list) else []):
                if isinstance(item, Mapping):
                    for sub, message in DatasetSettings.check_rules(item):
                        yield f"{key}[{index}].{sub}", message
                    if key == "test_datasets" and item.get("weight") not in (None, 1, "1"):
                        yield f"{key}[{index}].weight", "weights mix training data: an eval set is used whole"


class TrainingSettings(Section):
    micro_batch_size: int = Field(1, gt=0, description="Rows per device per step.")
    eval_batch_size: int | None = Field(None, gt=0, description="Rows per device per eval step.")
    gradient_accumulation_steps: int = Field(1, gt=0, description="Micro-batches per optimizer step.")
    num_epochs: float = Field(1.0, gt=0, description="Passes over the training set.")
    max_steps: int | None = Field(None, gt=0, description="Stop after this many optimizer steps.")
    optimizer: str = Field("adamw_torch", description="Optimizer: " + ", ".join(OPTIMIZERS) + ".")
    optim_args: str | dict[str, Any] | None = Field(
        None, description="Extra optimizer arguments: 'key=value,...' or a mapping."
    )
    lr_scheduler: str = Field("cosine", description="Scheduler: " + ", ".join(LR_SCHEDULERS) + ".")
    lr_scheduler_kwargs: dict[str, Any] | None = Field(
        None, description="Scheduler arguments, e.g. {min_lr_rate: 0.1} for cosine_with_min_lr."
    )
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
    gradient_checkpointing_kwargs: dict[str, Any] | None = Field(
        None, description="Gradient checkpointing options, e.g. {use_reentrant: false} (ft's default)."
    )
    logging_steps: int | float = Field(
        1, gt=0, description="Log every N optimizer steps (a number below 1: that share of the steps)."
    )
    eval_strategy: Literal["no", "steps", "epoch"] | None = Field(
        None, description="When to evaluate: no, steps (eval_steps / evals_per_epoch), epoch."
    )
    eval_steps: int | float | None = Field(None, gt=0, description="Evaluate every N steps.")
    evals_per_epoch: int | None = Field(
        None, ge=0, description="Evaluations per epoch (instead of eval_steps); 0: no evaluation."
    )
    save_strategy: Literal["no", "steps", "epoch", "best"] | None = Field(
        None, description="When to checkpoint: no, steps (save_steps / saves_per_epoch), epoch, best."
    )
    save_steps: int | float | None = Field(None, gt=0, description="Checkpoint every N steps.")
    saves_per_epoch: int | None = Field(
        None, ge=0, description="Checkpoints per epoch (instead of save_steps); 0: only the final one."
    )
    load_best_model_at_end: bool = Field(
        False, description="Keep the checkpoint with the best metric_for_best_model as the run's adapter."
    )
    metric_for_best_model: str | None = Field(
        None, description="Metric that picks the best checkpoint (default eval_loss)."
    )
    greater_is_better: bool | None = Field(
        None, description="Whether a larger metric_for_best_model is better (default: false for losses)."
    )
    do_causal_lm_eval: bool = Field(
        False,
        description="At each evaluation, also generate answers and score them (eval_causal_lm_metrics).",
    )
    eval_causal_lm_metrics: list[str] | None = Field(
        None, description="Generation metrics at evaluation: " + ", ".join(EVAL_METRICS) + "."
    )
    save_total_limit: int | None = Field(None, gt=0, description="Keep at most N checkpoints.")
    seed: int = Field(
        42, ge=0, le=2**32 - 1, description="Seed for data order, splits and initialisation (0 to 2**32 - 1)."
    )
    resume_from_checkpoint: str | None = Field(None, description="Checkpoint folder to resume from.")
    early_stopping_patience: int | None = Field(
        None, gt=0, description="Stop after N evals without improvement."
    )
    neftune_noise_alpha: float | None = Field(None, gt=0, description="NEFTune embedding noise.")
    auto_resume_from_checkpoints: bool = Field(
        False, description="Resume from the newest checkpoint of output_dir when there is one (as --resume)."
    )
    curriculum_sampling: bool = Field(
        False, description="Train on the rows in order (no shuffling by the sampler)."
    )
    dataloader_drop_last: bool = Field(False, description="Drop the last incomplete batch of each epoch.")
    use_liger_kernel: bool = Field(
        False, description="Liger's Triton kernels (CUDA only; noted and off on a CPU). Needs liger-kernel."
    )
    eval_forgetting: bool = Field(
        False,
        description="At each evaluation, also measure forgetting against the base model on ft's general "
        "prompts and text (as `ft eval RUN --forgetting`; about two forward passes over 200 short "
        "prompts): KL, unchanged answers, general perplexity in metrics.jsonl and loss.png.",
    )

    @classmethod
    def check_rules(cls, data: Mapping[str, Any]) -> Iterator[Problem]:
        yield from _exclusive(data, "warmup_ratio", "warmup_steps", "set one")
        yield from _exclusive(data, "eval_steps", "evals_per_epoch", "set one")
        yield from _exclusive(data, "save_steps", "saves_per_epoch", "set one")
        if is_true(data.get("fp16")) and is_true(data.get("bf16")):
            yield "fp16", "fp16 and bf16 are exclusive: set one (bf16: auto picks bf16 where the GPU has it)"
        if data.get("optimizer") in AXOLOTL_OPTIMIZERS:
            yield "optimizer", f"{data['optimizer']!r} is an optimizer of axolotl's own, not available in ft"
        else:
            yield from _check_choice(data, "optimizer", "optimizer", OPTIMIZERS)
        yield from _check_choice(data, "lr_scheduler", "lr_scheduler", LR_SCHEDULERS)
        metrics = data.get("eval_causal_lm_metrics")
        for metric in metrics if isinstance(metrics, list) else []:
            if isinstance(metric, str) and metric not in EVAL_METRICS:
                yield "eval_causal_lm_metrics", _choice_problem("metric", metric, EVAL_METRICS)
        strategy = data.get("eval_strategy")
        if strategy in ("no", "epoch"):
            for key in ("eval_steps", "evals_per_epoch"):
                if _number(data.get(key)):
                    yield key, f"eval_strategy: {strategy} and {key} are exclusive: set one"
        if is_true(data.get("load_best_model_at_end")) and data.get("save_strategy") == "no":
            yield "load_best_model_at_end", "needs checkpoints: save_strategy is no"


# org/name, or a name alone (pushed to the token's own namespace, as transformers does).
HUB_REPO_ID = re.compile(r"^([A-Za-z0-9][\w.\-]*/)?[A-Za-z0-9][\w.\-]*$")


class OutputSettings(Section):
    output_dir: str = Field("./outputs/run", description="Run folder: adapter, checkpoints, logs.")
    hub_model_id: str | None = Field(
        None,
        description="Push the finished run folder (adapter, tokenizer, model card) to this Hub repo "
        "(org/name, or a name alone for the token's own namespace) at the end of ft train; the token "
        "comes from HF_TOKEN in the environment only.",
    )
    hub_strategy: Literal["end"] | None = Field(
        None, description="When to push: `end` (the only one ft has: once, when the run is finished)."
    )
    hub_revision: str | None = Field(None, description="Branch of the Hub repo to push to (default: main).")
    hub_private_repo: bool | None = Field(
        None, description="Create the Hub repo as private when it does not exist."
    )

    @classmethod
    def check_rules(cls, data: Mapping[str, Any]) -> Iterator[Problem]:
        repo = data.get("hub_model_id")
        if isinstance(repo, str) and not HUB_REPO_ID.match(repo):
            yield "hub_model_id", f"{repo!r} is not a Hub repo id: it has the form org/name (or name)"


class LoggingSettings(Section):
    use_tensorboard: bool = Field(False, description="Write TensorBoard logs to the run folder.")
    wandb_project: str | None = Field(None, description="Weights & Biases project (needs wandb installed).")
    wandb_entity: str | None = Field(None, description="Weights & Biases entity.")
    wandb_name: str | None = Field(None, description="Weights & Biases run name.")
    wandb_run_id: str | None = Field(None, description="Weights & Biases run id.")
    wandb_mode: str | None = Field(None, description="Weights & Biases mode (online, offline, disabled).")
    wandb_watch: str | None = Field(None, description="Weights & Biases gradient watching.")
    wandb_log_model: str | None = Field(None, description="Weights & Biases model logging.")
    use_mlflow: bool = Field(False, description="Log to MLflow (needs mlflow; set mlflow_tracking_uri).")
    mlflow_tracking_uri: str | None = Field(
        None, description="MLflow tracking URI, e.g. file:./mlruns or http://host:5000."
    )
    mlflow_experiment_name: str | None = Field(None, description="MLflow experiment name.")
    mlflow_run_name: str | None = Field(None, description="MLflow run name.")
    hf_mlflow_log_artifacts: bool = Field(
        False, description="Also log the checkpoints to MLflow as artifacts."
    )


PAIR_FIELDS = ("field_prompt", "field_chosen", "field_rejected")
RL_ONLY_KEYS = (
    "rl_beta",
    "orpo_alpha",
    "dpo_label_smoothing",
    "max_prompt_len",
    "precompute_ref_log_probs",
    "ref_model",
)
ORPO_REFUSES = {
    "rl_beta": "rl: orpo weighs its odds-ratio term with orpo_alpha, not rl_beta",
    "dpo_label_smoothing": "label smoothing is for rl: dpo (robust DPO), not orpo",
    "precompute_ref_log_probs": "ORPO has no reference model: remove it",
    "ref_model": "ORPO has no reference model: remove it",
}


class PreferenceSettings(Section):
    rl: str | None = Field(
        None,
        description="Preference tuning on prompt/chosen/rejected pairs: dpo, ipo (DPO with the IPO loss) "
        "or orpo (no reference model). Empty: supervised fine-tuning.",
    )
    rl_beta: float | None = Field(
        None,
        gt=0,
        description="dpo/ipo: how far the tuned model may move from the reference (beta; IPO's tau). "
        "Default 0.1.",
    )
    orpo_alpha: float | None = Field(
        None,
        gt=0,
        description="orpo: weight of the odds-ratio term beside the chosen answer's loss (the paper's "
        "lambda). Default 0.1.",
    )
    dpo_label_smoothing: float = Field(
        0.0,
        ge=0,
        lt=0.5,
        description="dpo: the share of pairs assumed mislabelled; above 0, trl's robust DPO loss.",
    )
    max_prompt_len: int | None = Field(
        None,
        gt=0,
        description="Pairs whose rendered prompt has more tokens are bad rows (reported with their row).",
    )
    precompute_ref_log_probs: bool = Field(
        False,
        description="dpo/ipo: score the pairs with the reference once, before training, not at every step.",
    )
    ref_model: str | None = Field(
        None,
        description="dpo/ipo: another reference model (Hub id, folder, .gguf). Default: the model training "
        "starts from, by switching the adapter off (no second copy in memory).",
    )

    @field_validator("rl", mode="before")
    @classmethod
    def _unset_rl(cls, value: Any) -> Any:
        """axolotl writes `rl:` empty or false for supervised fine-tuning."""
        return None if value in ("", False) else value

    @classmethod
    def check_rules(cls, data: Mapping[str, Any]) -> Iterator[Problem]:
        method = data.get("rl")
        if method in ("", False, None):
            for key in RL_ONLY_KEYS:
                if data.get(key) not in (None, False, 0, 0.0, ""):
                    yield (
                        key,
                        f"a preference-tuning key, but rl is not set: set rl: {RL_METHODS_TEXT}, or remove it",
                    )
            return
        if not isinstance(method, str):
            return
        if method in RL_REFUSED:
            yield "rl", f"{RL_REFUSED[method]} is not supported by ft: use rl: {RL_METHODS_TEXT}"
            return
        if method not in RL_METHODS:
            yield "rl", _choice_problem("rl method", method, RL_METHODS)
            return
        if method == "orpo":
            for key, message in ORPO_REFUSES.items():
                if data.get(key) not in (None, False, 0, 0.0, ""):
                    yield key, message
        elif data.get("orpo_alpha") is not None:
            yield "orpo_alpha", f"ORPO's weight: with rl: {method}, set rl_beta instead"
        if method == "ipo" and (_number(data.get("dpo_label_smoothing")) or 0) > 0:
            yield "dpo_label_smoothing", "label smoothing is for rl: dpo (robust DPO), not ipo"


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
    PreferenceSettings,
    OutputSettings,
    LoggingSettings,
    DistributedSettings,
):
    """The whole run. Cross-section rules live here; section rules on their sections."""

    @classmethod
    def check_rules(cls, data: Mapping[str, Any]) -> Iterator[Problem]:
        adapter = data.get("adapter")
        if adapter == "qlora" and not is_true(data.get("load_in_4bit")):
            yield "adapter", "qlora needs load_in_4bit: true (or adapter: lora for a 16-bit or 8-bit base)"
        for bits in ("load_in_4bit", "load_in_8bit"):
            if is_true(data.get(bits)) and adapter is None:
                yield bits, "a quantized base cannot be fully fine-tuned: set adapter: qlora or lora"
        if adapter in SOFT_PROMPT_ADAPTERS and is_true(data.get("sample_packing")):
            yield (
                "sample_packing",
                f"adapter: {adapter} prepends its soft prompt once per sequence, so packed examples would "
                "share one prompt (and peft drops the position ids that keep them apart): set sample_packing: false",
            )
        yield from _preference_rules(data)
        yield from _forgetting_rules(data)

    @model_validator(mode="after")
    def _rules_hold(self) -> FtConfig:
        # read_config reports these with their key paths before this runs; this keeps a config
        # built in code (FtConfig(...)) to the same rules.
        problems = rule_problems(self.model_dump(), complete=False)
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _preference_rules(data: Mapping[str, Any]) -> Iterator[Problem]:
    """What preference tuning changes in the data keys: pairs are neither packed nor trained on
    their prompts, and need a prompt format; pair columns mean nothing without rl."""
    method = data.get("rl")
    if method in (None, "", False):
        for key, index, item in _dataset_items(data):
            for name in PAIR_FIELDS:
                if item.get(name) not in (None, DatasetSettings.model_fields[name].default):
                    yield f"{key}[{index}].{name}", f"{name} names a pair column: set rl: {RL_METHODS_TEXT}"
        return
    if is_true(data.get("sample_packing")):
        yield "sample_packing", "preference pairs are not packed (each batch is padded): set it false"
    if data.get("adapter") in SOFT_PROMPT_ADAPTERS:
        yield (
            "adapter",
            f"rl: {method} trains a LoRA adapter or the full model, not a soft prompt: set adapter: lora",
        )
    if is_true(data.get("eval_forgetting")):
        yield (
            "eval_forgetting",
            "not measured during preference tuning: measure after training with ft eval RUN --forgetting",
        )
    for key, index, item in _dataset_items(data):
        weight = _number(item.get("weight"))
        if weight is not None and weight != 1:
            yield (
                f"{key}[{index}].weight",
                "preference pairs are not weighted: remove weight (or repeat the rows)",
            )
    if is_true(data.get("train_on_inputs")):
        yield "train_on_inputs", "preference tuning scores the answers only: remove train_on_inputs"
    if data.get("excess_length_strategy") == "split":
        yield (
            "excess_length_strategy",
            "a preference pair is not split into pieces: use drop (the default), truncate or error",
        )
    if data.get("loraplus_lr_ratio") is not None:
        yield (
            "loraplus_lr_ratio",
            f"LoRA+ is applied to supervised fine-tuning only, not rl: {method}: remove it",
        )
    if is_true(data.get("do_causal_lm_eval")):
        yield (
            "do_causal_lm_eval",
            "generation metrics are measured for supervised fine-tuning only: remove it (ft eval RUN scores "
            "the pairs' margins after training)",
        )
    for key, index, item in _dataset_items(data):
        if is_true(item.get("drop_system_message")):
            yield (
                f"{key}[{index}].drop_system_message",
                "not applied to preference pairs: remove it (and the system turns from the data)",
            )
    if is_true(data.get("group_by_length")):
        yield "group_by_length", "preference pairs are batched in random order: remove group_by_length"
    if is_true(data.get("curriculum_sampling")):
        yield (
            "curriculum_sampling",
            "preference pairs are batched in random order: remove curriculum_sampling",
        )
    if method == "orpo" and is_true(data.get("pad_to_sequence_len")):
        yield (
            "pad_to_sequence_len",
            "rl: orpo pads each batch to its longest pair: remove pad_to_sequence_len",
        )
    prompt, length = _number(data.get("max_prompt_len")), _number(data.get("sequence_len", 2048))
    if prompt is not None and length is not None and prompt >= length:
        yield (
            "max_prompt_len",
            (
                f"max_prompt_len {prompt:g} leaves no room for the answers in sequence_len {length:g}: "
                "make it smaller than sequence_len"
            ),
        )
    for key, index, item in _dataset_items(data):
        if item.get("type") == "completion" and not item.get("format"):
            yield (
                f"{key}[{index}].type",
                (
                    "completion text has no prompt to prefer one answer to: use a prompt format "
                    "(alpaca, chat_template, ...) for pair datasets"
                ),
            )


def _dataset_items(data: Mapping[str, Any]) -> Iterator[tuple[str, int, Mapping[str, Any]]]:
    for key in ("datasets", "test_datasets"):
        items = data.get(key)
        for index, item in enumerate(items if isinstance(items, list) else []):
            if isinstance(item, Mapping):
                yield key, index, item


def _forgetting_rules(data: Mapping[str, Any]) -> Iterator[Problem]:
    if not is_true(data.get("eval_forgetting")):
        return
    if not (_number(data.get("val_set_size")) or data.get("test_datasets")):
        yield "eval_forgetting", "runs at each evaluation: set val_set_size or test_datasets (an eval split)"
    for key in ("fsdp", "deepspeed"):
        if data.get(key):
            yield (
                "eval_forgetting",
                f"needs the whole model in one process; with {key} it is sharded: measure after training "
                "with ft eval RUN --forgetting",
            )


SECTIONS: tuple[type[Section], ...] = tuple(base for base in FtConfig.__bases__ if issubclass(base, Section))
"""The sections of FtConfig, in the order of its bases (the order of the config reference)."""


def rule_problems(data: Mapping[str, Any], complete: bool = True) -> list[str]:
    """Every cross-field problem of a raw config mapping, as `key.path: message` lines.

    `complete`: also what a config file must say (LoRA targets); a config built in code (as in
    tests) may leave that to the adapter builder, which checks it when it runs.
    """
    found: list[Problem] = list(AdapterSettings.check_complete(data)) if complete else []
    owners: tuple[type[Section], ...] = (*SECTIONS, FtConfig)
    for owner in owners:
        # Only a class's own rules: a section without rules would otherwise run the inherited
        # ones (FtConfig's) a second time.
        if "check_rules" in vars(owner):
            found.extend(owner.check_rules(data))
    return [f"{path}: {message}" for path, message in found]
