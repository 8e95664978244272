from __future__ import annotations

from pathlib import Path

import pytest

from ft.config import dump_config, load_config
from ft.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
BASE = "base_model: org/model\ndatasets:\n  - path: org/data\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yml"
    path.write_text(text)
    return path


def problems(path: Path, overrides: tuple[str, ...] = ()) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_config(path, overrides)
    return err.value.problems


def test_every_problem_at_once_with_key_paths_and_did_you_mean(tmp_path: Path) -> None:
    text = BASE + "    feild_output: z\nlora_rr: 3\nlora_r: zero\n"
    assert problems(write(tmp_path, text)) == [
        "datasets[0].feild_output: unknown key (did you mean 'field_output'?)",
        "lora_r: Input should be a valid integer, unable to parse string as an integer",
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
        "chat_template: phi_4\n"
        "val_set_size: 0.1\n"
        "datasets:\n"
        "  - path: org/a\n    format: '{instruction} {answer}'\n    no_input_format: '{input}'\n"
        "  - path: org/b\n    type: alpacaa\n    chat_template: llama2\n"
        "test_datasets:\n  - path: org/c\n"
    )
    assert problems(write(tmp_path, text)) == [
        "chat_template: unknown chat_template 'phi_4' (did you mean phi3?)",
        "datasets[0].format: unknown field {answer}: use {input}, {instruction}, {system}",
        "datasets[0].no_input_format: cannot use {input}: it is the prompt for rows without input",
        "datasets[1].type: unknown format 'alpacaa' (did you mean alpaca?)",
        "evals_per_epoch: eval_steps and evals_per_epoch are exclusive: set one",
        "fp16: fp16 and bf16 are exclusive: set one (bf16: auto picks bf16 where the GPU has it)",
        "load_in_8bit: load_in_4bit and load_in_8bit are exclusive: keep one",
        "lora_r: Input should be a valid integer, unable to parse string as an integer",
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
        ("optimizer: nadam\n", "optimizer: unknown optimizer 'nadam': use one of adamw_torch, "),
    ],
)
def test_single_rules(tmp_path: Path, extra: str, expected: str) -> None:
    found = problems(write(tmp_path, BASE + extra))
    assert any(p.startswith(expected) for p in found), found


def test_rules_hold_for_configs_built_in_code() -> None:
    from pydantic import ValidationError

    from ft.schema import FtConfig

    with pytest.raises(ValidationError, match="warmup_ratio and warmup_steps are exclusive"):
        FtConfig(base_model="m", datasets=[{"path": "d"}], warmup_steps=1, warmup_ratio=0.1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the file is empty"),
        ("- a\n- b\n", "the top level is a list, expected a mapping of keys"),
        ("a: [1,\n", "YAML syntax error at line 2, column 1"),
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


def test_dump_round_trips_and_redacts(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, BASE + "wandb_project: p\n"))
    again = write(tmp_path, dump_config(cfg))
    assert load_config(again) == cfg
    fake = {"hub_token": "hf_secret", "nested": {"api_key": "k"}}
    from ft.config import _redact

    assert _redact(fake) == {"hub_token": "***", "nested": {"api_key": "***"}}


def test_cli_validate_exit_codes(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ft.cli import app

    runner = CliRunner()
    ok = runner.invoke(app, ["validate", str(REPO / "configs" / "quickstart.yml")])
    assert ok.exit_code == 0, ok.output
    assert "ok" in ok.output
    bad = runner.invoke(app, ["validate", str(write(tmp_path, BASE + "lora_rr: 1\n"))])
    assert isinstance(bad.exception, ConfigError)


def test_cli_main_exits_2_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ft.cli import main

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
        "import sys; from ft.cli import main\n"
        "try:\n    main(['validate', 'configs/quickstart.yml'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'transformers', 'peft', 'trl', 'datasets') if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
