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
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..ids import new_id
from .taskpool import Claim, Outcome, TaskPool

IDLE_FIRST_S = 0.002  # a worker with nothing to claim looks again this soon, then less often
IDLE_SHARE = 0.1  # ... but never after more than this share of the time it has waited so far
IDLE_MAX_S = 2.0
BATCH_S = 0.02  # a worker claims at once as many tasks as it expects to run in this long
MAX_BATCH = 32
HAND_BACK_S = 0.25  # the task in flight ran this long: the claims waiting behind it go back


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

    Short tasks are claimed several at a time (`batch_size`: as many as the worker expects to
    run in BATCH_S), and their ends recorded together with the next claim, so a batch of tiny
    tasks does not pay a pool transaction for each. The worker holds the leases of all it
    claimed; the tasks not started go back to the pool when it stops, and when the task in
    flight runs past HAND_BACK_S (tasks grew longer than the ones before: the others should not
    wait behind it while another worker is idle).
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
        self._began = 0.0  # when the task in flight began (monotonic)
        self._queue: deque[Claim] = deque()  # claimed, not started
        self._finished: list[tuple[Claim, Outcome]] = []  # ended, not yet recorded in the pool
        # Held while the claims above change hands: the heartbeat thread reads them and hands
        # back the queue; re-entrant, for a signal handler in the middle of the main thread's.
        self._held = threading.RLock()
        self._took: float | None = None  # how long tasks take, leaning to the slowest
        self._idle = IDLE_FIRST_S
        self._idle_since: float | None = None  # since when it has found nothing to claim
        self._stopping = False
        self._name = ""
        self._beat: threading.Thread | None = None
        self._beat_stop = threading.Event()
        self._beat_wake = threading.Event()

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
        self._name = report.worker
        t0 = time.monotonic()
        self.runner.setup()
        self._start_heartbeat()
        try:
            while not self._stopping:
                left = (
                    None if self.max_tasks is None else self.max_tasks - report.done - report.failed
                )
                if left is not None and left <= 0:
                    break
                claim = self._next(left)
                if claim is None:
                    if not self._should_wait():
                        break
                    continue
                self._idle, self._idle_since = IDLE_FIRST_S, None
                outcome = self.runner.run(claim)
                took = time.monotonic() - self._began
                self._took = took if self._took is None else max(took, self._took / 2)
                with self._held:
                    self._current = None
                    if outcome.status != "terminated":
                        self._finished.append((claim, outcome))
                if outcome.status == "terminated":
                    self.pool.finish(claim, outcome)
                    report.interrupted = True
                    break
                if outcome.status == "completed":
                    report.done += 1
                else:
                    report.failed += 1
            self._settle()
        except BaseException:
            current = self._current
            if current is not None:
                # SIGTERM, Ctrl-C, submitit's exit after a checkpoint: the task is not done.
                with contextlib.suppress(Exception):
                    self.runner.interrupted(current)
                    self.pool.finish(current, Outcome("terminated", current.run))
                self._current = None
            with contextlib.suppress(Exception):
                self._settle()
            raise
        finally:
            self._stop_heartbeat()
            with contextlib.suppress(Exception):
                self.runner.teardown()
            report.seconds = round(time.monotonic() - t0, 3)
        return report

    def batch_size(self, left: int | None = None) -> int:
        """How many tasks to claim at once: one until a task has been timed, then as many as
        fit in BATCH_S at the pace of the slowest recent one, at most MAX_BATCH (and `left`)."""
        took = self._took
        n = 1 if took is None else max(1, min(MAX_BATCH, int(BATCH_S / max(took, 1e-6))))
        return n if left is None else max(1, min(n, left))

    def _next(self, left: int | None) -> Claim | None:
        """The next task: one claimed already, else claimed now, with the ends not yet
        recorded (one transaction for both)."""
        with self._held:
            if not self._queue:
                finished = list(self._finished)
                n = self.batch_size(left)
                claims = self.pool.claim_many(self._name, finished, [new_id() for _ in range(n)])
                del self._finished[: len(finished)]
                if not claims:
                    return None
                self._queue.extend(claims)
                if len(claims) > 1:
                    self._beat_wake.set()  # the heartbeat watches the task in flight now
            claim = self._queue.popleft()
            self._current, self._began = claim, time.monotonic()
        return claim

    def _settle(self) -> None:
        """Record the ends not recorded yet and hand back the claims not started."""
        with self._held:
            taken = self._take_unstarted()
        self._give_back(*taken)

    def _take_unstarted(self) -> tuple[list[tuple[Claim, Outcome]], list[Claim]]:
        """(the ends not recorded yet, the claims not started), taken off the worker; with
        `_held` held."""
        finished, self._finished = self._finished, []
        queued = list(self._queue)
        self._queue.clear()
        return finished, queued

    def _give_back(self, finished: list[tuple[Claim, Outcome]], queued: list[Claim]) -> None:
        """Record `finished` and hand `queued` back to the pool (even when the record fails)."""
        try:
            if finished:
                self.pool.claim_many(self._name, finished, [])
        finally:
            if queued:
                self.pool.unclaim(queued)

    def _should_wait(self) -> bool:
        """Nothing claimable now. Tasks other workers hold may still come back (their worker
        dies and the lease runs out): the last workers wait for them rather than lose them."""
        if not self.linger:
            return False
        hint = self.pool.wait_hint()
        if hint is None:
            return False
        # Soon at first (the other workers' last tasks end any moment), then less often, but
        # never so late that the batch's end waits for this worker more than a tenth of its
        # wait (a fixed back-off to 2 s would add up to 2 s to every batch).
        now = time.monotonic()
        if self._idle_since is None:
            self._idle_since = now
        cap = min(max(IDLE_SHARE * (now - self._idle_since), IDLE_FIRST_S), IDLE_MAX_S)
        pause = min(max(hint, 0.001), self._idle, cap, max(self.pool.lease_s / 4, 0.01))
        self._idle = min(self._idle * 1.5, IDLE_MAX_S)
        time.sleep(pause)
        return True

    # -- leases -----------------------------------------------------------------------------
    def _start_heartbeat(self) -> None:
        self._beat_stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, name="tether-lease", daemon=True)
        self._beat.start()

    def _stop_heartbeat(self) -> None:
        self._beat_stop.set()
        self._beat_wake.set()
        if self._beat is not None:
            self._beat.join(timeout=5)
            self._beat = None

    def _heartbeat(self) -> None:
        every = max(self.pool.lease_s / 6, 0.05)
        renewed = time.monotonic()
        while not self._beat_stop.is_set():
            wait = renewed + every - time.monotonic()
            with self._held:
                if self._queue and self._current is not None:
                    # Claims wait behind the task in flight: look again when it has run long.
                    wait = min(wait, self._began + HAND_BACK_S - time.monotonic())
            if wait > 0:
                self._beat_wake.wait(wait)
                self._beat_wake.clear()
                continue
            if self._beat_stop.is_set():
                break
            self._hand_back_if_long()
            if time.monotonic() - renewed >= every:
                renewed = time.monotonic()
                self._renew()

    def _hand_back_if_long(self) -> None:
        with self._held:
            long = self._current is not None and time.monotonic() - self._began >= HAND_BACK_S
            if not (long and self._queue):
                return
            taken = self._take_unstarted()
        try:
            self._give_back(*taken)
        except Exception as exc:  # the leases run out and another worker takes them over
            print(f"tether: tasks not handed back: {exc}", file=sys.stderr)

    def _renew(self) -> None:
        with self._held:
            current = self._current
            held = [*([current] if current is not None else []), *self._queue]
            held += [claim for claim, _ in self._finished]
        if not held:
            return
        try:
            lost = self.pool.heartbeat(held)
        except Exception as exc:  # a busy or unreachable pool: try again at the next beat
            print(f"tether: task lease not renewed: {exc}", file=sys.stderr)
            return
        for claim in lost:
            if claim is current:
                print(
                    f"tether: task {claim.index} was taken over by another worker (this "
                    "worker's lease ran out); its result here will not count",
                    file=sys.stderr,
                )

    # -- stopping ---------------------------------------------------------------------------
    def release(self) -> None:
        """Stop after the task in flight, which goes back to the pool (not done): once it has
        unwound when its runner says it will (its metrics and state written first, so the next
        attempt continues from them), else now. The tasks claimed but not started go back when
        the loop ends. Safe to call from a signal handler."""
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
