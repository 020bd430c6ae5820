"""The serial worker every executor runs: claims tasks from a batch's task pool and runs them one
by one until none is left.

A worker renews the lease of the task it runs from a heartbeat thread, waits for tasks other
workers hold (to take them over if their worker dies) and follows submitit's requeue contract:
on preemption or timeout submitit calls the submitted callable's `checkpoint` (see `Worker`):
the task in flight goes back to `pending` (with its run, which the next attempt continues) and
the requeued job carries on with the undone tasks only. What a task does is its TaskRunner's
business.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..ids import new_id
from .taskpool import Claim, Outcome, TaskPool

IDLE_FIRST_S = 0.02  # a worker with nothing to claim looks again this soon, then less often


def worker_name() -> str:
    """Who holds a claim: host, pid and, under a scheduler, the job id."""
    job = (
        (
            os.environ.get("SLURM_ARRAY_JOB_ID", "")
            and f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
        )
        or os.environ.get("SLURM_JOB_ID", "")
        or os.environ.get("PBS_JOBID", "")
    )
    name = f"{os.uname().nodename}:{os.getpid()}"
    return f"{name}:{job}" if job else name


class TaskRunner(Protocol):
    """Runs one task. Sent (pickled) to every worker; `setup` runs once per worker process."""

    def setup(self) -> None: ...

    def run(self, claim: Claim) -> Outcome: ...

    def interrupted(self, claim: Claim) -> bool:
        """The worker stops during this task (from a signal handler). True: the task unwinds
        in order (its `run` returns or raises soon) and the worker hands it back to the pool
        then; False: hand it back now."""
        ...

    def teardown(self) -> None: ...


@dataclass
class WorkerReport:
    worker: str
    done: int = 0
    failed: int = 0
    interrupted: bool = False
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


class Worker:
    """A serial worker: claims tasks from the pool and runs them one by one until none is left.

    This is the callable every executor runs (in this process, in joblib workers, as Slurm or
    PBS jobs). It follows submitit's requeue contract: on preemption or timeout submitit calls
    `checkpoint`, which stops the worker after the task in flight, hands that task back to the
    pool (not done; its run is continued by the next attempt) and returns a `DelayedSubmission`
    of a fresh worker, so the requeued job carries on with the undone tasks only.
    """

    def __init__(
        self,
        pool: TaskPool,
        runner: TaskRunner,
        *,
        max_tasks: int | None = None,
        linger: bool = True,
    ) -> None:
        self.pool = pool
        self.runner = runner
        self.max_tasks = max_tasks
        self.linger = linger  # wait for tasks other workers hold, to take them over if they die
        self._current: Claim | None = None
        self._idle = IDLE_FIRST_S
        self._stopping = False
        self._beat: threading.Thread | None = None
        self._beat_stop = threading.Event()

    def __getstate__(self) -> dict[str, Any]:
        return {
            "pool": self.pool,
            "runner": self.runner,
            "max_tasks": self.max_tasks,
            "linger": self.linger,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            state["pool"], state["runner"], max_tasks=state["max_tasks"], linger=state["linger"]
        )

    def fresh(self) -> Worker:
        return Worker(self.pool, self.runner, max_tasks=self.max_tasks, linger=self.linger)

    # -- the loop ---------------------------------------------------------------------------
    def __call__(self, *_slot: Any) -> WorkerReport:
        report = WorkerReport(worker_name())
        t0 = time.monotonic()
        self.runner.setup()
        self._start_heartbeat()
        finished: tuple[Claim, Outcome] | None = None
        try:
            while not self._stopping:
                if self.max_tasks is not None and report.done + report.failed >= self.max_tasks:
                    break
                claim = self.pool.claim(report.worker, finished, new_run=new_id())
                finished = None
                if claim is None:
                    if not self._should_wait():
                        break
                    continue
                self._idle = IDLE_FIRST_S
                self._current = claim
                outcome = self.runner.run(claim)
                self._current = None
                if outcome.status == "terminated":
                    self.pool.finish(claim, outcome)
                    report.interrupted = True
                    break
                finished = (claim, outcome)
                if outcome.status == "completed":
                    report.done += 1
                else:
                    report.failed += 1
            if finished is not None:
                self.pool.finish(*finished)
                finished = None
        except BaseException:
            current = self._current
            if current is not None:
                # SIGTERM, Ctrl-C, submitit's exit after a checkpoint: the task is not done.
                with contextlib.suppress(Exception):
                    self.runner.interrupted(current)
                    self.pool.finish(current, Outcome("terminated", current.run))
                self._current = None
            if finished is not None:
                with contextlib.suppress(Exception):
                    self.pool.finish(*finished)
            raise
        finally:
            self._stop_heartbeat()
            with contextlib.suppress(Exception):
                self.runner.teardown()
            report.seconds = round(time.monotonic() - t0, 3)
        return report

    def _should_wait(self) -> bool:
        """Nothing claimable now. Tasks other workers hold may still come back (their worker
        dies and the lease runs out): the last workers wait for them rather than lose them."""
        if not self.linger:
            return False
        hint = self.pool.wait_hint()
        if hint is None:
            return False
        # Soon at first (the other workers' last tasks end any moment), then less often.
        pause = min(max(hint, 0.01), self._idle, max(self.pool.lease_s / 4, 0.01))
        self._idle = min(self._idle * 1.5, 2.0)
        time.sleep(pause)
        return True

    # -- leases -----------------------------------------------------------------------------
    def _start_heartbeat(self) -> None:
        self._beat_stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, name="tether-lease", daemon=True)
        self._beat.start()

    def _stop_heartbeat(self) -> None:
        self._beat_stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5)
            self._beat = None

    def _heartbeat(self) -> None:
        every = max(self.pool.lease_s / 6, 0.05)
        while not self._beat_stop.wait(every):
            current = self._current
            if current is None:
                continue
            try:
                lost = self.pool.heartbeat([current])
            except Exception as exc:  # a busy or unreachable pool: try again at the next beat
                print(f"tether: task lease not renewed: {exc}", file=sys.stderr)
                continue
            if lost:
                print(
                    f"tether: task {current.index} was taken over by another worker (this "
                    "worker's lease ran out); its result here will not count",
                    file=sys.stderr,
                )

    # -- stopping ---------------------------------------------------------------------------
    def release(self) -> None:
        """Stop after the task in flight, which goes back to the pool (not done): once it has
        unwound when its runner says it will (its metrics and state written first, so the next
        attempt continues from them), else now. Safe to call from a signal handler."""
        self._stopping = True
        current = self._current
        if current is not None:
            try:
                if not self.runner.interrupted(current):
                    self.pool.finish(current, Outcome("terminated", current.run))
                    self._current = None
            except Exception:
                traceback.print_exc()
                self._current = None

    # -- submitit's requeue contract --------------------------------------------------------
    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Called by submitit on preemption or timeout (in the signal handler, while a task may
        be running): hand the task in flight back to the pool and requeue a fresh worker."""
        import submitit

        self.release()
        return submitit.helpers.DelayedSubmission(self.fresh(), *args, **kwargs)
