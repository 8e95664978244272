"""Signal handling shared by the commands that must clean up when stopped (train, merge)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def raise_on_signals(error: Callable[[str], BaseException]) -> Iterator[None]:
    """While inside: SIGINT/SIGTERM raise `error(signal name)`, so that cleanup code runs (SIGTERM's
    default would end the process on the spot)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: Any) -> None:
        raise error(signal.Signals(signum).name)

    with signal_handler(handle):
        yield


@contextmanager
def signal_handler(handle: Callable[[int, Any], None]) -> Iterator[None]:
    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
