"""A run left alone, end to end on the tiny model: plain progress lines when the output is not a
terminal, one tokens/s everywhere, run.json's record (command line, hardware, peak memory, first
start, resumes), --resume refusing a changed config unless --allow-changes, the umask."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest

from test_train import run_cli, write_config

pytestmark = pytest.mark.integration


def test_a_run_records_itself_and_resumes_only_as_configured(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, tiny_model_dir, max_steps=4, save_steps=2, val_set_size=2, eval_steps=2)
    run = tmp_path / "run"
    previous_umask = os.umask(0o022)
    try:
        assert run_cli("train", str(config), "--set", "lora_dropout=0.0") == 0
    finally:
        os.umask(previous_umask)
    out = capsys.readouterr().out

    # Off a terminal (captured), one plain line per logged step and per evaluation, and what loads.
    steps = re.findall(r"^step (\d)/4  loss \d+\.\d{4}  lr \S+  tok/s [\d,]+  eta \S+$", out, re.MULTILINE)
    assert steps == ["1", "2", "3", "4"], out
    assert re.search(r"^step 2/4: eval loss \d+\.\d{4}$", out, re.MULTILINE), out
    assert f"loading the base model {tiny_model_dir} (float32)" in out
    assert re.search(r"base model loaded in \d+\.\d s", out)

    record = json.loads((run / "run.json").read_text())
    assert record["command"] == f"ft train {config} --set lora_dropout=0.0"
    assert record["overrides"] == ["lora_dropout=0.0"] and record["config_file"] == str(config)
    assert record["python"].count(".") == 2
    assert record["hardware"]["cpu_cores"] >= 1 and record["hardware"]["gpus"] == []
    assert record["peak_memory"]["host_rss_bytes"] > 100 * 2**20
    assert record["resumes"] == [] and record["started_at"] <= record["finished_at"]
    adapter_config = json.loads((run / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == record["base_model_name"] == str(tiny_model_dir)

    # One tokens/s: the summary line, run.json and the last metrics row say the same number.
    speed = record["tokens_per_s"]
    assert speed == pytest.approx(record["throughput"]["tokens"] / record["throughput"]["step_seconds"])
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["tokens_per_s"] for r in rows if "loss" in r][-1] == speed
    assert f"tokens/s {speed:,.0f}" in out

    # Files and folders follow the umask (safetensors and mkstemp write 0600 on their own).
    for path in (
        run / "run.json",
        run / "adapter_model.safetensors",
        run / "checkpoint-2" / "adapter_model.safetensors",
    ):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    assert stat.S_IMODE(run.stat().st_mode) == 0o755

    # A resume with another max_steps is refused, the keys named; --allow-changes records them.
    assert run_cli("train", str(config), "--resume", "--set", "max_steps=6") == 2
    err = capsys.readouterr().err
    assert "max_steps: 4 -> 6" in err and "--allow-changes" in err
    assert (run / "run.json").is_file()  # refused before anything changed
    assert run_cli("train", str(config), "--resume", "--allow-changes", "--set", "max_steps=6") == 0
    resumed = json.loads((run / "run.json").read_text())
    assert resumed["global_step"] == 6 and resumed["started_at"] == record["started_at"]
    [entry] = resumed["resumes"]
    assert entry["from_checkpoint"] == "checkpoint-4" and entry["changes"] == {"max_steps": [4, 6]}
    assert resumed["command"] == f"ft train {config} --resume --allow-changes --set max_steps=6"
