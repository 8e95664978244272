"""Every config in configs/ loads and validates, including the offline path checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ft.config.load import read_config

REPO = Path(__file__).resolve().parent.parent
SHIPPED = sorted((REPO / "configs").glob("*.yml"))
EXPECTED = {
    "forgetting-harmful.yml",
    "quickstart-mix.yml",
    "quickstart-prompt-tuning.yml",
    "gpt2-lora.yml",
    "llama2-qlora.yml",
    "mistral-qlora.yml",
    "phi2-qlora.yml",
    "phi3-qlora.yml",
    "quickstart.yml",
    "quickstart-dpo.yml",
}
CONTINUES = {"quickstart-dpo.yml": "quickstart.yml"}
"""Configs whose lora_model_dir is the run folder another shipped config writes (SFT, then DPO)."""


def stand_in_for_earlier_run(path: Path, tmp_path: Path) -> list[str]:
    """The --set that points lora_model_dir at a stand-in of the earlier run's adapter folder."""
    if path.name not in CONTINUES:
        return []
    folder = tmp_path / "earlier-run"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    return [f"lora_model_dir={folder}"]


def test_the_documented_configs_are_shipped() -> None:
    assert {path.name for path in SHIPPED} >= EXPECTED


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_config_validates_without_notes(
    path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(REPO)  # relative data paths are relative to the repository root
    cfg, notes = read_config(path, stand_in_for_earlier_run(path, tmp_path))
    assert notes == []  # shipped configs use ft's own keys, nothing ft has to translate
    assert cfg.base_model


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_config_is_commented_for_a_reader(path: Path) -> None:
    text = path.read_text()
    assert text.startswith("#"), "open with a comment: what the config trains and how to run it"
    assert yaml.safe_load(text)


def test_a_continuing_config_reads_the_run_its_predecessor_writes() -> None:
    for name, earlier in CONTINUES.items():
        config = yaml.safe_load((REPO / "configs" / name).read_text())
        assert (
            config["lora_model_dir"] == yaml.safe_load((REPO / "configs" / earlier).read_text())["output_dir"]
        )


def test_recipe_values() -> None:
    llama = read_config(REPO / "configs" / "llama2-qlora.yml")[0]
    assert (llama.lora_r, llama.lora_alpha, llama.lora_dropout) == (64, 16, 0.1)
    assert (llama.optimizer, llama.lr_scheduler, llama.learning_rate) == ("paged_adamw_32bit", "cosine", 2e-4)
    assert (llama.warmup_ratio, llama.max_grad_norm, llama.weight_decay) == (0.03, 0.3, 0.001)
    assert llama.bnb_4bit_quant_type == "nf4" and llama.bnb_4bit_compute_dtype == "float16" and llama.fp16
    assert llama.datasets[0].type == "completion"

    phi2 = read_config(REPO / "configs" / "phi2-qlora.yml")[0]
    assert (phi2.lora_r, phi2.lora_alpha, phi2.lora_dropout) == (32, 64, 0.05)
    assert (phi2.micro_batch_size, phi2.gradient_accumulation_steps, phi2.num_epochs) == (2, 32, 2)
    assert (phi2.optimizer, phi2.warmup_ratio, phi2.weight_decay) == ("paged_adamw_8bit", 0.05, 0.01)
    data = phi2.datasets[0]
    assert (data.type, data.field_instruction, data.field_output) == ("phi2", "Context", "Response")

    gpt2 = read_config(REPO / "configs" / "gpt2-lora.yml")[0]
    assert gpt2.adapter == "lora" and not gpt2.load_in_4bit and gpt2.lora_fan_in_fan_out

    phi3 = read_config(REPO / "configs" / "phi3-qlora.yml")[0]
    assert phi3.chat_template == "phi3" and phi3.datasets[0].type == "chat_template"
