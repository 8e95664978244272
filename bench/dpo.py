"""DPO: ft against a hand-written trl script (tokens/s), and the memory of the reference model.

    python bench/dpo.py [--pairs 256] [--batch 8] [--repeat 1] [--skip-speed] [--skip-memory]

Throughput: the same tiny random Llama-style model (tests/tiny.py), the same alpaca-like pairs
(a short instruction; a chosen and a rejected answer of varying length), LoRA r=8 on every linear
layer, beta 0.1, the same batch and one epoch, CPU float32, for
- a hand-written trl script: DPOTrainer on prompt/chosen/rejected text with `peft_config` (trl
  renders nothing: the prompt is the alpaca text, as the usual notebook writes it);
- `ft train` with `rl: dpo` (`ft.train.runner.run_training`), the rows rendered with `type: alpaca`.
Both count tokens as trl's DPO trainer does (attention mask of both sequences of each pair) and
time the trainer's own `train_runtime`; the CPU time of each whole call (loading included) is
printed beside it, as it moves less than wall time on a shared machine. Goal: ft / trl >= 0.95.

Memory: peak RSS of a child process training 2 DPO steps on a larger random model (hidden 1024,
8 layers, ~94M parameters, 0.35 GiB in float32) for
- ft, reference = the adapter switched off (the default);
- ft with `ref_model` naming the same model: a second copy in memory;
- the hand-written trl script with an explicit `ref_model` (a second copy, as many notebooks do).
Goal: ft's default holds no second copy, i.e. it peaks about one model's size below the others.
The machine's CPU may be shared: the load average is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
from collections.abc import Callable
from pathlib import Path

import _env  # noqa: F401  (importing it sets up the environment)
from _child import run_child
from train import ALPACA, WORDS

LARGE = {"hidden": 1024, "intermediate": 2816, "layers": 8, "heads": 8, "kv_heads": 4}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def alpaca_like_pairs(count: int, seed: int = 0) -> list[dict[str, str]]:
    """A short instruction, and two answers of a few words to a paragraph (long-tailed)."""
    rng = random.Random(seed)

    def answer() -> str:
        return " ".join(rng.choices(WORDS, k=min(int(rng.lognormvariate(2.5, 0.8)) + 1, 80)))

    pairs = []
    while len(pairs) < count:
        chosen, rejected = answer(), answer()
        if chosen != rejected:
            pairs.append(
                {
                    "prompt": " ".join(rng.choices(WORDS, k=rng.randint(4, 16))),
                    "chosen": chosen,
                    "rejected": rejected,
                }
            )
    return pairs


def ft_dpo(
    model_dir: Path,
    data: Path,
    out: Path,
    batch: int,
    max_steps: int | None = None,
    ref_model: str | None = None,
    on_step: Callable[[], None] | None = None,
) -> tuple[float, int, float]:
    """(train_runtime s, tokens, CPU s of the whole call)."""
    import time

    from ft.config.schema import FtConfig
    from ft.train.runner import run_training

    cfg = FtConfig(
        base_model=str(model_dir),
        rl="dpo",
        ref_model=ref_model,
        datasets=[{"path": str(data), "type": "alpaca"}],
        sequence_len=512,
        adapter="lora",
        lora_r=8,
        lora_alpha=16,
        lora_target_linear=True,
        micro_batch_size=batch,
        num_epochs=1,
        max_steps=max_steps,
        learning_rate=1e-4,
        lr_scheduler="linear",
        # The script gets transformers' default optimizer (fused AdamW with torch >= 2.8): same here.
        optimizer="adamw_torch_fused",
        logging_steps=1,
        save_steps=10_000,
        output_dir=str(out),
    )
    step = (lambda event: on_step() if event.kind == "step" else None) if on_step else None
    cpu = time.process_time()
    result = run_training(cfg, force=True, on_event=step)
    cpu = time.process_time() - cpu
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    tokens = max(int(row["num_tokens"]) for row in rows if "num_tokens" in row)
    assert result.train_runtime_s is not None
    return result.train_runtime_s, tokens, cpu


def trl_dpo(
    model_dir: Path,
    pairs: list[dict[str, str]],
    out: Path,
    batch: int,
    max_steps: int = -1,
    with_ref: bool = False,
    on_step: Callable[[], None] | None = None,
) -> tuple[float, int, float]:
    """The usual script: prompt/chosen/rejected text, DPOTrainer, peft_config (and maybe a ref_model);
    (train_runtime s, tokens, CPU s of the whole call)."""
    import time

    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    class OnStep(TrainerCallback):
        def on_step_end(self, *args: object, **kwargs: object) -> None:
            if on_step is not None:
                on_step()

    cpu = time.process_time()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.pad_token = tokenizer.unk_token
    rows = [{**pair, "prompt": ALPACA.format(instruction=pair["prompt"])} for pair in pairs]
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    reference = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32) if with_ref else None
    args = DPOConfig(
        output_dir=str(out),
        per_device_train_batch_size=batch,
        num_train_epochs=1,
        max_steps=max_steps,
        learning_rate=1e-4,
        lr_scheduler_type="linear",
        beta=0.1,
        logging_steps=1,
        save_strategy="no",
        max_length=512,
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        report_to=[],
        disable_tqdm=True,
        seed=42,
    )
    peft_config = LoraConfig(r=8, lora_alpha=16, target_modules=TARGETS, task_type="CAUSAL_LM")
    trainer = DPOTrainer(
        model=model,
        ref_model=reference,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[OnStep()],
    )
    output = trainer.train()
    tokens = max(int(row["num_tokens"]) for row in trainer.state.log_history if "num_tokens" in row)
    return float(output.metrics["train_runtime"]), tokens, time.process_time() - cpu


def speed(
    model_dir: Path, data: Path, pairs: list[dict[str, str]], tmp: Path, batch: int, repeat: int
) -> None:
    # The script runs first, so any warm-up cost falls on it, not on ft; with --repeat, each
    # takes its fastest run (the machine may be shared).
    runs: dict[str, list[tuple[float, int, float]]] = {"trl script": [], "ft train (rl: dpo)": []}
    for attempt in range(repeat):
        runs["trl script"].append(trl_dpo(model_dir, pairs, tmp / f"trl-{attempt}", batch))
        runs["ft train (rl: dpo)"].append(ft_dpo(model_dir, data, tmp / f"ft-{attempt}", batch))
    results = {name: min(times) for name, times in runs.items()}
    rates = {name: tokens / seconds for name, (seconds, tokens, _) in results.items()}
    # CPU time (both threads, the whole call: loading and preparation included) moves less than
    # wall time when other jobs share the cores.
    cpu = {name: min(run[2] for run in every) for name, every in runs.items()}
    print(
        f"{len(pairs)} alpaca-like pairs, batch {batch}, 1 epoch, LoRA r=8, tiny model, CPU float32, "
        f"fastest of {repeat}"
    )
    for name, (seconds, tokens, _) in results.items():
        every = ", ".join(f"{run[0]:.1f}" for run in runs[name])
        cpus = ", ".join(f"{run[2]:.1f}" for run in runs[name])
        print(
            f"  {name:20s} {tokens:8d} tokens in {seconds:6.2f} s = {rates[name]:9.0f} tokens/s "
            f"(runs: {every} s; CPU of the whole call: {cpus} s)"
        )
    print(
        f"ft / trl script: {rates['ft train (rl: dpo)'] / rates['trl script']:.2f}x by wall time (goal >= 0.95), "
        f"{cpu['trl script'] / cpu['ft train (rl: dpo)']:.2f}x by least CPU time"
    )


# ---------------------------------------------------------------------------------------------
# Peak memory, one child process per way of holding the reference


def resident_bytes() -> int:
    """This process's resident memory now (VmRSS)."""
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) * 1024


def two_steps(kind: str, work: Path) -> int:
    """Train 2 DPO steps on the large model in this process; its largest RSS at the end of a step."""
    model_dir, data = work / "large", work / "pairs.jsonl"
    pairs = [json.loads(line) for line in data.read_text().splitlines()]
    in_steps: list[int] = []

    def sample() -> None:
        in_steps.append(resident_bytes())

    if kind == "ft":
        ft_dpo(model_dir, data, work / "ft", batch=2, max_steps=2, on_step=sample)
    elif kind == "ft-ref-model":
        ft_dpo(
            model_dir, data, work / "ft-ref", batch=2, max_steps=2, ref_model=str(model_dir), on_step=sample
        )
    else:
        trl_dpo(model_dir, pairs, work / "trl", batch=2, max_steps=2, with_ref=True, on_step=sample)
    return max(in_steps)


# bench/_child.py's prelude reports the peak (VmHWM); this adds the RSS during the steps.
CHILD = """
sys.path.insert(0, "bench")
import dpo
step_rss = dpo.two_steps(KIND, Path(WORK))
report(0.0, 0.0, step_rss_mb=step_rss / 2**20)
"""


def measured_rss(kind: str, work: Path) -> dict[str, int]:
    """Peak RSS and RSS during the steps (bytes) of one way of holding the reference, in a fresh process."""
    found = run_child(CHILD, KIND=kind, WORK=str(work))
    return {"peak_rss": int(found["peak_rss_mb"] * 2**20), "step_rss": int(found["step_rss_mb"] * 2**20)}


def memory(work: Path, pairs: list[dict[str, str]]) -> None:
    from tiny import build_model, build_tokenizer

    tokenizer = build_tokenizer()
    model = build_model(tokenizer, **LARGE)
    weights = sum(p.numel() for p in model.parameters()) * 4
    model.save_pretrained(work / "large")
    tokenizer.save_pretrained(work / "large")
    del model
    (work / "pairs.jsonl").write_text("".join(json.dumps(pair) + "\n" for pair in pairs[:8]))
    gib = 2**30
    results = {kind: measured_rss(kind, work) for kind in ("ft", "ft-ref-model", "trl-ref-model")}
    print(f"RSS, 2 DPO steps, model of {weights / gib:.2f} GiB in float32 (LoRA r=8, batch 2):")
    labels = {
        "ft": "ft, reference = adapter off",
        "ft-ref-model": "ft, ref_model = the same model",
        "trl-ref-model": "trl script with a ref_model",
    }
    base = results["ft"]
    for kind, rss in results.items():
        copies = {key: (rss[key] - base[key]) / weights for key in rss}
        print(
            f"  {labels[kind]:32s} peak {rss['peak_rss'] / gib:5.2f} GiB ({copies['peak_rss']:+.2f} model copies), "
            f"in the steps {rss['step_rss'] / gib:5.2f} GiB ({copies['step_rss']:+.2f} copies) over ft's default"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=1, help="Runs of each; the fastest counts.")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()

    from tiny import save_tiny_model

    pairs = alpaca_like_pairs(args.pairs)
    with tempfile.TemporaryDirectory(prefix="ft-bench-dpo-") as tmp_name:
        tmp = Path(tmp_name)
        model_dir = save_tiny_model(tmp / "tiny")
        data = tmp / "pairs.jsonl"
        data.write_text("".join(json.dumps(pair) + "\n" for pair in pairs))
        if not args.skip_speed:
            speed(model_dir, data, pairs, tmp, args.batch, args.repeat)
        if not args.skip_memory:
            memory(tmp, pairs)
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
