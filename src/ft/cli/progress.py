"""Progress of long commands: a rich bar in a terminal, plain lines when the output goes to a file.

Under nohup, Slurm or `> log 2>&1` a bar renders nothing, so a run looks hung for hours. Off a
terminal, each command prints plain lines instead: the first and the last item of every stage, and
between them at most one line per `PLAIN_INTERVAL_S` (every item when items are slower than that).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

PLAIN_INTERVAL_S = 10.0


def on_terminal(console: Console) -> bool:
    """A live bar renders only on a terminal (rich also honours FORCE_COLOR / TTY_COMPATIBLE)."""
    return bool(console.is_terminal)


def clock_text(seconds: float | None) -> str:
    """1:05, 1:02:03; '-' when unknown."""
    if seconds is None:
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def eta_s(elapsed: float, done: int, total: int) -> float | None:
    if done <= 0 or total <= 0:
        return None
    return elapsed / done * max(total - done, 0)


@dataclass
class _Stage:
    started: float
    last_line: float | None = None


@dataclass
class StageProgress:
    """`progress(stage, done, total)` for stages of known size (eval's 'generate tuned', merge's
    shards, ...): one rich bar per stage in a terminal, plain lines otherwise. Use as a context
    manager so the bars stop when the work ends or fails."""

    console: Console
    interval_s: float = PLAIN_INTERVAL_S
    clock: Callable[[], float] = time.monotonic
    _stages: dict[str, _Stage] = field(default_factory=dict)
    _bar: Any = None
    _tasks: dict[str, Any] = field(default_factory=dict)

    def __enter__(self) -> StageProgress:
        if on_terminal(self.console):
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
            )
            self._bar = Progress(*columns, console=self.console, transient=True)
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = self.clock()
        state = self._stages.setdefault(stage, _Stage(started=now))
        if self._bar is not None:
            if stage not in self._tasks:
                self._tasks[stage] = self._bar.add_task(stage, total=total)
            self._bar.update(self._tasks[stage], completed=done, total=total)
            return
        due = state.last_line is None or now - state.last_line >= self.interval_s
        if due or done >= total:
            state.last_line = now
            elapsed = now - state.started
            share = f" ({100 * done / total:.0f}%)" if total else ""
            self.console.print(
                f"{stage}: {done}/{total}{share}  elapsed {clock_text(elapsed)}  "
                f"eta {clock_text(eta_s(elapsed, done, total))}",
                highlight=False,
                markup=False,
            )
