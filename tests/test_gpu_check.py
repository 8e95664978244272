"""bench/gpu/check.py: its supervisor (timeouts, budget, a crashed worker) with a stand-in worker,
and the whole check in --tiny mode on the CPU, so that the GPU check cannot rot between GPU runs."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench" / "gpu"))

from check import Journal, supervise  # noqa: E402

FAKE_WORKER = textwrap.dedent(
    """
    import json, sys, time
    journal, parts = sys.argv[1], sys.argv[2:]

    def write(part, event, **fields):
        with open(journal, "a") as handle:
            handle.write(json.dumps({"part": part, "event": event, **fields}) + "\\n")

    for part in parts:
        write(part, "start")
        write(part, "measure", name=f"{part} reached", value=1, unit="", goal="", ok=True, detail="")
        if part == "hangs":
            time.sleep(60)
        if part == "crashes":
            sys.exit(3)
        write(part, "end", status="ok", seconds=0.0)
    """
)


def run_fake(tmp_path: Path, parts: list[str], budget: float = 30) -> tuple[dict, Journal]:
    worker = tmp_path / "fake_worker.py"
    worker.write_text(FAKE_WORKER)
    journal = Journal(tmp_path / "journal.jsonl")
    timeouts = dict.fromkeys(parts, 2.0)
    outcomes = supervise(
        parts,
        timeouts,
        budget,
        lambda rest: [sys.executable, str(worker), str(journal.path), *rest],
        journal,
        tmp_path / "log",
    )
    return outcomes, journal


def test_a_part_past_its_timeout_is_stopped_keeps_what_it_measured_and_the_next_parts_run(
    tmp_path: Path,
) -> None:
    outcomes, journal = run_fake(tmp_path, ["first", "hangs", "crashes", "last"])
    assert {name: o.status for name, o in outcomes.items()} == {
        "first": "ok",
        "hangs": "timeout",
        "crashes": "crashed",
        "last": "ok",
    }
    assert outcomes["hangs"].error == "stopped after 2.0 s"
    assert outcomes["crashes"].error == "worker exit status 3"
    reached = [row["name"] for row in journal.rows if row["event"] == "measure"]
    assert reached == ["first reached", "hangs reached", "crashes reached", "last reached"]


def test_parts_after_the_budget_are_not_reached(tmp_path: Path) -> None:
    outcomes, _ = run_fake(tmp_path, ["first", "hangs", "last"], budget=1.5)
    assert outcomes["first"].status == "ok"
    assert outcomes["hangs"].status == "timeout"
    assert outcomes["hangs"].error == "stopped: the budget was spent"
    assert outcomes["last"].status == "not reached"


def measurements(report: dict, part: str) -> dict[str, dict]:
    [found] = [p for p in report["parts"] if p["name"] == part]
    return {m["name"]: m for m in found["measurements"]}


@pytest.mark.integration
def test_the_whole_check_in_tiny_mode_on_the_cpu(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "gpu" / "check.py"),
            "--tiny",
            "--out",
            str(tmp_path / "out"),
            "--work",
            str(tmp_path / "work"),
        ],
        capture_output=True,
        text=True,
        timeout=1500,
    )
    log = tmp_path / "out" / "gpu_check.log"
    details = proc.stdout + (log.read_text()[-5000:] if log.is_file() else "")
    assert proc.returncode == 0, details
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert [(p["name"], p["status"]) for p in report["parts"]] == [
        (name, "ok")
        for name in ("setup", "precision", "plan", "throughput", "merge", "resume", "distributed", "liger")
    ], details
    assert report["mode"] == "tiny (CPU)"
    assert report["machine"]["libraries"]["trl"]

    # Judged on a CPU too: precision, the merge's logits, resume, the launch under the FSDP config.
    for part in ("precision", "merge", "resume", "distributed"):
        missed = [m for m in measurements(report, part).values() if m["ok"] is False]
        assert not missed, missed
    precision = measurements(report, "precision")
    assert precision["qlora: bf16: auto resolves to"]["value"] == "float32"
    assert precision["qlora: Linear layers compute in (training)"]["value"] == ["float32"]
    assert measurements(report, "resume")["final loss: resumed vs uninterrupted |Δ|"]["value"] <= 1e-3
    assert (
        measurements(report, "distributed")["fsdp lora: on a CPU ft says it trains as DDP"]["value"] is True
    )
    # Timings are measured but not judged on a CPU.
    ratio = measurements(report, "throughput")["ft / trl notebook"]
    assert ratio["value"] > 0 and ratio["ok"] is None
    assert measurements(report, "plan")["qlora-gc-128: plan without overhead"]["value"] > 0
    # The liger keys: read as trl's use_liger_kernel, and on a CPU the run goes without the kernels, said.
    liger = measurements(report, "liger")["liger keys accepted by ft"]
    assert liger["value"] is True, liger
    assert "liger_rope: true (axolotl) read as use_liger_kernel: true" in liger["detail"], liger
    assert "no CUDA device, so trained without Liger's kernels" in liger["detail"], liger
    assert "goals:" in proc.stdout
