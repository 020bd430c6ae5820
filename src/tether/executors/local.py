"""`local`: N worker processes on this machine through joblib's loky backend (`--n-jobs N`).

Each of the N joblib tasks is a serial worker that pulls tasks from the pool until none is left,
so a batch of 1000 tasks costs N process dispatches, not 1000, and the pool balances the load.
Loky reuses its processes from one batch to the next.
"""

from __future__ import annotations

import os
import threading
import traceback
from pathlib import Path
from typing import Any, ClassVar

from ..errors import TetherError
from .base import Executor, Handle
from .worker import Worker


class JoblibHandle(Handle):
    """A joblib `Parallel` call over N workers, run from a thread so this process can show
    progress and take Ctrl-C."""

    def __init__(self, worker: Worker, n: int, backend: str, backend_args: dict[str, Any]) -> None:
        self.n = n
        self.backend = backend
        self._errors: list[str] = []
        self.reports: list[Any] = []
        self._thread = threading.Thread(
            target=self._run, args=(worker, n, backend_args), name="tether-joblib", daemon=True
        )
        self._thread.start()

    def _run(self, worker: Worker, n: int, backend_args: dict[str, Any]) -> None:
        from joblib import Parallel, delayed

        try:
            self.reports = Parallel(n_jobs=n, backend=self.backend, **backend_args)(
                delayed(worker.fresh())(i) for i in range(n)
            )
        except BaseException as exc:
            text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            self._errors.append(f"{self.backend} workers: {text}")

    def done(self) -> bool:
        return not self._thread.is_alive()

    def wait(self, timeout: float) -> None:
        self._thread.join(timeout)

    def errors(self) -> list[str]:
        return list(self._errors)

    def cancel(self) -> None:
        if self.backend == "loky":
            from joblib.externals.loky import get_reusable_executor

            get_reusable_executor().shutdown(wait=False, kill_workers=True)
        self._thread.join(timeout=10)

    def describe(self) -> str:
        return f"{self.n} {self.backend} worker{'s' if self.n != 1 else ''}"


class LocalExecutor(Executor):
    """joblib's loky processes on this machine; `--n-jobs N` workers (default: the CPU count)."""

    name: ClassVar[str] = "local"
    backend: ClassVar[str] = "loky"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.check()

    def check(self) -> None:
        try:
            import joblib  # noqa: F401
        except ImportError:
            raise TetherError(
                f"--executor {self.name} needs joblib, which is not installed",
                "pip install 'tether[cluster]' (or run with --executor serial)",
            )

    def workers_for(self, n_tasks: int) -> int:

        n = self.n_jobs or os.cpu_count() or 1
        return max(1, min(n_tasks, n))

    def backend_args(self) -> dict[str, Any]:
        return {}

    def start(self, worker: Worker, n_workers: int, folder: Path) -> Handle:
        return JoblibHandle(worker, n_workers, self.backend, self.backend_args())
