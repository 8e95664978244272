"""The process that runs the check's parts, one after the other, started by check.py.

    python bench/gpu/worker.py --work DIR --journal FILE [--tiny] PART...

Every measurement is appended to the journal (JSON lines) the moment it is taken, so a part that
check.py stops at its timeout keeps what it reached. A part that raises is recorded as failed with
its error, and the next part runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
for folder in (HERE, REPO / "bench"):  # the parts, and bench/train.py (with tests/ via bench/_env.py)
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import _env  # noqa: E402, F401  (importing it sets up the environment)


@dataclass
class Part:
    """What a part records through: measurements against goals, notes, facts about the machine."""

    name: str
    work: Path
    tiny: bool
    journal: Path

    def write(self, event: str, **fields: Any) -> None:
        row = {"t": round(time.time(), 3), "part": self.name, "event": event, **fields}
        with self.journal.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row, default=str) + "\n")

    def measure(
        self,
        name: str,
        value: Any,
        unit: str = "",
        goal: str = "",
        ok: bool | None = None,
        detail: str = "",
        timing: bool = False,
    ) -> None:
        """`timing`: a speed goal, not judged in --tiny mode (a shared CPU and a tiny model say nothing
        about a GPU's speed)."""
        if timing and self.tiny:
            ok, detail = None, (detail + "; " if detail else "") + "not judged in --tiny mode"
        self.write("measure", name=name, value=value, unit=unit, goal=goal, ok=ok, detail=detail)

    def note(self, text: str) -> None:
        self.write("note", text=text)

    def info(self, key: str, value: Any) -> None:
        self.write("info", key=key, value=value)


def part_functions() -> dict[str, Callable[[Part], None]]:
    from parts_runs import distributed, merge, resume
    from parts_setup import setup
    from parts_train import liger, plan_vs_reality, precision, throughput

    return {
        "setup": setup,
        "precision": precision,
        "plan": plan_vs_reality,
        "throughput": throughput,
        "merge": merge,
        "resume": resume,
        "distributed": distributed,
        # Last: trl's use_liger_kernel patches transformers' model classes for the whole process.
        "liger": liger,
    }


def run_part(part: Part, function: Callable[[Part], None]) -> None:
    part.write("start")
    started = time.monotonic()
    try:
        function(part)
    except Exception as err:
        lines = traceback.format_exc().strip().splitlines()
        part.write(
            "end",
            status="failed",
            seconds=time.monotonic() - started,
            error=f"{type(err).__name__}: {err}",
            traceback=lines[-12:],
        )
        return
    part.write("end", status="ok", seconds=time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--journal", type=Path, required=True)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("parts", nargs="+")
    args = parser.parse_args()
    # Processes this one starts (ft train, ft merge, accelerate launch) import ft from this checkout.
    paths = [str(REPO / "src"), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    functions = part_functions()
    for name in args.parts:
        run_part(Part(name, args.work, args.tiny, args.journal), functions[name])


if __name__ == "__main__":
    main()
