"""File modes that follow the user's umask.

`tempfile.mkstemp` and `mkdtemp` create files 0600 and folders 0700 whatever the umask, which is
right for secrets but wrong for what ft publishes by renaming a temporary name into place (run.json,
a merged model folder): those get the mode a plain `open()` or `mkdir()` would give them.
"""

from __future__ import annotations

import os
from pathlib import Path


def current_umask() -> int:
    """The process umask, read without changing it where Linux shows it (/proc/self/status);
    elsewhere set and restored at once."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode of a new file: 0666 less the umask (0644 under the usual 022)."""
    return 0o666 & ~current_umask()


def dir_mode() -> int:
    """The mode of a new folder: 0777 less the umask (0755 under the usual 022)."""
    return 0o777 & ~current_umask()


def follow_umask(folder: Path) -> None:
    """Give a folder ft has just written, and everything in it, the modes of the umask.

    safetensors (0.7 and later) writes each file through a private temporary file and renames it,
    so adapters, checkpoints and merged shards come out 0600 whatever the umask."""
    files, dirs = file_mode(), dir_mode()
    folder.chmod(dirs)
    for path in folder.rglob("*"):
        if path.is_symlink():
            continue
        path.chmod(dirs if path.is_dir() else files)
