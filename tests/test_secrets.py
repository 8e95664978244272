"""Secrets never reach what ft shows or writes: planted fake tokens are searched for in every output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ft.base.redact import REDACTED, is_secret_key, redact
from test_train import run_cli

HF_FAKE = "hf_FAKEtokenPLANTEDbyTHEtest0123456789"
WANDB_FAKE = "0123456789abcdeffedcba9876543210deadbeef"
PASSWORD_FAKE = "correct-horse-battery-staple-PLANTED"
PLANTED = (HF_FAKE, WANDB_FAKE, PASSWORD_FAKE)

ROWS = [
    {"instruction": "What is 2 + 2?", "output": "4"},
    {"instruction": "Name a colour.", "output": "Blue."},
]


def files_holding(root: Path, needles: tuple[str, ...]) -> list[str]:
    """Every file under `root` whose bytes contain one of `needles` (binary files included)."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        content = path.read_bytes()
        found += [f"{path.relative_to(root)}: {needle}" for needle in needles if needle.encode() in content]
    return found


@pytest.mark.parametrize(
    "key", ["hf_token", "hub_token", "wandb_api_key", "WANDB_API_KEY", "db_password", "aws_secret", "apikey"]
)
def test_secret_keys_are_recognised(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key", ["tokens", "tokenizer_config", "tokenizer_use_fast", "max_new_tokens", "sequence_len"]
)
def test_vocabulary_and_ordinary_keys_are_not_secrets(key: str) -> None:
    assert not is_secret_key(key)


def test_redact_hides_secrets_at_any_depth_and_keeps_vocabulary() -> None:
    data = {
        "special_tokens": {"pad_token": "<pad>", "eos_token": "</s>"},
        "tokens": ["<tool>"],
        "hf_use_auth_token": True,
        "datasets": [{"path": "x.jsonl", "api_key": PASSWORD_FAKE}],
        "extra": {"wandb_api_key": WANDB_FAKE, "note": "ok"},
    }
    assert redact(data) == {
        "special_tokens": {"pad_token": "<pad>", "eos_token": "</s>"},
        "tokens": ["<tool>"],
        "hf_use_auth_token": True,
        "datasets": [{"path": "x.jsonl", "api_key": REDACTED}],
        "extra": {"wandb_api_key": REDACTED, "note": "ok"},
    }


def write_config(tmp_path: Path, model_dir: Path, **extra: object) -> Path:
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in ROWS * 4))
    config = {
        "base_model": str(model_dir),
        "datasets": [{"path": str(data), "type": "alpaca"}],
        "sequence_len": 256,
        "adapter": "lora",
        "lora_r": 4,
        "lora_target_modules": ["q_proj", "v_proj"],
        "micro_batch_size": 4,
        "max_steps": 2,
        "save_steps": 1,
        "logging_steps": 1,
        "use_tensorboard": True,
        "special_tokens": {"pad_token": "<unk>"},
        "dataset_prepared_path": str(tmp_path / "prepared"),
        "output_dir": str(tmp_path / "run"),
        **extra,
    }
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_secret_in_the_config_file_is_refused_by_name_without_showing_it(tmp_path: Path, capsys) -> None:
    config = tmp_path / "config.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "base_model": str(tmp_path),
                "hf_token": HF_FAKE,
                "wandb_api_key": WANDB_FAKE,
                "hf_use_auth_token": HF_FAKE,
                "datasets": [{"path": "x.jsonl", "type": "alpaca", "password": PASSWORD_FAKE}],
            }
        )
    )
    assert run_cli("validate", str(config), "--set", f"hub_token={HF_FAKE}") == 2
    captured = capsys.readouterr()
    shown = captured.out + captured.err
    assert not [needle for needle in PLANTED if needle in shown], shown
    assert "Traceback" not in shown
    for key in ("hf_token", "hub_token", "wandb_api_key", "datasets[0].password"):
        assert f"{key}: " in shown
    assert "HF_TOKEN" in shown and "WANDB_API_KEY" in shown


@pytest.mark.integration
def test_environment_secrets_never_reach_the_run_folder_the_cache_or_the_log(
    tiny_model_dir: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", HF_FAKE)
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", HF_FAKE)
    monkeypatch.setenv("WANDB_API_KEY", WANDB_FAKE)
    monkeypatch.setenv("FT_TEST_DB_PASSWORD", PASSWORD_FAKE)
    config = write_config(tmp_path, tiny_model_dir)

    assert run_cli("validate", str(config), "--print") == 0
    assert run_cli("train", str(config)) == 0
    assert run_cli("merge", str(tmp_path / "run"), "--out", str(tmp_path / "merged")) == 0
    captured = capsys.readouterr()

    run = tmp_path / "run"
    assert (run / "run.json").is_file() and list(run.glob("checkpoint-*/training_args.bin"))
    assert list(run.rglob("events.out.tfevents.*")), "tensorboard logs were not written"
    assert files_holding(tmp_path, PLANTED) == []
    assert not [needle for needle in PLANTED if needle in captured.out + captured.err]
    # Redaction must not touch vocabulary: the saved config still names the pad token.
    saved = yaml.safe_load((run / "config.yml").read_text())
    assert saved["special_tokens"] == {"pad_token": "<unk>"}
