"""What the parts share: running `ft train` in this process (the code path of the command), GPU
memory at the points of a run the plan's lines describe, losses, and the GPU's peak."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GIB = 2**30
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0}
"""Dense bf16 tensor peaks (NVIDIA data sheets; H200 has H100 SXM's compute), for GPUs ft plan's
table does not name exactly."""


def has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def allocated() -> int:
    import torch

    return int(torch.cuda.memory_allocated()) if has_cuda() else 0


@dataclass
class MemorySampler:
    """`on_event` sink of run_training: GPU memory allocated when the model and adapter are loaded,
    after the first optimizer step, and the peak; each relative to what was allocated before."""

    baseline: int = 0
    loaded: int | None = None
    after_first_step: int | None = None
    events: list[str] = field(default_factory=list)

    def start(self) -> MemorySampler:
        import gc

        import torch

        gc.collect()
        if has_cuda():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        self.baseline = allocated()
        return self

    def __call__(self, event: Any) -> None:
        if event.kind == "note" and "trainable_params" in event.values:
            self.loaded = allocated() - self.baseline
        elif event.kind == "step" and self.after_first_step is None:
            self.after_first_step = allocated() - self.baseline

    def peak(self) -> int:
        import torch

        return int(torch.cuda.max_memory_allocated()) - self.baseline if has_cuda() else 0


def train(config: Path, overrides: Sequence[str] = (), resume: bool = False, on_event: Any = None) -> Any:
    """`ft train CONFIG --force [--resume] [--set ...]`, in this process; returns ft's TrainResult,
    whose notes start with those of reading the config (mapped keys and the like)."""
    from ft.config.load import read_config
    from ft.runs.record import Launch
    from ft.train.runner import run_training

    cfg, notes = read_config(config, list(overrides))
    launch = Launch(config, tuple(overrides))
    result = run_training(cfg, resume=resume, force=not resume, on_event=on_event, launch=launch)
    result.notes[:0] = notes
    return result


def losses(run_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    return [float(row["loss"]) for row in rows if "loss" in row]


def run_info(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "run.json").read_text())


def gpu_name() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if has_cuda() else None


def peak_tflops(name: str | None) -> float | None:
    if name is None:
        return None
    from ft.plan.memory import find_gpu

    for word in name.replace("NVIDIA", "").split():
        gpu = find_gpu(word)
        if gpu is not None and gpu.tflops:
            return float(gpu.tflops)
    return next((tflops for key, tflops in PEAK_BF16_TFLOPS.items() if key in name.upper()), None)


def relative_error(planned: float, measured: float) -> float | None:
    return (planned - measured) / measured if measured else None
