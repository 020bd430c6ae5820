"""`serial`: the tasks one after the other, in this process (no pickling, pdb works)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from .base import Executor, Handle
from .worker import Worker


class _Done(Handle):
    def __init__(self, errors: list[str]) -> None:
        self._errors = errors

    def done(self) -> bool:
        return True

    def errors(self) -> list[str]:
        return self._errors

    def describe(self) -> str:
        return "in this process"


class SerialExecutor(Executor):
    """Runs the single worker in this process, in the main thread (so Ctrl-C and SIGTERM stop
    the task in flight, which is recorded terminated and handed back to the pool)."""

    name: ClassVar[str] = "serial"
    remote: ClassVar[bool] = False
    restarts: ClassVar[int] = 0

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)

    def workers_for(self, n_tasks: int) -> int:
        return 1

    def start(self, worker: Worker, n_workers: int, folder: Path) -> Handle:
        worker.fresh()()
        return _Done([])
