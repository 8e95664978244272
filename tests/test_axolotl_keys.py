"""axolotl's keys across releases: every one has a status, unset ones are silent, the mapped and
honoured ones are read as ft's (the training runs that check their effect: test_axolotl_training.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ft.base.errors import ConfigError
from ft.config.axolotl_table import (
    GENERIC,
    dataset_key_status,
    known_keys,
    top_key_status,
)
from ft.config.load import read_config
from ft.config.schema import DatasetSettings, FtConfig

BASE = {"base_model": "org/model", "datasets": [{"path": "org/data"}]}


def read(
    tmp_path: Path, extra: dict[str, Any], dataset: dict[str, Any] | None = None
) -> tuple[FtConfig, list[str]]:
    data = {**BASE, **extra}
    if dataset is not None:
        data["datasets"] = [{"path": "org/data", **dataset}]
    path = tmp_path / "c.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return read_config(path)


def problems(tmp_path: Path, extra: dict[str, Any], dataset: dict[str, Any] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as err:
        read(tmp_path, extra, dataset)
    return err.value.problems


def test_the_key_list_spans_axolotls_releases() -> None:
    keys = known_keys()
    assert next(iter(keys["releases"])) == "main@2023-04" and "v0.4.0" in keys["releases"]
    assert "v0.18.0" in keys["releases"] and len(keys["releases"]) >= 60
    assert keys["top"]["gptq_groupsize"][0] == "main@2023-04"  # a key of the first releases
    assert "lora_target_linear" in keys["top"] and "message_field_role" in keys["dataset"]
    assert len(keys["top"]) >= 500


def test_every_key_of_every_release_has_a_status_of_its_own() -> None:
    """No key of the generated list falls through to the generic 'not available' line."""
    generic = [k for k in known_keys()["top"] if top_key_status(k, FtConfig.model_fields).note == GENERIC]
    generic += [
        k
        for k in known_keys()["dataset"]
        if dataset_key_status(k, DatasetSettings.model_fields).note == GENERIC
    ]
    assert generic == []


def test_an_unset_value_of_any_known_key_is_silent(tmp_path: Path) -> None:
    """Empty, null and false values of every known key that ft does not hold as a field."""
    keys = [k for k in known_keys()["top"] if k not in FtConfig.model_fields and k not in ("datasets",)]
    for value in (None, False, ""):
        cfg, notes = read(tmp_path, dict.fromkeys(keys, value))
        assert notes == [], (value, notes)
    dataset_keys = [k for k in known_keys()["dataset"] if k not in DatasetSettings.model_fields]
    cfg, notes = read(tmp_path, {}, dict.fromkeys(dataset_keys, None))
    assert notes == [] and cfg.datasets[0].path == "org/data"


def test_axolotls_default_values_are_silent(tmp_path: Path) -> None:
    """A key set to axolotl's own default (or a parallelism of 1) changes nothing: no word."""
    _cfg, notes = read(
        tmp_path,
        {
            "sample_packing_bin_size": 200,
            "save_safetensors": True,
            "tokenizer_save_jinja_files": True,
            "context_parallel_size": 1,
            "tensor_parallel_size": 1,
            "lora_on_cpu": True,
            "mean_resizing_embeddings": True,
        },
    )
    assert notes == []


def test_a_key_no_release_defined_is_an_unknown_key(tmp_path: Path) -> None:
    assert problems(tmp_path, {"adam_eps": 1e-8, "gptq_groupsize_typo": None}) == [
        "adam_eps: unknown key (did you mean 'adam_epsilon'?)",
        "gptq_groupsize_typo: unknown key (did you mean 'gptq_groupsize'?)",
    ]


def test_special_token_names_are_not_taken_for_secrets(tmp_path: Path) -> None:
    assert problems(tmp_path, {"bos_token": "<s>", "hf_token": "x"}) == [
        "bos_token: unknown key",
        "hf_token: a secret in the config file: set HF_TOKEN in the environment and remove the key from "
        "the file (config files get shared; ft never reads secrets from them)",
    ]


@pytest.mark.parametrize(
    ("extra", "read_as", "note"),
    [
        (
            {"evaluation_strategy": "epoch"},
            {"eval_strategy": "epoch"},
            'evaluation_strategy: "epoch" (axolotl) read as eval_strategy: "epoch"',
        ),
        (
            {"dataset_num_proc": 2},
            {"dataset_processes": 2},
            "dataset_num_proc: 2 (axolotl) read as dataset_processes: 2",
        ),
        (
            {"liger_rope": True, "liger_rms_norm": True},
            {"use_liger_kernel": True},
            "liger_rope: true (axolotl) read as use_liger_kernel: true",
        ),
        (
            {"model_config": {"output_router_logits": True}},
            {"overrides_of_model_config": {"output_router_logits": True}},
            'model_config: {"output_router_logits": true} (axolotl) read as overrides_of_model_config: '
            '{"output_router_logits": true}',
        ),
        (
            {"gradient_checkpointing": "offload"},
            {"gradient_checkpointing": True},
            'gradient_checkpointing: "offload" (axolotl) read as gradient_checkpointing: true: offloading is a '
            "memory option",
        ),
        (
            {"batch_size": 16, "micro_batch_size": 4},
            {"gradient_accumulation_steps": 4},
            "batch_size: 16 (axolotl) read as gradient_accumulation_steps: 4 (batch_size / micro_batch_size, "
            "per process)",
        ),
        (
            {"cosine_min_lr_ratio": 0.1},
            {"lr_scheduler": "cosine_with_min_lr", "lr_scheduler_kwargs": {"min_lr_rate": 0.1}},
            'cosine_min_lr_ratio: 0.1 (axolotl) read as lr_scheduler: "cosine_with_min_lr", '
            'lr_scheduler_kwargs: {"min_lr_rate": 0.1}',
        ),
        (
            {"fsdp_version": 2, "fsdp_config": {"reshard_after_forward": True}},
            {"fsdp_config": {"reshard_after_forward": True, "version": 2}},
            "fsdp_version: 2 (axolotl) read as fsdp_config.version: 2",
        ),
        (
            {"tokens": {"pad_token": "<pad>"}},
            {"special_tokens": {"pad_token": "<pad>"}, "tokens": []},
            "tokens: a mapping (axolotl's old name) read as special_tokens",
        ),
        (
            {"eval_causal_lm_metrics": ["sacrebleu", "comet"]},
            {"eval_causal_lm_metrics": ["sacrebleu"]},
            "eval_causal_lm_metrics: comet left out: it scores with a COMET model ft does not load",
        ),
    ],
)
def test_mapped_keys_are_read_as_ft_keys_with_a_note(
    tmp_path: Path, extra: dict[str, Any], read_as: dict[str, Any], note: str
) -> None:
    cfg, notes = read(tmp_path, extra)
    assert {key: getattr(cfg, key) for key in read_as} == read_as
    assert notes[0] == note


def test_speed_only_kernels_and_other_trackers_are_ignored_with_a_note(tmp_path: Path) -> None:
    _cfg, notes = read(
        tmp_path,
        {
            "plugins": ["axolotl.integrations.cut_cross_entropy.CutCrossEntropyPlugin"],
            "lora_mlp_kernel": True,
            "use_comet": True,
            "hub_strategy": "every_save",
        },
    )
    assert notes == [
        "hub_strategy: every_save (axolotl) read as end: ft pushes the finished run once, not its "
        "checkpoints on the way",
        "plugins: axolotl.integrations.cut_cross_entropy.CutCrossEntropyPlugin ignored: a speed or memory "
        "option; ft computes the same result without it",
        "lora_mlp_kernel: true ignored: a speed or memory option; ft computes the same result without it",
        "use_comet: true ignored: metrics go to metrics.jsonl, and to TensorBoard, W&B or MLflow when set",
    ]


def test_honoured_keys_load_as_fields(tmp_path: Path) -> None:
    cfg, notes = read(
        tmp_path,
        {
            "gradient_checkpointing": True,
            "gradient_checkpointing_kwargs": {"use_reentrant": True},
            "auto_resume_from_checkpoints": True,
            "neftune_noise_alpha": 5,
            "adapter": "lora",
            "lora_target_linear": True,
            "loraplus_lr_ratio": 16,
            "peft_layers_to_transform": [0, 1],
            "eot_tokens": ["<|im_end|>"],
            "chat_template": "jinja",
            "chat_template_jinja": "{{ messages }}",
            "eval_strategy": "epoch",
            "save_strategy": "epoch",
            "load_best_model_at_end": True,
            "metric_for_best_model": "eval_loss",
            "optim_args": {"amsgrad": True},
            "evals_per_epoch": 0,
            "do_causal_lm_eval": True,
            "eval_causal_lm_metrics": ["sacrebleu", "chrf"],
            "dataset_processes": 2,
            "shuffle_merged_datasets": False,
            "lora_on_cpu": True,
            "use_mlflow": True,
            "mlflow_tracking_uri": "file:./mlruns",
            "wandb_mode": "offline",
        },
        {"type": "chat_template", "roles_to_train": ["user", "assistant"], "train_on_eos": "all"},
    )
    assert notes == []
    assert cfg.gradient_checkpointing_kwargs == {"use_reentrant": True} and cfg.evals_per_epoch == 0
    assert cfg.datasets[0].roles_to_train == ["user", "assistant"] and cfg.datasets[0].train_on_eos == "all"


def test_evals_per_epoch_zero_is_off_but_not_with_eval_steps(tmp_path: Path) -> None:
    assert problems(tmp_path, {"eval_strategy": "no", "eval_steps": 5}) == [
        "eval_steps: eval_strategy: no and eval_steps are exclusive: set one"
    ]


def test_a_custom_prompt_mapping_takes_axolotls_defaults(tmp_path: Path) -> None:
    cfg, _notes = read(
        tmp_path, {}, {"type": {"format": "Q: {instruction} {input}\nA:", "field_instruction": "q"}}
    )
    dataset = cfg.datasets[0]
    assert (dataset.format, dataset.no_input_format, dataset.system_format) == (
        "Q: {instruction} {input}\nA:",
        "{instruction} ",
        "{system}",
    )


@pytest.mark.parametrize(
    ("conversation", "template", "system"),
    [
        ("chatml", "chatml", "You are a helpful assistant."),
        ("llama3", "llama3", "You are a helpful assistant."),
        ("llama-2", "llama2_chat", None),
        (
            "vicuna_v1.1",
            "vicuna_v1.1",
            "A chat between a curious user and an artificial intelligence assistant. "
            "The assistant gives helpful, detailed, and polite answers to the user's questions.",
        ),
    ],
)
def test_legacy_sharegpt_reads_as_the_fastchat_template(
    tmp_path: Path, conversation: str, template: str, system: str | None
) -> None:
    cfg, notes = read(tmp_path, {}, {"type": "sharegpt", "conversation": conversation})
    dataset = cfg.datasets[0]
    assert (dataset.type, dataset.chat_template, dataset.system_prompt) == ("chat_template", template, system)
    assert dataset.message_property_mappings == {"role": "from", "content": "value"}
    assert notes[0].startswith(
        f"datasets[0].type: sharegpt (axolotl's legacy ShareGPT) read as type: chat_template, chat_template: {template}"
    )


def test_sharegpt_chat_and_loaders_are_legacy_sharegpt_too(tmp_path: Path) -> None:
    for kind in ("sharegpt:chat", "sharegpt.load_role"):
        cfg, _ = read(tmp_path, {}, {"type": kind, "conversation": "chatml"})
        assert (cfg.datasets[0].type, cfg.datasets[0].chat_template) == ("chat_template", "chatml")


def test_an_unknown_fastchat_template_says_which_there_are(tmp_path: Path) -> None:
    assert problems(tmp_path, {}, {"type": "sharegpt", "conversation": "koala_v1"}) == [
        "datasets[0].conversation: FastChat's 'koala_v1' template is not available in ft: use one of chatml, "
        "llama3, llama-3, llama-2, llama2, vicuna_v1.1, zephyr, mistral, or type: chat_template with a chat_template"
    ]


def test_legacy_sharegpt_roles_from_field_human_and_field_model(tmp_path: Path) -> None:
    cfg, _ = read(tmp_path, {}, {"type": "sharegpt", "field_human": "prompter", "field_model": "bot"})
    assert cfg.datasets[0].roles == {"user": ["prompter"], "assistant": ["bot"]}


def test_preference_datasets_follow_from_the_rl_line(tmp_path: Path) -> None:
    """A KTO config names KTO once; its labelled datasets are not listed on their own. A DPO/ORPO
    config is trained: only a pair type ft does not read is a problem, said with the ones it reads."""
    found = problems(tmp_path, {"rl": "kto"}, {"type": "chatml.intel", "field_label": "label"})
    assert found == ["rl: KTO (unpaired good/bad labels) is not supported by ft: use rl: dpo, ipo or orpo"]
    found = problems(tmp_path, {"rl": "orpo", "orpo_alpha": 0.1}, {"type": "chat_template.argilla"})
    assert found == [
        "datasets[0].type: 'chat_template.argilla' is a preference-data type ft does not read (with rl, ft "
        "reads chatml.X and llama3.X for X in intel, argilla, prompt_pairs, ultra, argilla_chat, and "
        "chat_template.default)"
    ]


def test_a_dataset_type_of_a_feature_ft_lacks_is_named(tmp_path: Path) -> None:
    assert problems(tmp_path, {}, {"type": "bradley_terry.chat_template"}) == [
        "datasets[0].type: 'bradley_terry.chat_template' is a reward-model type"
    ]


def test_validate_explain_shows_what_ft_does_with_each_key(tmp_path: Path, capsys) -> None:
    from ft.cli.app import main

    config = tmp_path / "c.yml"
    config.write_text(
        "base_model: org/model\nflash_attention: true\nstrict: false\nuse_comet: true\n"
        "unsloth_lora_mlp: true\nlora_rr: 3\ntokens: [x]\ndatasets:\n  - path: org/data\n    type: sharegpt\n"
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["validate", str(config), "--explain"])
    assert exit_info.value.code == 2  # unsloth and the typo are still problems
    out = capsys.readouterr().out
    rows = {
        line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[2:4]]
        for line in out.splitlines()
        if line.startswith("│") and line.split("│")[1].strip()
    }
    assert rows["base_model"][1] == "ft" and rows["tokens"][1] == "ft"
    assert rows["flash_attention"] == ["true", "mapped"]
    assert rows["strict"] == ["false", "unset"]
    assert rows["use_comet"][1] == "ignored"
    assert rows["unsloth_lora_mlp"][1] == "unsupported"
    assert rows["lora_rr"][1] == "unknown"
    assert rows["datasets[0].type"] == ['"sharegpt"', "mapped"]
