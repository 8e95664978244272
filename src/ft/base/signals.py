"""Signal handling shared by the commands that must clean up when stopped (train, merge, generate)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class _Stopped(BaseException):
    """What the handler raises: a BaseException, like KeyboardInterrupt, so that library code that
    catches Exception (transformers turns any error while loading a tokenizer into an OSError) lets
    it through; `raise_on_signals` turns it into the command's own error on the way out."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


@contextmanager
def raise_on_signals(error: Callable[[str], BaseException]) -> Iterator[None]:
    """While inside: SIGINT/SIGTERM raise `error(signal name)`, so that cleanup code runs (SIGTERM's
    default would end the process on the spot)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: Any) -> None:
        raise _Stopped(error(signal.Signals(signum).name))

    with signal_handler(handle):
        try:
            yield
        except _Stopped as stopped:
            raise stopped.error from None


@contextmanager
def signal_handler(handle: Callable[[int, Any], None]) -> Iterator[None]:
    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
