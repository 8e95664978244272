from __future__ import annotations

from pathlib import Path

import pytest
import yaml

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


def test_cross_field_rule_names_the_fix(tmp_path: Path) -> None:
    assert problems(write(tmp_path, BASE + "adapter: qlora\n")) == [
        "(top level): adapter: qlora needs load_in_4bit: true (or use adapter: lora)"
    ]


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


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yml")), ids=lambda p: p.name)
def test_shipped_configs_validate(path: Path) -> None:
    assert yaml.safe_load(path.read_text())
    load_config(path)


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
