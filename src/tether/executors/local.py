"""`local`: N worker processes on this machine through joblib's loky (`--n-jobs N`).

Each of the N workers is a serial worker that pulls tasks from the pool until none is left, so a
batch of 1000 tasks costs N process dispatches, not 1000, and the pool balances the load. Each
worker runs in a loky executor of its own (one process), kept warm from one batch to the next: a
worker killed with SIGKILL breaks only its own executor, so it costs only its own task (taken
over by another worker once its lease runs out), where one shared pool would be torn down with
every task in flight.
"""

from __future__ import annotations

import atexit
import concurrent.futures
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


IDLE_TIMEOUT_S = 300  # a warm worker process idle this long ends (loky starts another)
_free: list[Any] = []  # warm one-process loky executors no batch uses now
_free_lock = threading.Lock()


def _worker_env(n: int) -> dict[str, str] | None:
    """The variables joblib gives its loky workers (inner BLAS/OpenMP threads: cores / n)."""
    try:
        from joblib._parallel_backends import LokyBackend

        env: dict[str, str] = LokyBackend()._prepare_worker_env(n_jobs=n)
        return env
    except Exception:  # a joblib without it: the workers inherit this process's environment
        return None


def _usable(executor: Any) -> bool:
    return not (executor._flags.broken or executor._flags.shutdown)


def _take(n: int) -> list[Any]:
    from joblib.externals.loky.process_executor import ProcessPoolExecutor

    env = _worker_env(n)
    with _free_lock:
        warm = [e for e in _free if _usable(e)]
        fits = [e for e in warm if getattr(e, "_tether_env", None) == env]
        out = fits[:n]
        _free[:] = [e for e in warm if e not in out]
    while len(out) < n:
        executor = ProcessPoolExecutor(max_workers=1, timeout=IDLE_TIMEOUT_S, env=env)
        executor._tether_env = env  # which batches it can serve warm
        out.append(executor)
    return out


@atexit.register
def _shut_down() -> None:
    """End the warm workers before the interpreter's teardown (loky's own callbacks need it)."""
    with _free_lock:
        executors = list(_free)
        _free.clear()
    for executor in executors:
        executor.shutdown(wait=True)


class LokyHandle(Handle):
    """N workers, each in a one-process loky executor of its own: one dies alone."""

    backend = "loky"

    def __init__(self, worker: Worker, n: int) -> None:
        self.n = n
        self._executors = _take(n)
        self._futures: list[concurrent.futures.Future[Any]] = []
        self._cancelled = False
        try:
            for i, executor in enumerate(self._executors):
                self._futures.append(executor.submit(worker.fresh(), i))
        except BaseException:
            self.cancel()
            raise

    def done(self) -> bool:
        if all(f.done() for f in self._futures):
            self._give_back()
            return True
        return False

    def wait(self, timeout: float) -> None:
        pending = [f for f in self._futures if not f.done()]  # a dead one does not spin this
        concurrent.futures.wait(pending, timeout, return_when="FIRST_COMPLETED")

    @property
    def reports(self) -> list[Any]:
        return [f.result() for f in self._futures if f.done() and f.exception() is None]

    def errors(self) -> list[str]:
        out = []
        for i, f in enumerate(self._futures):
            exc = f.exception() if f.done() and not f.cancelled() else None
            if exc is not None:
                text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                out.append(f"loky worker {i}: {text}")
        return out

    def _give_back(self) -> None:
        executors, self._executors = self._executors, []
        if self._cancelled:
            return
        with _free_lock:
            _free.extend(e for e in executors if _usable(e))

    def cancel(self) -> None:
        self._cancelled = True
        for executor in self._executors:
            executor.shutdown(wait=False, kill_workers=True)
        self._executors = []
        concurrent.futures.wait(self._futures, 10)

    def describe(self) -> str:
        return f"{self.n} loky worker{'s' if self.n != 1 else ''}"


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
        if self.backend == "loky" and not self.backend_args():
            return LokyHandle(worker, n_workers)
        return JoblibHandle(worker, n_workers, self.backend, self.backend_args())
