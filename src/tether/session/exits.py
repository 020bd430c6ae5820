"""How a run's code stops early: SIGTERM (Terminated) or --needed finding a twin (Skipped)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


class Terminated(BaseException):
    """Raised in the main thread when the run receives SIGTERM."""


class Exited(SystemExit):
    """A non-zero exit with a reason for state.json's `error` (`rank 1 on node07 failed (exit
    3)`) instead of `SystemExit(3)`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code)
        self.reason = reason


class Skipped(Exception):
    """--needed found a completed run with the same inputs."""

    def __init__(self, twin: str) -> None:
        super().__init__(twin)
        self.twin = twin


@contextlib.contextmanager
def signals_raise_terminated() -> Iterator[None]:
    """SIGTERM raises Terminated in the main thread inside the block (so `finally` runs)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated(f"received signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
