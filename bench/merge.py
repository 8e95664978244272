"""Merge cost: ft merge (in memory, streaming) against peft's merge_and_unload + save_pretrained.

    python bench/merge.py [--hidden 512] [--layers 8] [--shard 20MB]

Builds a Llama-style model locally (hidden 512, 8 layers: about 26M parameters, 100 MB in
float32), saves it in several safetensors shards, trains a LoRA adapter on it for two steps with
`ft train` (so the run folder is a real one), then runs each merge path in its own process:

- ft merge --in-memory (peft merge, verified against base+adapter on the probe batch), and --no-verify
- ft merge --streaming (tensor by tensor, verified: verification loads base+adapter and the result)
- ft merge --streaming --no-verify (the bounded-memory path alone)
- ft.export.merge_stream.stream_merge (the weights alone: no run folder, tokenizer or config files)
- peft: PeftModel.from_pretrained, merge_and_unload, save_pretrained (the usual notebook)
- copy: read every base shard and write it again with safetensors (reading+writing the weights once)

Each process reports its time (after its imports), its resident memory after the imports and its
peak (VmHWM): "extra" is peak minus after-imports, the memory the merge itself took. Goals:
streaming extra < 1.3x (largest shard + adapter); streaming time < 2x the copy's.
Every file is in the page cache (just written), so times are CPU and memory bound, not disk bound.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from _child import run_child
from _env import REPO  # importing it sets up the environment

FT_MERGE = """
import torch, transformers, peft
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig
from peft import PeftModel
from ft.export.merge import merge_run
import ft.config.load, ft.export.merge_stream
after = rss_mb("VmRSS")
start = time.perf_counter()
result = merge_run(Path(RUN), Path(OUT), streaming=STREAMING, verify=VERIFY, max_shard_size=SHARD)
report(time.perf_counter() - start, after, max_abs_logit_diff=result.max_abs_logit_diff)
"""

PEFT_MERGE = """
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer
from ft.export.merge import probe_batch, probe_logits
after = rss_mb("VmRSS")
start = time.perf_counter()
model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(BASE, dtype=torch.float32), RUN).eval()
merged = model.merge_and_unload()
merged.save_pretrained(OUT, max_shard_size=SHARD)
seconds = time.perf_counter() - start
# Outside the timing: what a careful notebook would check (before and after on the same probe).
batch = probe_batch(AutoTokenizer.from_pretrained(RUN))
base = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(BASE, dtype=torch.float32), RUN).eval()
diff = float((probe_logits(merged, batch) - probe_logits(base, batch)).abs().max())
report(seconds, after, max_abs_logit_diff=diff)
"""

STREAM_WEIGHTS = """
import torch
import safetensors.torch
from ft.export.merge_stream import parse_size, stream_merge
after = rss_mb("VmRSS")
start = time.perf_counter()
Path(OUT).mkdir()
stream_merge(Path(BASE), Path(RUN), Path(OUT), torch.float32, parse_size(SHARD))
report(time.perf_counter() - start, after)
"""

COPY = """
import torch
from safetensors.torch import load_file, save_file
after = rss_mb("VmRSS")
start = time.perf_counter()
Path(OUT).mkdir()
for shard in sorted(Path(BASE).glob("*.safetensors")):
    save_file(load_file(shard), str(Path(OUT) / shard.name), metadata={"format": "pt"})
report(time.perf_counter() - start, after)
"""


def build_base(folder: Path, hidden: int, layers: int, shard: str) -> Path:
    from tiny import build_model, build_tokenizer

    tokenizer = build_tokenizer()
    model = build_model(tokenizer, hidden=hidden, intermediate=4 * hidden, layers=layers, heads=8, kv_heads=8)
    model.save_pretrained(folder, max_shard_size=shard)
    tokenizer.save_pretrained(folder)
    return folder


def train_adapter(work: Path, base: Path) -> Path:
    data = work / "train.jsonl"
    row = {"instruction": "What is the capital of France?", "output": "Paris."}
    data.write_text((json.dumps(row) + "\n") * 8)
    config = {
        "base_model": str(base),
        "datasets": [{"path": str(data), "type": "alpaca"}],
        "sequence_len": 256,
        "adapter": "lora",
        "lora_r": 16,
        "lora_alpha": 32,
        "lora_target_linear": True,
        "micro_batch_size": 4,
        "max_steps": 2,
        "learning_rate": 0.01,
        "save_steps": 2,
        "output_dir": str(work / "run"),
    }
    path = work / "run.yml"
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [sys.executable, "-m", "ft", "train", str(path)], capture_output=True, text=True, cwd=REPO
    )
    if done.returncode != 0:
        raise SystemExit(f"ft train failed:\n{done.stdout}\n{done.stderr}")
    return work / "run"


def state_dict(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    tensors: dict[str, Any] = {}
    for shard in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(shard))
    return tensors


def max_tensor_diff(a: Path, b: Path) -> float:
    left, right = state_dict(a), state_dict(b)
    assert left.keys() == right.keys(), (a, b)
    return max(float((left[k].float() - right[k].float()).abs().max()) for k in left)


def mb(path: Path) -> float:
    return path.stat().st_size / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--shard", default="20MB", help="max shard size of the base and the outputs")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ft-bench-merge-") as tmp:
        work = Path(tmp)
        base = build_base(work / "base", args.hidden, args.layers, args.shard)
        run = train_adapter(work, base)
        shards = sorted(base.glob("*.safetensors"))
        largest, adapter = max(mb(s) for s in shards), mb(run / "adapter_model.safetensors")
        total = sum(mb(s) for s in shards)
        print(
            f"base: {len(shards)} shards, {total:.1f} MB (largest {largest:.1f} MB); adapter {adapter:.1f} MB"
        )

        common = {"RUN": str(run), "SHARD": args.shard, "BASE": str(base)}
        paths = {
            "ft in-memory": (FT_MERGE, {"STREAMING": False, "VERIFY": True}),
            "ft in-memory --no-verify": (FT_MERGE, {"STREAMING": False, "VERIFY": False}),
            "ft streaming": (FT_MERGE, {"STREAMING": True, "VERIFY": True}),
            "ft streaming --no-verify": (FT_MERGE, {"STREAMING": True, "VERIFY": False}),
            "ft streaming, weights only": (STREAM_WEIGHTS, {}),
            "peft merge_and_unload": (PEFT_MERGE, {}),
            "copy (read+write once)": (COPY, {}),
        }
        results: dict[str, dict[str, Any]] = {}
        outs: dict[str, Path] = {}
        for index, (name, (body, names)) in enumerate(paths.items()):
            outs[name] = work / f"out{index}"
            results[name] = run_child(body, OUT=str(outs[name]), **common, **names)

        print(
            f"\n{'path':<26} {'time s':>7} {'RSS after imports MB':>21} {'peak MB':>8} {'extra MB':>9} {'max|Δlogit|':>12}"
        )
        for name, row in results.items():
            diff = row.get("max_abs_logit_diff")
            print(
                f"{name:<26} {row['seconds']:>7.2f} {row['rss_after_imports_mb']:>21.0f} "
                f"{row['peak_rss_mb']:>8.0f} {row['extra_mb']:>9.0f} {'-' if diff is None else f'{diff:.2e}':>12}"
            )

        stream, copy = results["ft streaming --no-verify"], results["copy (read+write once)"]
        weights_only = results["ft streaming, weights only"]
        print(
            f"\nstreaming extra RSS / (largest shard + adapter): {stream['extra_mb'] / (largest + adapter):.2f}x"
            " (goal < 1.3x)"
        )
        print(
            f"streaming time / copy time: weights only {weights_only['seconds'] / copy['seconds']:.2f}x, "
            f"whole command {stream['seconds'] / copy['seconds']:.2f}x (goal < 2x)"
        )
        print(f"in-memory extra RSS / weights: {results['ft in-memory']['extra_mb'] / total:.2f}x")
        print(f"peft extra RSS / weights: {results['peft merge_and_unload']['extra_mb'] / total:.2f}x")
        no_verify = results["ft in-memory --no-verify"]["seconds"]
        print(
            f"ft in-memory --no-verify time / peft time: {no_verify / results['peft merge_and_unload']['seconds']:.2f}x"
        )
        print(
            "max |Δ tensor|: streaming vs in-memory "
            f"{max_tensor_diff(outs['ft streaming'], outs['ft in-memory']):.2e}, "
            f"in-memory vs peft {max_tensor_diff(outs['ft in-memory'], outs['peft merge_and_unload']):.2e}"
        )
        load = os.getloadavg()
        print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
