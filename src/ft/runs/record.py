"""What run.json records besides the run itself: how the run was started (the command line, the
config's git commit), where it ran (hardware, Python) and what it took (peak memory).

Nothing here fails a run: a piece that cannot be found (no git, no /proc) is recorded as null.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ft.base.host import total_memory

GIT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Launch:
    """How `ft train` was started: the config file as typed and every `--set`, so that run.json and
    the resume hint repeat the command exactly."""

    config_path: Path | None = None
    overrides: tuple[str, ...] = ()

    def command(self, *flags: str) -> str:
        """`ft train CONFIG [flags] --set k=v ...`, quoted for a POSIX shell."""
        words = ["ft", "train", str(self.config_path) if self.config_path is not None else "CONFIG", *flags]
        for override in self.overrides:
            words += ["--set", override]
        return shlex.join(words)

    def resume_command(self) -> str:
        return self.command("--resume")

    def to_json(self, *flags: str) -> dict[str, Any]:
        config = self.config_path
        return {
            "command": self.command(*flags),
            "config_file": str(config.expanduser().resolve()) if config is not None else None,
            "overrides": list(self.overrides),
            "cwd": str(Path.cwd()),
            "git": git_info(config.expanduser().resolve().parent) if config is not None else None,
        }


def git_info(folder: Path) -> dict[str, Any] | None:
    """The commit of the git repository holding `folder` and whether its tracked files have
    changes since (the config may differ from the commit); None outside a repository."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(folder), *args],
                capture_output=True,
                text=True,
                timeout=GIT_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status), "root": git("rev-parse", "--show-toplevel")}


def cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def hardware_info() -> dict[str, Any]:
    """CPU model and cores, memory, GPUs (name and memory) and the CUDA version torch was built with."""
    import torch

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpus = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            gpus.append({"name": props.name, "memory_bytes": int(props.total_memory)})
    return {
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": usable,
        "memory_bytes": total_memory(),
        "gpus": gpus,
        "cuda": torch.version.cuda if gpus else None,
        "platform": platform.platform(),
    }


def peak_memory() -> dict[str, Any]:
    """This process's peak resident memory, and on CUDA each GPU's peak allocated by torch."""
    import resource

    import torch

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    rss_bytes = rss if platform.system() == "Darwin" else rss * 1024
    gpu = None
    if torch.cuda.is_available():
        gpu = [int(torch.cuda.max_memory_allocated(i)) for i in range(torch.cuda.device_count())]
    return {"host_rss_bytes": int(rss_bytes), "gpu_max_allocated_bytes": gpu}


def python_version() -> str:
    return platform.python_version()
