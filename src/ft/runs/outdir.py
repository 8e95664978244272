"""Folders ft writes: who owns them, replacing them with --force, hidden siblings, write errors.

ft deletes or replaces only what it wrote itself. It recognises its folders by a file it always
writes there: a run folder by `run.json` (finished) or `.ft-run.json` (written when a run starts),
a merged model by `ft_merge.json`. Any other non-empty folder is refused, `--force` or not.

Replacing never destroys the old folder before the new one stands: the old one is renamed to a
hidden sibling `.NAME.ft-TAG-PID-HOST.RANDOM.old` (same parent folder, so a rename, not a copy) and
deleted once the new one is in place. Temporary siblings carry the writer's process id, so the next
ft command can tell a leftover of a killed process (kill -9, power loss) from one still being
written, and remove it.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ft.base.errors import FtError
from ft.base.perms import dir_mode

DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class WriteFailedError(FtError):
    """ft could not write its output (disk full, quota, file size limit, I/O error)."""


def is_empty(path: Path) -> bool:
    """True for a missing folder or one with nothing in it."""
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


def owned_by_ft(path: Path, markers: tuple[str, ...]) -> bool:
    return path.is_dir() and any((path / marker).is_file() for marker in markers)


def refuse_foreign(path: Path, markers: tuple[str, ...], what: str) -> None:
    """FtError unless `path` is missing, empty, or a folder ft wrote (holds one of `markers`)."""
    if is_empty(path) or owned_by_ft(path, markers):
        return
    kind = "a file" if path.exists() and not path.is_dir() else "a folder"
    raise FtError(
        f"{path} is {kind} ft did not create (no {' or '.join(markers)}): ft will not delete it",
        hint=f"choose another {what}, or move it away yourself if it can go",
    )


def refuse_holding_cwd(path: Path) -> None:
    """FtError when `path` is the current folder or holds it: it cannot be moved or deleted
    from under the running command (relative paths would then point into the moved folder)."""
    cwd = Path.cwd().resolve()
    target = path.expanduser().resolve()
    if cwd == target or target in cwd.parents:
        raise FtError(
            f"{path} holds the current folder ({cwd}): ft will not move or delete it",
            hint="run ft from another folder, or set another output folder",
        )


# ---------------------------------------------------------------------------------------------
# Hidden siblings: temporary and set-aside folders beside an output


def _sibling_prefix(path: Path, tag: str) -> str:
    return f".{path.name}.ft-{tag}-"


def host_name() -> str:
    """The host name, with the PID namespace where there is one: containers sharing a host name
    (docker --net=host) have their own process ids, which a pid check must not mix up."""
    host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"
    try:
        return f"{host}-ns{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return host


def new_sibling(path: Path, tag: str, suffix: str) -> Path:
    """A new hidden folder beside `path` (same filesystem, so renames between them are atomic),
    named with this process's id and host."""
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f"{_sibling_prefix(path, tag)}{os.getpid()}-{host_name()}."
    folder = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=path.parent))
    folder.chmod(dir_mode())  # it may become the output itself (a merged model): not private
    return folder


def pid_alive(pid: int) -> bool:
    if pid == os.getpid() or os.name != "posix":  # Windows' os.kill(pid, 0) would send Ctrl-C
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def stale_siblings(path: Path, tag: str) -> list[Path]:
    """Hidden siblings of `path` with `tag` left by a process of this host that no longer runs
    (on a shared filesystem, another host's process cannot be checked: its folders stay)."""
    if not path.parent.is_dir():
        return []
    pattern = re.compile(re.escape(_sibling_prefix(path, tag)) + r"(\d+)-([A-Za-z0-9-]+)\.")
    stale = []
    for child in sorted(path.parent.iterdir()):
        match = pattern.match(child.name)
        if match and match.group(2) == host_name() and child.is_dir() and not pid_alive(int(match.group(1))):
            stale.append(child)
    return stale


def remove_stale_siblings(path: Path, tag: str) -> list[Path]:
    removed = stale_siblings(path, tag)
    for folder in removed:
        shutil.rmtree(folder, ignore_errors=True)
    return removed


def set_aside(path: Path, tag: str) -> Path:
    """Rename `path` into a new hidden sibling; returns that holder (restore() puts it back)."""
    holder = new_sibling(path, tag, ".old")
    os.replace(path, holder / path.name)
    return holder


KILLED_NAME = ".ft-killed"
"""Inside a holder: where restore() moves what stood at the output path before deleting it."""


def restore(holder: Path, path: Path) -> None:
    """Put the set-aside folder back: two renames first (the old folder is back before anything is
    deleted), then delete what stood there, moved into the holder."""
    if path.exists() or path.is_symlink():
        os.replace(path, holder / KILLED_NAME)
    os.replace(holder / path.name, path)
    shutil.rmtree(holder, ignore_errors=True)


@contextmanager
def signals_held(*, drop: bool = False) -> Iterator[list[str]]:
    """SIGINT/SIGTERM wait until the block ends (a set-aside or restore is never cut half-way): a
    signal sent meanwhile is raised again when it ends, or with `drop` discarded and its name put
    in the yielded list. By a recording handler, not a signal mask: a mask blocks one thread only,
    and the C-level handler of another thread would still interrupt this one. Main thread only."""
    dropped: list[str] = []
    if threading.current_thread() is not threading.main_thread():
        yield dropped
        return
    caught: list[int] = []

    def hold(signum: int, frame: object) -> None:
        caught.append(signum)

    previous = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield dropped
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
        if drop:
            dropped.extend(signal.Signals(sig).name for sig in caught)
        else:
            for signum in dict.fromkeys(caught):
                signal.raise_signal(signum)


# ---------------------------------------------------------------------------------------------
# Write errors


def _disk_oserror(err: BaseException) -> OSError | None:
    """The full-disk OSError behind `err`, following the chain of causes."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in DISK_ERRNOS:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def is_write_failure(err: BaseException) -> bool:
    """A full disk, a quota or a file size limit, seen through the layers that wrap it.

    torch.save reports a full disk as a RuntimeError without errno ("file write failed",
    "unexpected pos ..."), so a save's own RuntimeError counts too (see `writing`).
    """
    return _disk_oserror(err) is not None


def _reason(err: BaseException) -> str:
    disk = _disk_oserror(err)
    if disk is not None:
        return f"{disk.strerror} ({disk.filename})" if disk.filename else str(disk.strerror)
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def free_space(path: Path) -> str:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        return "free space unknown"
    return f"{free / 2**20:,.1f} MiB free there"


def write_failed(what: Path, err: BaseException, hint: str) -> WriteFailedError:
    return WriteFailedError(
        f"cannot write {what} (disk full, or a file size limit?): {_reason(err)}; {free_space(what)}",
        hint=hint,
    )


@contextmanager
def writing(what: Path, hint: str, *, any_error: bool = False) -> Iterator[None]:
    """Turn a failed write into WriteFailedError: a disk error always, any other Exception only
    with `any_error` (for a block that does nothing but write files)."""
    try:
        yield
    except FtError:
        raise
    except Exception as err:
        if any_error or is_write_failure(err):
            raise write_failed(what, err, hint) from err
        raise
