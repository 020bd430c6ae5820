"""The one interface every executor implements, and the loop that drives a batch on it.

An executor starts N serial workers (`tether.executors.worker.Worker`) somewhere: in this
process, in joblib's processes, as Slurm or PBS jobs. Each worker pulls tasks from the batch's
task pool until none is left, so an executor only has to start workers and say when they have
all ended; which task runs where, retries after preemption and the records of every task are
the pool's and the worker's business.

A plug-in subclasses `Executor`, implements `start` (and `options` for its own settings), and
registers the class under the entry-point group `tether.executors`.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from ..errors import TetherError
from .taskpool import TaskPool
from .worker import Worker


class Handle(ABC):
    """The workers one `Executor.start` call launched."""

    @abstractmethod
    def done(self) -> bool:
        """True once every worker has ended (whatever the state of the pool)."""

    def wait(self, timeout: float) -> None:
        """Block up to `timeout` seconds, or less when the workers end."""
        time.sleep(timeout)

    def cancel(self) -> None:  # noqa: B027 (optional: workers that end with this process)
        """Stop the workers (Ctrl-C on the batch): kill processes, cancel jobs."""

    def errors(self) -> list[str]:
        """What went wrong with the workers themselves (a crashed process, a failed job)."""
        return []

    def describe(self) -> str:
        return ""


class Executor(ABC):
    """Where a batch's workers run.

    `n_jobs` is the number of workers asked for (`--n-jobs`); `options` are the executor's own
    settings (for Slurm, the `--slurm-config` file). Subclasses check them in `__init__` and
    raise TetherError with a hint, before any run is made.
    """

    name: ClassVar[str] = ""
    # Workers wait in a scheduler's queue: children are made ahead with status `queued`.
    scheduler: ClassVar[bool] = False
    # Workers run in other processes: the task function must pickle (cloudpickle).
    remote: ClassVar[bool] = True
    # How many times a round of workers that all died (a killed process) is started again.
    restarts: ClassVar[int] = 2

    def __init__(
        self,
        *,
        n_jobs: int | None = None,
        options: dict[str, Any] | None = None,
        source: str | None = None,
    ) -> None:
        if n_jobs is not None:
            check_n_jobs(n_jobs)
        self.n_jobs = n_jobs
        self.options = dict(options or {})
        self.source = source  # the file the options came from, for messages
        self.lease_s: float | None = None  # the task lease its workers hold (None: default)

    def workers_for(self, n_tasks: int) -> int:
        return max(1, min(n_tasks, self.n_jobs or 1))

    def check(self) -> None:  # noqa: B027 (optional)
        """Fail early (TetherError) when this executor cannot run here (sbatch missing, ...)."""

    @abstractmethod
    def start(self, worker: Worker, n_workers: int, folder: Path) -> Handle:
        """Launch `n_workers` copies of `worker`; `folder` (in the parent run) is for logs and
        job files."""

    def record(self) -> dict[str, Any]:
        """What the batch records about its executor (in the task pool's meta)."""
        return {"executor": self.name, "n_jobs": self.n_jobs, "options": self.options}


def check_n_jobs(value: Any) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise TetherError(f"--n-jobs must be a whole number of workers, got {value!r}")
    if n < 1:
        raise TetherError(
            f"--n-jobs must be at least 1, got {n}",
            "give the number of workers to run at once (e.g. --n-jobs 4)",
        )
    return n


class Poller:
    """Calls `tick` every `every` seconds in a thread until stopped (the progress display)."""

    def __init__(self, tick: Callable[[], None], every: float = 0.2) -> None:
        self._tick = tick
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tether-progress", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self._tick()
            except Exception:
                pass

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self._tick()
        except Exception:
            pass


def drive(
    executor: Executor,
    worker: Worker,
    pool: TaskPool,
    folder: Path,
    *,
    on_tick: Callable[[], None] | None = None,
    on_start: Callable[[Handle], None] | None = None,
) -> list[str]:
    """Run the pool's tasks on `executor` until every worker has ended; the workers' errors.

    A round whose workers all died (a process killed) while tasks were left is started again,
    up to `executor.restarts` times: the new workers take over the dead ones' tasks once their
    leases run out. Ctrl-C or SIGTERM cancels the workers, hands the tasks in flight back to
    the pool and propagates.
    """
    errors: list[str] = []
    tick = on_tick or (lambda: None)
    rounds = 0
    with Poller(tick):
        while True:
            n = executor.workers_for(max(pool.unfinished(), 1))
            handle = executor.start(worker, n, folder)
            if on_start is not None:
                on_start(handle)
            try:
                while not handle.done():
                    handle.wait(0.25)
            except BaseException:
                handle.cancel()
                raise
            round_errors = handle.errors()
            errors.extend(round_errors)
            if not pool.unfinished() or not round_errors or rounds >= executor.restarts:
                break
            rounds += 1
    return errors
