"""Parts that run ft's commands as processes: the merge (logits and memory), resume after SIGINT,
and the sharded launches (FSDP, FSDP with QLoRA, DeepSpeed ZeRO-2) on this machine's one GPU."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fixtures import alpaca_rows, big_model, run_config, tiny_model
from measure import GIB, has_cuda, losses, train

if TYPE_CHECKING:
    from worker import Part

REPO = Path(__file__).resolve().parents[2]
ACCELERATE_CONFIGS = REPO / "configs" / "accelerate"


def ft_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "ft", *args]


# ---------------------------------------------------------------------------------------------
# 4. Merge


class DeviceMemoryWatch:
    """The most GPU memory in use on the device (all processes) while a child process runs, above
    what was in use when the watch started: what `ft merge` takes from the GPU."""

    def __init__(self) -> None:
        self.before = self.used()
        self.most = self.before
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.poll, daemon=True)

    @staticmethod
    def used() -> int:
        import torch

        if not torch.cuda.is_available():
            return 0
        free, total = torch.cuda.mem_get_info()
        return int(total - free)

    def poll(self) -> None:
        while not self.done.wait(0.1):
            self.most = max(self.most, self.used())

    def __enter__(self) -> DeviceMemoryWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()

    @property
    def peak(self) -> int:
        return self.most - self.before


def run_measured(command: list[str], log: Path) -> tuple[int, float, int, int]:
    """(exit status, seconds, peak resident memory in bytes, peak GPU memory in bytes) of a process."""
    started = time.monotonic()
    with log.open("w") as out, DeviceMemoryWatch() as gpu:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    return os.waitstatus_to_exitcode(status), time.monotonic() - started, usage.ru_maxrss * 1024, gpu.peak


def merge(part: Part) -> None:
    """`ft merge` of a LoRA run on the big model, streaming and in memory: max |Δlogit| against
    base+adapter (ft's own verification), wall time, peak host and GPU memory."""
    run = part.work / "runs" / "throughput-ft"
    if not (run / "run.json").is_file():  # the throughput part did not get that far
        config = run_config(
            part.work,
            "merge-source",
            big_model(part.work, part.tiny),
            alpaca_rows(part.work, 64 if part.tiny else 1024),
            max_steps=20,
            learning_rate=1e-3,
        )
        run = train(config).run_dir
    dtype = "bf16" if has_cuda() else "fp32"
    # --tiny: the streaming path only (the in-memory one is peft's merge_and_unload, tested in make test).
    for mode in ("--streaming",) if part.tiny else ("--streaming", "--in-memory"):
        out = part.work / "merged" / mode.strip("-")
        log = part.work / f"merge{mode}.log"
        status, seconds, rss, gpu = run_measured(
            ft_command("merge", str(run), "--out", str(out), "--dtype", dtype, mode, "--force"), log
        )
        label = f"merge {mode.strip('-')} ({dtype})"
        if status != 0:
            part.measure(f"{label}: exit status", status, "", "0", False, log.read_text()[-600:])
            continue
        record = json.loads((out / "ft_merge.json").read_text())
        diff, tolerance = record["max_abs_logit_diff"], record["tolerance"]
        part.measure(
            f"{label}: max |Δlogit| vs base+adapter",
            diff,
            "",
            f"<= {tolerance:.3g} (ft's tolerance)",
            diff is not None and diff <= tolerance,
        )
        part.measure(f"{label}: wall time", round(seconds, 1), "s", "(reported)", None)
        part.measure(f"{label}: peak host memory (RSS)", round(rss / GIB, 3), "GiB", "(reported)", None)
        part.measure(
            f"{label}: peak GPU memory",
            round(gpu / GIB, 3),
            "GiB",
            "(reported)",
            None,
            "ft merge computes on the CPU: 0 means it left the GPU alone",
        )


# ---------------------------------------------------------------------------------------------
# 5. Resume after SIGINT


def wait_for_step(metrics: Path, step: int, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ft train ended before step {step} (exit {proc.returncode})")
        if metrics.is_file() and any(
            json.loads(line).get("step", 0) >= step
            for line in metrics.read_text().splitlines()
            if line.strip()
        ):
            return
        time.sleep(0.01)
    proc.kill()
    raise RuntimeError(f"step {step} not reached in {timeout:.0f} s")


def resume(part: Part) -> None:
    """SIGINT to `ft train` at step 10 of 20, `--resume`, and the final loss of an uninterrupted run."""
    data = alpaca_rows(part.work, 64 if part.tiny else 1024)
    keys: dict[str, Any] = {"max_steps": 20, "learning_rate": 1e-3, "micro_batch_size": 4}
    whole = train(run_config(part.work, "resume-whole", tiny_model(part.work), data, **keys))
    config = run_config(part.work, "resume-cut", tiny_model(part.work), data, **keys)
    run_dir = part.work / "runs" / "resume-cut"
    log = part.work / "resume-cut.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            ft_command("train", str(config), "--force"),
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    wait_for_step(run_dir / "metrics.jsonl", 10, proc)
    proc.send_signal(signal.SIGINT)
    status = proc.wait(timeout=120)
    part.measure(
        "SIGINT at step 10: exit status",
        status,
        "",
        "130 (checkpoint saved)",
        status == 130,
        " ".join(log.read_text().split())[-300:],
    )
    stopped = max(int(p.name.split("-")[1]) for p in run_dir.glob("checkpoint-*"))
    part.note(f"stopped at step {stopped}")
    resumed = train(config, resume=True)
    diff = abs(resumed.final_train_loss - whole.final_train_loss)
    part.measure(
        "final loss: resumed vs uninterrupted |Δ|",
        diff,
        "",
        "<= 1e-3",
        diff <= 1e-3,
        f"{resumed.final_train_loss:.6f} vs {whole.final_train_loss:.6f}; steps {resumed.global_step}",
    )


# ---------------------------------------------------------------------------------------------
# Sharded launches on one GPU


def launches(tiny: bool) -> list[tuple[str, str, dict[str, Any]]]:
    """(name, accelerate config, run config keys). On a CPU only FSDP runs: accelerate does not
    shard there and ft says so (tests/test_fsdp.py proves FSDP2 itself on CPU ranks)."""
    fsdp = ("fsdp lora", "fsdp.yaml", {})
    if tiny:
        return [fsdp]
    qlora = {
        "adapter": "qlora",
        "load_in_4bit": True,
        "bnb_config_kwargs": {"bnb_4bit_quant_storage": "bfloat16"},
    }
    runs = [fsdp, ("fsdp qlora", "fsdp-qlora.yaml", qlora)]
    if importlib.util.find_spec("deepspeed") is not None:
        runs.append(("deepspeed zero-2 lora", "deepspeed-zero2.yaml", {}))
    return runs


def distributed(part: Part) -> None:
    """`accelerate launch --config_file configs/accelerate/X.yaml --num_processes 1 -m ft train`: it
    runs, saves one gathered adapter like a plain run's, and follows the plain run's loss curve."""
    if importlib.util.find_spec("deepspeed") is None and not part.tiny:
        part.note("deepspeed is not installed: its wheel (make gpu-wheels builds it) was not carried")
    data = alpaca_rows(part.work, 64 if part.tiny else 1024)
    for name, accelerate_config, keys in launches(part.tiny):
        slug = name.replace(" ", "-")
        common = {"max_steps": 10, "learning_rate": 1e-3, "lora_dropout": 0.0, **keys}
        plain = train(run_config(part.work, f"{slug}-plain", tiny_model(part.work), data, **common))
        config = run_config(part.work, slug, tiny_model(part.work), data, **common)
        command = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(ACCELERATE_CONFIGS / accelerate_config),
            "--num_processes",
            "1",
            "--main_process_port",
            "0",
        ]
        if not has_cuda():
            command += ["--mixed_precision", "no"]
        log = part.work / f"{slug}.log"
        with log.open("w") as out:
            status = subprocess.run(
                [*command, "-m", "ft", "train", str(config), "--force"],
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=600,
            ).returncode
        output = " ".join(log.read_text().split())
        part.measure(
            f"{name}: exit status", status, "", "0", status == 0, "" if status == 0 else output[-800:]
        )
        if status != 0:
            continue
        if not has_cuda():
            said = "asked for, but accelerate shards only on GPUs" in output
            part.measure(f"{name}: on a CPU ft says it trains as DDP", said, "", "said", said)
        run_dir = part.work / "runs" / slug
        same = saved_layout(run_dir) == saved_layout(plain.run_dir)
        part.measure(
            f"{name}: saved adapter has the plain run's tensor names and shapes", same, "", "equal", same
        )
        curve, reference = losses(run_dir), losses(plain.run_dir)
        part.measure(
            f"{name}: logged steps, plain run's",
            len(curve),
            "",
            str(len(reference)),
            len(curve) == len(reference),
        )
        worst = max(abs(a - b) / abs(b) for a, b in zip(curve, reference, strict=False))
        part.measure(
            f"{name}: loss curve vs plain run (max relative difference)",
            round(worst, 5),
            "",
            "<= 0.02",
            worst <= 0.02,
            f"{len(curve)} steps",
        )


def saved_layout(run_dir: Path) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    with safe_open(str(run_dir / "adapter_model.safetensors"), "pt") as handle:
        return {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}  # noqa: SIM118
