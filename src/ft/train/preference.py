"""Preference tuning (`rl: dpo | ipo | orpo`): trl's DPOTrainer and ORPOTrainer on ft's pairs.

The trainer settings are built by a pure function, as the SFTConfig is (`preference_config_kwargs`);
the trainers get `prompt_ids` / `chosen_ids` / `rejected_ids` from `ft.data.pairs` and tokenize
nothing. The reference of DPO/IPO is the model training starts from, without a second copy in
memory: the base with the adapter switched off (a new adapter), or a frozen copy of the adapter
`lora_model_dir` continues (trl's "ref" adapter, an adapter's size). `ref_model` loads another
model instead; a full fine-tune needs a copy unless `precompute_ref_log_probs` scores the pairs
once before training. ORPO has no reference.

This module imports trl at import time: import it only from code that trains.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from trl import DPOTrainer
from trl.experimental.orpo import ORPOTrainer

from ft.base.errors import FtError
from ft.config.schema import FtConfig, PreferenceSettings
from ft.data.tokens import IGNORE_INDEX
from ft.models.precision import Precision
from ft.train.callbacks import QuietCheckpoints
from ft.train.settings import sft_config_kwargs, with_known_checkpointing_names

if TYPE_CHECKING:
    from trl import DPOConfig
    from trl.experimental.orpo import ORPOConfig

DEFAULT_BETA = 0.1
"""trl's default for DPO's beta and ORPO's lambda, and axolotl's."""

SFT_ONLY_SETTINGS = (
    "dataset_kwargs",
    "packing",
    "padding_free",
    "pad_to_multiple_of",
    "train_sampling_strategy",
)
"""SFTConfig arguments that DPOConfig / ORPOConfig do not take or that mean something else there."""

REWARD_KEYS = ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies")
"""What trl logs for both trainers (DPO: beta x log-ratio to the reference; ORPO: beta x mean log-prob)."""


def loss_type(cfg: PreferenceSettings) -> str:
    """trl's DPO loss for `rl`: sigmoid (DPO), robust (DPO with label smoothing), ipo."""
    if cfg.rl == "ipo":
        return "ipo"
    return "robust" if cfg.dpo_label_smoothing > 0 else "sigmoid"


def preference_config_kwargs(
    cfg: FtConfig,
    precision: Precision,
    run_dir: Path,
    *,
    train_rows: int,
    has_eval: bool,
    world_size: int = 1,
) -> dict[str, Any]:
    """The DPOConfig / ORPOConfig arguments as a plain dict: the SFT settings that apply to any
    trainer (batch, schedule, precision, eval, save, logging), and the method's own."""
    kwargs = sft_config_kwargs(
        cfg, precision, run_dir, train_rows=train_rows, has_eval=has_eval, world_size=world_size
    )
    for key in SFT_ONLY_SETTINGS:
        kwargs.pop(key, None)
    # Pairs were cut to sequence_len by ft.data.pairs; the collator's cut is then a no-op.
    kwargs["max_length"] = cfg.sequence_len
    # The trainers read prompt_ids / chosen_ids / rejected_ids, which are no model inputs.
    kwargs["remove_unused_columns"] = False
    if cfg.rl == "orpo":
        kwargs["beta"] = cfg.orpo_alpha or DEFAULT_BETA
        return kwargs
    kwargs.update(
        beta=cfg.rl_beta or DEFAULT_BETA,
        loss_type=[loss_type(cfg)],
        label_smoothing=cfg.dpo_label_smoothing,
        precompute_ref_log_probs=cfg.precompute_ref_log_probs,
        precompute_ref_batch_size=cfg.eval_batch_size or cfg.micro_batch_size,
        pad_to_multiple_of=cfg.sequence_len if cfg.pad_to_sequence_len else None,
    )
    return kwargs


def build_preference_config(
    cfg: FtConfig,
    precision: Precision,
    run_dir: Path,
    *,
    train_rows: int,
    has_eval: bool,
    world_size: int = 1,
) -> DPOConfig | ORPOConfig:
    from trl import DPOConfig
    from trl.experimental.orpo import ORPOConfig

    kwargs = preference_config_kwargs(
        cfg, precision, run_dir, train_rows=train_rows, has_eval=has_eval, world_size=world_size
    )
    config_class = ORPOConfig if cfg.rl == "orpo" else DPOConfig
    try:
        return config_class(**with_known_checkpointing_names(kwargs, config_class))
    except ValueError as err:
        raise FtError(f"training settings rejected by trl: {err}") from err


# ---------------------------------------------------------------------------------------------
# The trainers


class FtDPOTrainer(QuietCheckpoints, DPOTrainer):
    """DPOTrainer on ft's pre-tokenized pairs."""

    def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
        if "prompt_ids" in dataset.column_names:
            return dataset  # rendered and tokenized by ft.data.pairs
        return super()._prepare_dataset(dataset, processing_class, args, dataset_name)


class FtORPOTrainer(QuietCheckpoints, ORPOTrainer):
    """ORPOTrainer on ft's pre-tokenized pairs; logs `num_tokens` as the DPO trainer does."""

    pair_tokens = 0

    def tokenize_row(self, feature: dict[str, Any], model: Any = None) -> dict[str, Any]:
        if "prompt_ids" not in feature:
            return dict(super().tokenize_row(feature, model))
        return orpo_columns(feature["prompt_ids"], feature["chosen_ids"], feature["rejected_ids"])

    def training_step(self, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        masks = inputs["chosen_attention_mask"].sum() + inputs["rejected_attention_mask"].sum()
        self.pair_tokens += int(masks) * self.accelerator.num_processes
        return super().training_step(model, inputs, *args, **kwargs)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            logs["num_tokens"] = float(self.pair_tokens)
        super().log(logs, start_time)


def orpo_columns(prompt: list[int], chosen: list[int], rejected: list[int]) -> dict[str, list[int]]:
    """ORPO's row layout: prompt alone, and each answer after the prompt with the prompt masked."""
    row = {"prompt_input_ids": list(prompt), "prompt_attention_mask": [1] * len(prompt)}
    for side, answer in (("chosen", chosen), ("rejected", rejected)):
        ids = [*prompt, *answer]
        row[f"{side}_input_ids"] = ids
        row[f"{side}_attention_mask"] = [1] * len(ids)
        row[f"{side}_labels"] = [IGNORE_INDEX] * len(prompt) + list(answer)
    return row


def build_preference_trainer(
    cfg: FtConfig,
    model: Any,
    args: Any,
    data: Any,
    tokenizer: Any,
    callbacks: list[Any],
    reference: Any = None,
) -> Any:
    """DPO/IPO or ORPO trainer for the adapted model and ft's pairs (`ft.data.pairs.prepare_pairs`)."""
    evaluation = data.eval if data.eval is not None and len(data.eval) else None
    # The model must agree with the tokenizer on padding (trl's DPO trainer does this itself;
    # without it transformers rewrites the config with a warning).
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    common = {
        "model": model,
        "args": args,
        "train_dataset": data.train,
        "eval_dataset": evaluation,
        "processing_class": tokenizer,
        "callbacks": callbacks,
    }
    if cfg.rl == "orpo":
        return FtORPOTrainer(**common)
    trainer = FtDPOTrainer(ref_model=reference, **common)
    if not cfg.lora_model_dir:
        # trl copies any adapter it is handed into a frozen "ref" adapter and runs the reference
        # forward through it. A new adapter is a no-op until trained (B = 0), so the base with the
        # adapter switched off is the same reference without the copy's LoRA work in every
        # reference forward (trl's path for a `peft_config`; bench/dpo.py measures both).
        drop_reference_adapter(trainer.model)
    return trainer


def load_reference(
    cfg: FtConfig, base_path: str, precision: Precision, vocab_rows: int
) -> tuple[Any, str | None]:
    """The reference model DPO compares against, and a note when it costs a second copy; None when
    the adapter switch (or precomputed log-probabilities, or ORPO) makes a copy unnecessary."""
    if cfg.rl == "orpo":
        return None, None
    if cfg.ref_model:
        from ft.models.loading import resolve_base_model_path

        path = resolve_base_model_path(cfg.model_copy(update={"base_model": cfg.ref_model, "revision": None}))
        reference = _load_frozen(cfg, path, precision, vocab_rows, "ref_model")
        return reference, f"reference: ref_model {cfg.ref_model} (a second model in memory)"
    if cfg.adapter is None and not cfg.precompute_ref_log_probs:
        reference = _load_frozen(cfg, base_path, precision, vocab_rows, "base_model")
        return reference, (
            "reference: a second copy of the base weights (full fine-tune); "
            "precompute_ref_log_probs: true scores the pairs once instead"
        )
    return None, None


def _load_frozen(cfg: FtConfig, path: str, precision: Precision, vocab_rows: int, key: str) -> Any:
    from ft.models.loading import load_model_from_path

    reference = load_model_from_path(cfg, path, None, precision, quantize=cfg.adapter is not None)
    rows = int(reference.get_input_embeddings().weight.shape[0])  # type: ignore[index]
    if rows < vocab_rows:
        raise FtError(
            f"{key}: the reference has {rows} token embeddings, the run's tokenizer {vocab_rows}: "
            "the reference must share the run's vocabulary",
            hint="give a reference with the same tokenizer, or remove ref_model (the base is used)",
        )
    reference.requires_grad_(False)
    return reference.eval()


def reference_description(cfg: FtConfig) -> str:
    """What the reference of this run is, for run.json and the log."""
    if cfg.rl == "orpo":
        return "none (ORPO)"
    if cfg.ref_model:
        return f"ref_model: {cfg.ref_model}"
    if cfg.adapter is None:
        return "base weights, precomputed" if cfg.precompute_ref_log_probs else "a copy of the base weights"
    if cfg.lora_model_dir:
        return f"the adapter of lora_model_dir ({cfg.lora_model_dir}) as it was before training"
    return "the base model (adapter switched off)"


def drop_reference_adapter(model: Any) -> None:
    """trl's frozen copy of the adapter ("ref"): not needed for a new adapter, and kept out of the
    run folder for a continued one."""
    config = getattr(model, "peft_config", None)
    if isinstance(config, dict) and "ref" in config:
        model.delete_adapter("ref")


def rl_record(cfg: FtConfig, history: list[dict[str, Any]]) -> dict[str, Any]:
    """run.json's `rl`: the method's settings and the last logged rewards (train and eval)."""
    record: dict[str, Any] = {"method": cfg.rl, "reference": reference_description(cfg)}
    if cfg.rl == "orpo":
        record["orpo_alpha"] = cfg.orpo_alpha or DEFAULT_BETA
    else:
        record.update(
            beta=cfg.rl_beta or DEFAULT_BETA,
            loss_type=loss_type(cfg),
            label_smoothing=cfg.dpo_label_smoothing,
            precompute_ref_log_probs=cfg.precompute_ref_log_probs,
        )
    record["max_prompt_len"] = cfg.max_prompt_len
    record["final_train"] = last_rewards(history, "")
    record["final_eval"] = last_rewards(history, "eval_")
    return record


def last_rewards(history: list[dict[str, Any]], prefix: str) -> dict[str, float] | None:
    """The newest logged reward margins / accuracies (`eval_` for the eval split), or None."""
    for row in reversed(history):
        if f"{prefix}rewards/margins" in row:
            return {
                key.split("/")[1]: float(row[f"{prefix}{key}"])
                for key in REWARD_KEYS
                if f"{prefix}{key}" in row
            }
    return None
