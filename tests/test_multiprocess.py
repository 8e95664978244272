"""`ft train` under torchrun: two CPU processes (gloo) train data-parallel and leave one run folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_train import ADAPTER_RUN_FILES, top_level, write_config

pytestmark = pytest.mark.integration


def test_two_processes_share_the_data_and_write_one_run(tiny_model_dir: Path, tmp_path: Path) -> None:
    # 16 rows, 4 per process and step: 2 processes need 2 steps per epoch where 1 process needs 4.
    config = write_config(tmp_path, tiny_model_dir, max_steps=None, num_epochs=1, save_steps=2)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "ft",
            "train",
            str(config),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    run = tmp_path / "run"
    info = json.loads((run / "run.json").read_text())
    assert info["global_step"] == 2, output
    assert top_level(run) == ADAPTER_RUN_FILES
    assert [p.name for p in run.glob("checkpoint-*")] == ["checkpoint-2"]
    assert proc.stdout.count("run folder:") == 1  # only rank 0 reports
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows if "loss" in row] == [1, 2]  # one writer, no duplicate lines
