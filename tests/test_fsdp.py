"""Sharded training where a CPU can run it: FSDP2 on two gloo ranks.

tests/fsdp_worker.py shards ft's model with accelerate's own FSDP2 code under the shipped
configs/accelerate/fsdp.yaml (full fine-tune, LoRA, QLoRA) on 2 CPU ranks. Its loss per step must
equal a one-process run of the same global batch within 1e-5 (relative; float32, only the order
of the sums differs), and its gathered save must hold the tensors of the one-process save (same
names and shapes, values within 1e-3, a tenth of one AdamW step at lr 0.01) and the names and shapes of
the run folder `ft train` writes for the same config.
`ft train` itself under that launch on a CPU trains as DDP and says so: test_launch.py (the message)
and bench/gpu's check in --tiny mode (a real launch, test_gpu_check.py).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fsdp_worker import train

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parent.parent
FSDP_CONFIG = REPO / "configs" / "accelerate" / "fsdp.yaml"
KINDS = {
    "full": {"adapter": None},
    "lora": {"adapter": "lora"},
    # float32 storage: FSDP shards floating tensors only (the GPU config says bfloat16, the compute dtype there).
    "qlora": {
        "adapter": "qlora",
        "load_in_4bit": True,
        "bnb_config_kwargs": {"bnb_4bit_quant_storage": "float32"},
    },
}


def rows() -> list[dict[str, str]]:
    """Answers of different lengths, so the two ranks hold different numbers of trained tokens."""
    text = "the quick brown fox jumps over the lazy dog what is the capital of France Paris"
    return [{"instruction": f"Say {i} words.", "output": text[: 1 + (i * 23) % len(text)]} for i in range(16)]


def write_config(folder: Path, model_dir: Path, kind: str) -> Path:
    data = folder / "rows.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows()))
    config = {
        "base_model": str(model_dir),
        "datasets": [{"path": str(data), "type": "alpaca"}],
        "sequence_len": 128,
        "lora_r": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.0,  # dropout masks would differ with the batch split
        "lora_target_linear": True,
        "micro_batch_size": 2,
        "max_steps": 4,
        "learning_rate": 0.01,
        "logging_steps": 1,
        "save_steps": 4,
        "output_dir": str(folder / f"ft-{kind}"),
        **KINDS[kind],
    }
    path = folder / f"{kind}.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def launch_env() -> dict[str, str]:
    src = str(REPO / "src")
    path = os.environ.get("PYTHONPATH")
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": f"{src}{os.pathsep}{path}" if path else src,
    }


def accelerate_launch(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(FSDP_CONFIG)]
    # On a CPU: 2 processes, no bf16 autocast (the GPU config's mixed precision), a free port.
    command += ["--num_processes", "2", "--mixed_precision", "no", "--main_process_port", "0", *args]
    return subprocess.run(command, env=launch_env(), capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def sharded_runs(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Path]]:
    """One launch of 2 ranks trains every kind (one start-up cost)."""
    folder = tmp_path_factory.mktemp("fsdp")
    configs = {kind: write_config(folder, tiny_model_dir, kind) for kind in KINDS}
    proc = accelerate_launch(
        str(REPO / "tests" / "fsdp_worker.py"), str(folder / "sharded"), *map(str, configs.values())
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return folder / "sharded", configs


def saved_tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    files = list(folder.glob("*.safetensors"))
    assert len(files) == 1, files
    return load_file(files[0])


def shapes(tensors: dict) -> dict[str, tuple[int, ...]]:
    return {name: tuple(t.shape) for name, t in tensors.items()}


@pytest.mark.parametrize("kind", list(KINDS))
def test_fsdp_on_two_cpu_ranks_equals_one_process(
    kind: str, sharded_runs: tuple[Path, dict[str, Path]], tmp_path: Path
) -> None:
    from ft.config.load import read_config
    from ft.train.runner import run_training

    sharded_dir, configs = sharded_runs
    single = train(configs[kind], tmp_path / "single", sharded=False)
    sharded = json.loads((sharded_dir / kind / "losses.json").read_text())
    assert len(sharded) == len(single) == 4
    assert all(math.isclose(a, b, rel_tol=1e-5) for a, b in zip(sharded, single, strict=True)), (
        sharded,
        single,
    )
    assert single[-1] < single[0]  # it trained
    numel = json.loads((sharded_dir / kind / "numel.json").read_text())
    assert numel["held"] <= 0.55 * numel["model"], numel  # rank 0 held about half: sharded

    gathered, alone = saved_tensors(sharded_dir / kind), saved_tensors(tmp_path / "single")
    assert shapes(gathered) == shapes(alone)
    worst = max(float((gathered[name] - alone[name]).abs().max()) for name in alone)
    # AdamW moves a weight by about lr whatever its gradient's size, so rounding-level differences in
    # a near-zero gradient can show as a good part of lr (measured: up to 1.3e-4 here, lr 0.01).
    assert worst < 1e-3, worst

    # The layout `ft train` writes for this config, one process: the gathered save matches it.
    cfg, _ = read_config(configs[kind], [f"output_dir={tmp_path / 'ft'}"])
    run_training(cfg)
    assert shapes(gathered) == shapes(saved_tensors(tmp_path / "ft"))
