"""How a run's code stops early: SIGTERM (Terminated) or --needed finding a twin (Skipped)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
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
def signals_raise_terminated() -> Iterator[Callable[[], None]]:
    """SIGTERM raises Terminated in the main thread (so `finally` runs), once, until the
    yielded `disarm()` is called; after that, and after the first, SIGTERM is ignored until the
    block ends. A run that is stopping often gets the signal twice (from its launcher and from
    Slurm, which signals every process of a preempted job): a second one must not kill it
    while it writes its last metrics and its final state. The supervisor's SIGKILL after its
    grace period stays the hard stop. The previous handler is back when the block ends."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    armed = [True]

    def handler(signum: int, frame: Any) -> None:
        if armed[0]:
            armed[0] = False
            raise Terminated(f"received signal {signum}")

    def disarm() -> None:
        armed[0] = False

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield disarm
    finally:
        signal.signal(signal.SIGTERM, previous)
