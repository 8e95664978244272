"""`make gpu-check`: ft on a CUDA GPU in under 8 minutes, each measurement against its goal, as one
JSON report and a short table (bench/gpu/README.md has the whole call).

    python bench/gpu/check.py [--tiny] [--out DIR] [--work DIR] [--budget SECONDS] [--parts a,b]

Parts, in order (each with its own timeout; a part cut short keeps what it measured):
  setup        machine, library versions, bitsandbytes' CUDA kernels; the models and data
  precision    bf16: auto resolves to bf16, every Linear computes in it, loss falls (LoRA, QLoRA)
  plan         ft plan's memory against torch.cuda.max_memory_allocated (QLoRA x checkpointing x 2
               lengths, LoRA bf16; 20 steps each); goal: within 10%
  throughput   ft vs the trl notebook of bench/train.py (goal >= 0.95x), packing vs not on sdpa
               (goal >= 1.5x), tokens/s and MFU
  merge        ft merge streaming and in memory: max |Δlogit| within ft's tolerance, host/GPU memory
  resume       SIGINT at step 10, --resume: the final loss of an uninterrupted run within 1e-3
  distributed  accelerate launch of configs/accelerate/{fsdp,fsdp-qlora,deepspeed-zero2}.yaml on 1 GPU
  liger        axolotl's liger keys through --set, tokens/s and memory with and without
The parts run in a worker process (bench/gpu/worker.py) that writes each measurement to a journal as
it is taken; this supervisor stops a part at its timeout, starts a new worker for the parts after
it, and stops everything at the budget. --tiny runs the same parts on a CPU with the tiny model
(tests/test_gpu_check.py runs it in make test, so the script cannot rot). Exit status 0 when every
part ran to its end, 1 otherwise; goals met or missed are in the report.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WORKER = HERE / "worker.py"
PARTS = ("setup", "precision", "plan", "throughput", "merge", "resume", "distributed", "liger")
GPU_TIMEOUTS = {
    "setup": 75,
    "precision": 45,
    "plan": 130,
    "throughput": 100,
    "merge": 70,
    "resume": 60,
    "distributed": 90,
    "liger": 60,
}
"""Seconds per part on an H100/H200-class GPU. Their sum is above the budget on purpose: a part
that ends early leaves its time to the next ones, and the budget holds the whole."""
GPU_BUDGET = 450
"""7.5 minutes: with the wheels' install, `make gpu-check` ends inside 8 minutes."""
TINY_TIMEOUT, TINY_BUDGET = 300, 1200


@dataclass
class Outcome:
    status: str
    seconds: float | None = None
    error: str | None = None
    traceback: list[str] = field(default_factory=list)


class Journal:
    """The worker's JSON lines, read as they are written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.rows: list[dict[str, Any]] = []

    def read_new(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        new = [json.loads(line) for line in complete.decode().splitlines() if line.strip()]
        self.rows += new
        return new


def stop(proc: subprocess.Popen) -> None:
    """End the worker and everything it started (its own process group)."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def worker_command(args: argparse.Namespace, journal: Journal) -> Callable[[list[str]], list[str]]:
    def command(parts: list[str]) -> list[str]:
        tiny = ["--tiny"] if args.tiny else []
        return [
            sys.executable,
            str(WORKER),
            *tiny,
            "--work",
            str(args.work),
            "--journal",
            str(journal.path),
            *parts,
        ]

    return command


@dataclass
class Progress:
    """Where one worker is: the part it runs and since when."""

    current: str | None = None
    since: float = 0.0
    began: bool = False

    def take(self, rows: list[dict[str, Any]], outcomes: dict[str, Outcome]) -> None:
        for row in rows:
            if row["event"] == "start":
                self.current, self.since, self.began = row["part"], time.monotonic(), True
            elif row["event"] == "end":
                outcomes.setdefault(
                    row["part"],
                    Outcome(row["status"], row.get("seconds"), row.get("error"), row.get("traceback", [])),
                )
                self.current = None

    def running_for(self) -> float:
        return time.monotonic() - self.since


def supervise(
    parts: list[str],
    timeouts: dict[str, float],
    budget: float,
    command_for: Callable[[list[str]], list[str]],
    journal: Journal,
    log: Path,
) -> dict[str, Outcome]:
    """Run the parts in workers (`command_for(parts)` starts one), each part within its timeout and
    all within the budget; returns each part's outcome."""
    deadline = time.monotonic() + budget
    outcomes: dict[str, Outcome] = {}
    while remaining := [p for p in parts if p not in outcomes]:
        if time.monotonic() >= deadline:
            outcomes.update({p: Outcome("not reached", error="the budget was spent") for p in remaining})
            break
        with log.open("a") as out:
            proc = subprocess.Popen(
                command_for(remaining), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        progress = Progress()
        watch(proc, progress, journal, outcomes, timeouts, deadline)
        progress.take(journal.read_new(), outcomes)
        if progress.current is not None and progress.current not in outcomes:
            status = f"worker exit status {proc.returncode}"
            outcomes[progress.current] = Outcome("crashed", progress.running_for(), status)
        if not progress.began:
            tail = log.read_text()[-2000:] if log.is_file() else ""
            outcomes.update(
                {p: Outcome("not run", error=f"the worker did not start: {tail}") for p in remaining}
            )
    return outcomes


def watch(
    proc: subprocess.Popen,
    progress: Progress,
    journal: Journal,
    outcomes: dict[str, Outcome],
    timeouts: dict[str, float],
    deadline: float,
) -> None:
    """Follow one worker until it ends, or stop it when its part runs past its timeout or the budget."""
    while proc.poll() is None:
        progress.take(journal.read_new(), outcomes)
        part = progress.current
        if part is not None and progress.running_for() > timeouts[part]:
            stop(proc)
            outcomes[part] = Outcome("timeout", progress.running_for(), f"stopped after {timeouts[part]} s")
            return
        if time.monotonic() > deadline:
            stop(proc)
            if part is not None:
                outcomes[part] = Outcome("timeout", progress.running_for(), "stopped: the budget was spent")
            return
        time.sleep(0.2)


def build_report(
    parts: list[str],
    outcomes: dict[str, Outcome],
    journal: Journal,
    args: argparse.Namespace,
    timeouts: dict[str, float],
) -> dict[str, Any]:
    info = {row["key"]: row["value"] for row in journal.rows if row["event"] == "info"}
    report_parts = []
    for name in parts:
        rows = [row for row in journal.rows if row["part"] == name]
        outcome = outcomes[name]
        report_parts.append(
            {
                "name": name,
                "status": outcome.status,
                "seconds": round(outcome.seconds, 1) if outcome.seconds is not None else None,
                "timeout_s": timeouts[name],
                "error": outcome.error,
                "traceback": outcome.traceback,
                "measurements": [
                    {k: row.get(k) for k in ("name", "value", "unit", "goal", "ok", "detail")}
                    for row in rows
                    if row["event"] == "measure"
                ],
                "notes": [row["text"] for row in rows if row["event"] == "note"],
            }
        )
    judged = [m["ok"] for p in report_parts for m in p["measurements"]]
    return {
        "ft_gpu_check": 1,
        "mode": "tiny (CPU)" if args.tiny else "gpu",
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": info,
        "summary": {
            "parts": {
                status: sum(p["status"] == status for p in report_parts)
                for status in {p["status"] for p in report_parts}
            },
            "goals_met": judged.count(True),
            "goals_missed": judged.count(False),
            "reported_only": judged.count(None),
        },
        "parts": report_parts,
    }


def cell(value: Any, width: int) -> str:
    text = (
        value if isinstance(value, str) else f"{value:.4g}" if isinstance(value, float) else json.dumps(value)
    )
    return text if len(text) <= width else text[: width - 1] + "…"


def machine_line(info: dict[str, Any]) -> str:
    libraries = info.get("libraries") or {}
    shown = ", ".join(
        f"{name} {libraries[name]}"
        for name in ("torch", "transformers", "peft", "trl", "bitsandbytes")
        if libraries.get(name)
    )
    return f"machine: {info.get('gpu') or 'no GPU'} (CUDA {info.get('cuda')}), Python {info.get('python')}; {shown}"


def table(report: dict[str, Any]) -> str:
    lines = [
        machine_line(report["machine"]),
        f"{'part':12} {'status':11} {'measurement':62} {'value':>16} {'unit':8} {'goal':26} result",
    ]
    for part in report["parts"]:
        head = f"{part['name']:12} {part['status']:11} "
        if not part["measurements"]:
            lines.append(head + (part["error"] or ""))
        for i, m in enumerate(part["measurements"]):
            result = {True: "met", False: "MISSED", None: "-"}[m["ok"]]
            prefix = head if i == 0 else " " * len(head)
            lines.append(
                f"{prefix}{cell(m['name'], 62):62} {cell(m['value'], 16):>16} {cell(m['unit'], 8):8} "
                f"{cell(m['goal'], 26):26} {result}"
            )
        if part["error"] and part["measurements"]:
            lines.append(" " * len(head) + f"error: {part['error']}")
    s = report["summary"]
    lines.append(
        f"goals: {s['goals_met']} met, {s['goals_missed']} missed, {s['reported_only']} reported; parts: {s['parts']}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--tiny", action="store_true", help="CPU mode with the tiny model (what make test runs)"
    )
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "gpu-check-out"))
    parser.add_argument(
        "--work", type=Path, default=None, help="models, data and runs (default: a temporary folder)"
    )
    parser.add_argument("--budget", type=float, default=None, help="seconds for all parts together")
    parser.add_argument("--parts", default=",".join(PARTS))
    args = parser.parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {unknown}; the parts are {', '.join(PARTS)}")
    timeouts = {p: float(TINY_TIMEOUT) for p in PARTS} if args.tiny else dict(GPU_TIMEOUTS)
    budget = args.budget or (TINY_BUDGET if args.tiny else GPU_BUDGET)
    args.out.mkdir(parents=True, exist_ok=True)
    args.work = args.work or Path(tempfile.mkdtemp(prefix="ft-gpu-check-"))
    args.work.mkdir(parents=True, exist_ok=True)
    journal = Journal(args.out / "journal.jsonl")
    journal.path.unlink(missing_ok=True)
    log = args.out / "gpu_check.log"
    log.unlink(missing_ok=True)
    outcomes = supervise(parts, timeouts, budget, worker_command(args, journal), journal, log)
    report = build_report(parts, outcomes, journal, args, timeouts)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(table(report))
    print(f"report: {args.out / 'gpu_check.json'}  (worker output: {log})")
    return 0 if all(p["status"] == "ok" for p in report["parts"]) else 1


if __name__ == "__main__":
    sys.exit(main())
