"""Running one benchmarked path in a fresh process: its time after its imports, its memory after
the imports and its peak (VmHWM). "extra" is peak minus after-imports: the memory the path itself
took. Used by bench/merge.py and bench/export.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from _env import REPO

MEMORY_PRELUDE = """
import json, sys, time
from pathlib import Path

def rss_mb(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024

def report(seconds, after_imports, **extra):
    peak = rss_mb("VmHWM")
    print("BENCH " + json.dumps({"seconds": seconds, "rss_after_imports_mb": after_imports,
                                 "peak_rss_mb": peak, "extra_mb": peak - after_imports, **extra}))
"""


def run_child(body: str, **names: Any) -> dict[str, Any]:
    """Run `body` after the prelude and `NAME = value` lines in a fresh process; its report line."""
    assignments = "".join(f"{key} = {value!r}\n" for key, value in names.items())
    code = MEMORY_PRELUDE + assignments + body
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env={**os.environ}
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("BENCH ")]
    if result.returncode != 0 or not lines:
        raise SystemExit(f"bench child failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return dict(json.loads(lines[-1][len("BENCH ") :]))
