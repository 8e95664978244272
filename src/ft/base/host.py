"""The host's memory, as the commands that size their work by it read it (merge, generation,
run.json)."""

from __future__ import annotations

import os
from pathlib import Path


def _memory(meminfo_key: str, pages_name: str) -> int | None:
    """Bytes from /proc/meminfo (Linux), else from sysconf pages; None when neither says."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(f"{meminfo_key}:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf(pages_name) * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


def available_memory() -> int | None:
    """Bytes of memory available to new work (MemAvailable, else the free pages)."""
    return _memory("MemAvailable", "SC_AVPHYS_PAGES")


def total_memory() -> int | None:
    return _memory("MemTotal", "SC_PHYS_PAGES")
