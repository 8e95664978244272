"""How fast each shipped config answers through `ft format`, `ft plan` and `ft train` when the
Hugging Face Hub cannot be reached and HF_HUB_OFFLINE is not set (ft.config.hub's quick probe).

    python bench/offline.py [--endpoint URL] [--limit-s 5]

Each command runs as a child process with an empty Hugging Face cache (HF_HOME in a temporary
folder) and without HF_HUB_OFFLINE; by default the Hub endpoint is the real one (on a machine with
no network its name does not resolve), `--endpoint http://127.0.0.1:9` simulates a refused
connection. Printed per config and command: the exit status, the seconds until it answered (its
first line of output) and until it ended, and its first line. A config whose model and data are
local (the quickstart) does not need the Hub at all: its `ft train` is stopped with SIGINT once it
has answered, the others fail fast with the `hf download` commands to run.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COMMANDS = ("format", "plan", "train")
WAIT_S = 120.0


def run(command: list[str], env: dict[str, str], stop: bool) -> tuple[int | None, float | None, float, str]:
    """(exit status, seconds to the first line, seconds to the end, first line); with `stop`, a
    command still running 10 s after its first line (a local ft train) gets SIGINT."""
    began = time.monotonic()
    proc = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    assert proc.stdout is not None
    first_at, first = None, ""
    while proc.poll() is None and time.monotonic() - began < WAIT_S:
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            line = proc.stdout.readline()
            if line and first_at is None:
                first_at, first = time.monotonic() - began, line.strip()
        if stop and first_at is not None and time.monotonic() - began > first_at + 10:
            proc.send_signal(signal.SIGINT)
            break
    proc.wait(timeout=60)
    rest = proc.stdout.read()
    if first_at is None and rest.strip():
        first_at, first = time.monotonic() - began, rest.strip().splitlines()[0]
    return proc.returncode, first_at, time.monotonic() - began, first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--endpoint", default=None, help="HF_ENDPOINT for the children (default: the real Hub)"
    )
    parser.add_argument("--limit-s", type=float, default=5.0)
    args = parser.parse_args()
    configs = sorted((REPO / "configs").glob("*.yml"))
    slow = []
    with tempfile.TemporaryDirectory(prefix="ft-bench-offline-") as tmp:
        env = {**os.environ, "HF_HOME": str(Path(tmp) / "hf")}
        for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_CACHE", "TRANSFORMERS_OFFLINE"):
            env.pop(name, None)
        if args.endpoint:
            env["HF_ENDPOINT"] = args.endpoint
        print(f"no HF_HUB_OFFLINE, empty cache, endpoint {env.get('HF_ENDPOINT', 'https://huggingface.co')}")
        for config in configs:
            for command in COMMANDS:
                extra = ["--set", f"output_dir={Path(tmp) / config.stem}"] if command == "train" else []
                argv = [sys.executable, "-m", "ft", command, str(config.relative_to(REPO)), *extra]
                code, first_s, total_s, first = run(argv, env, stop=command == "train")
                answered = "-" if first_s is None else f"{first_s:5.1f}"
                print(
                    f"{config.stem:14s} {command:6s} exit {code!s:>4}  answered {answered} s  "
                    f"ended {total_s:5.1f} s  | {first[:90]}"
                )
                if first_s is None or first_s > args.limit_s:
                    slow.append(f"{config.stem} {command}")
    loads = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average (1/5/15 min): {loads} on {os.cpu_count()} CPUs (shared machine)")
    print(f"slower than {args.limit_s:g} s to answer: {', '.join(slow) or 'none'}")


if __name__ == "__main__":
    main()
