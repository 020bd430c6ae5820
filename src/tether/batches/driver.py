"""The one loop of every batch on an executor: a parent run, its task pool, the executor's
workers, and the outcome recorded in the parent.

A batch is a parent run (named `<name>+batch`) and one child run per task. The tasks wait in a
task pool in the parent's folder (`tasks.db`, or `tasks/` on a shared filesystem: see
tether.executors.taskpool); the workers an executor starts claim them one at a time and run
each with the batch's TaskRunner (a child run of a decorated main, children.py; a trial of an
operation, ops.py). A task that fails is recorded with its error and the others go on; the
parent ends failed (TasksFailed) when a task failed or was left undone, and `--retry-failed
PARENT` runs those again, in the same batch (`reopen_batch`, `reopened`).

The entry points (decorated.py, ops.py) make the parent run and the runner; what the loop has
to say goes to a `say` callback (plain lines, stderr by default), the live counts to the
progress bar (progress.py).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..clock import now_iso
from ..errors import TetherError
from ..executors import get_executor
from ..executors.base import check_n_jobs, drive
from ..executors.taskpool import TaskPool, has_pool
from ..executors.worker import Worker
from ..ids import new_id
from ..session.exits import Terminated
from ..session.run import Run
from ..store import open_store
from ..store.state import BUSY, read_state, start_attempt
from .progress import ProgressDisplay

BATCH_SUFFIX = "+batch"  # the parent run of a batch is named `<name>+batch`

Say = Callable[[str], None]


def to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


@dataclass
class BatchResult:
    """What a batch did: its parent run, the status of every task and each task's run."""

    parent: str
    counts: dict[str, int]
    runs: list[str | None] = field(default_factory=list)  # per task, its (latest) run
    results: list[Any] = field(default_factory=list)  # per task, what it returned (JSON) or None
    errors: dict[int, str] = field(default_factory=dict)  # task index -> traceback
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.counts.get("completed", 0) == self.counts.get("total", 0)

    @property
    def failed(self) -> int:
        return self.counts.get("failed", 0)


class TasksFailed(TetherError):
    """Some tasks of a batch failed or were not run (the parent run ends failed by it)."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None, result: BatchResult) -> None:
        super().__init__(message, hint)
        self.result = result


# -- executors --------------------------------------------------------------------------------
def make_executor(name: str | None, n_jobs: Any, slurm_config: str | None) -> Any:
    """The executor the flags ask for (checked: TetherError before any run is made)."""
    n = check_n_jobs(n_jobs) if n_jobs is not None else None
    if name is None:
        name = "slurm" if slurm_config else ("local" if n is not None and n > 1 else "serial")
    cls = get_executor(name)
    options: dict[str, Any] = {}
    if slurm_config:
        reader = getattr(cls, "read_options", None)
        if reader is None:
            raise TetherError(
                f"--slurm-config applies to the slurm (and pbs) executors, not {name!r}",
                "drop --slurm-config, or use --executor slurm",
            )
        options = reader(slurm_config)
    executor = cls(n_jobs=n, options=options, source=slurm_config)
    executor.check()
    return executor


def check_picklable(executor: Any, func: Callable[..., Any], payload: Any) -> None:
    """Fail before any run is made when the task function cannot reach other processes."""
    if not getattr(executor, "remote", True):
        return
    try:
        import cloudpickle
    except ImportError:  # pragma: no cover - joblib vendors it
        from joblib.externals import cloudpickle
    name = getattr(func, "__qualname__", repr(func))
    try:
        cloudpickle.dumps(func)
    except Exception as exc:
        raise TetherError(
            f"the task function {name} cannot be sent to {executor.name} workers: it does not "
            f"pickle ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
            "define it at the top level of a module and keep open files, locks, connections "
            "and generators out of what it closes over (or use --executor serial)",
        )
    try:
        cloudpickle.dumps(payload)
    except Exception as exc:
        raise TetherError(
            f"the config of this batch cannot be sent to {executor.name} workers "
            f"({type(exc).__name__}: {exc})",
            "keep it to plain values (or use --executor serial)",
        )


# -- the loop ---------------------------------------------------------------------------------
def new_pool(parent: Any, items: Sequence[Any], meta: dict[str, Any], execu: Any) -> TaskPool:
    """The task pool of a new batch, in its parent's folder; its meta records the executor."""
    return TaskPool.create(parent.dir, list(items), meta={**meta, **execu.record()})


def execute(
    execu: Any,
    pool: Any,
    runner: Any,
    parent: Any,
    *,
    progress: bool,
    retry: int | None = None,
    prepare: bool = True,
    say: Say = to_stderr,
) -> BatchResult:
    """Start the workers, show progress, record the outcome in the parent run (which ends
    failed, by TasksFailed, when a task failed or was left undone)."""
    counts = pool.counts()
    if getattr(execu, "lease_s", None):
        pool.lease_s = float(execu.lease_s)
    if execu.scheduler and prepare:
        prepare_queued(runner, pool)
    worker = Worker(pool, runner)
    label = f"{runner.name} ({counts['total']} task{'s' if counts['total'] != 1 else ''})"
    say(
        f"tether: batch {parent.id[:13]}: "
        + (f"retrying {retry} of {counts['total']} tasks" if retry else f"{counts['total']} tasks")
        + f" of {runner.name} on {execu.name}"
    )
    display = ProgressDisplay(pool, label, scheduler=execu.scheduler, enabled=progress)
    errors: list[str] = []
    try:
        with display:
            errors = drive(execu, worker, pool, parent.dir, on_tick=display.tick)
    except BaseException as exc:
        stop_all(pool, runner, exc)
        raise
    finally:
        final = pool.counts()
        parent.log_metrics(
            {
                "tasks": final["total"],
                "completed": final["completed"],
                "failed": final["failed"],
                "not_done": final["pending"] + final["running"],
            }
        )
    result = result_of(parent.id, pool)
    for line in errors:
        say(f"tether: {line}")
    say(summary_line(result))
    for index in sorted(result.errors)[:5]:
        lines = [ln for ln in result.errors[index].strip().splitlines() if ln.strip()]
        run = result.runs[index] or ""
        say(f"tether:   task {index} failed (run {run[:13]}): {lines[-1].strip() if lines else ''}")
    if len(result.errors) > 5:
        say(f"tether:   ... and {len(result.errors) - 5} more failed")
    if not result.ok:
        say(f"tether: rerun the failed and missing tasks with --retry-failed {parent.id[:13]}")
        raise TasksFailed(
            failure_text(result), f"rerun them with --retry-failed {parent.id[:13]}", result
        )
    return result


def prepare_queued(runner: Any, pool: Any) -> None:
    """Under a scheduler the children exist from the start, `queued`, so `tether runs` shows
    the whole batch while the jobs wait."""
    runner.setup()
    try:
        made = {}
        for row in pool.rows():
            if row.status != "pending":
                continue
            run_id = new_id()
            runner.prepare(run_id, row.item)
            made[row.index] = run_id
        pool.set_prepared(made)
    finally:
        runner.teardown()  # writes the index rows


def stop_all(pool: Any, runner: Any, exc: BaseException | None = None) -> None:
    """The batch stops (Ctrl-C, or the scheduler refused its jobs): tasks in flight go back to
    the pool and their runs end `terminated`; runs waiting for their task (made ahead `queued`,
    or handed back to be continued) end too, `failed` with the scheduler's word when it refused
    the jobs, else `terminated`. Their tasks stay undone, for `--retry-failed`."""
    try:
        in_flight = pool.release_all()
        waiting = [r.run for r in pool.rows() if r.status == "pending" and r.run]
    except Exception:
        return
    refused = isinstance(exc, TetherError)
    if refused:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    else:
        reason = "batch stopped" + (f" ({type(exc).__name__})" if exc is not None else "")
    store = open_store(runner.store_root)
    for run_id in dict.fromkeys([*in_flight, *waiting]):
        try:
            record = store.load(run_id)
            state = read_state(record.dir)
            if state.status not in BUSY:
                continue
            began = bool(state.attempts) or state.status == "running"
            if refused and not began:
                state.status, state.exit_code, state.error = "failed", None, reason
            else:
                state.status, state.exit_code = "terminated", 130
                state.error = reason if began else f"{reason} before its task started"
            state.stopped = now_iso()
            record.state = state
            store.set_state(record, state)
        except Exception:
            continue


def result_of(parent_id: str, pool: Any) -> BatchResult:
    rows = pool.rows()
    return BatchResult(
        parent=parent_id,
        counts=pool.counts(),
        runs=[r.run for r in rows],
        results=[r.result for r in rows],
        errors={r.index: r.error for r in rows if r.status == "failed" and r.error},
    )


def summary_line(result: BatchResult) -> str:
    c = result.counts
    parts = [f"{c['completed']} completed"]
    if c["failed"]:
        parts.append(f"{c['failed']} failed")
    left = c["pending"] + c["running"]
    if left:
        parts.append(f"{left} not done")
    return f"tether: batch {result.parent[:13]}: {c['total']} tasks: " + ", ".join(parts)


def failure_text(result: BatchResult) -> str:
    c = result.counts
    bits = []
    if c["failed"]:
        first = min(result.errors) if result.errors else None
        last_line = ""
        if first is not None:
            lines = [ln for ln in result.errors[first].strip().splitlines() if ln.strip()]
            last_line = f" (task {first}: {lines[-1].strip()})" if lines else ""
        bits.append(f"{c['failed']} of {c['total']} tasks failed{last_line}")
    left = c["pending"] + c["running"]
    if left:
        bits.append(f"{left} of {c['total']} tasks were not done")
    return "; ".join(bits) or "the batch did not complete"


# -- --retry-failed ---------------------------------------------------------------------------
@dataclass
class Reopened:
    """A batch picked up again by `--retry-failed`: its parent, pool, meta and executor, and
    how many tasks were handed back to the pool."""

    record: Any
    pool: TaskPool
    meta: dict[str, Any]
    execu: Any
    todo: int


def reopen_batch(
    store: Any,
    parent_spec: str,
    *,
    not_a_batch: tuple[str, str],
    check_meta: Callable[[Any, dict[str, Any]], None],
    executor: str | None,
    n_jobs: int | None,
    slurm_config: str | None,
) -> Reopened:
    """The batch `parent_spec` names, its failed and missing tasks pending again. The executor
    and the number of workers are the batch's unless given. `not_a_batch` is the message (with
    `{id}` and `{name}`) and hint for a run without a task pool; `check_meta` refuses a batch of
    another kind."""
    record = store.resolve_one(parent_spec)
    if not has_pool(record.dir):
        message, hint = not_a_batch
        raise TetherError(message.format(id=record.id[:13], name=record.name), hint)
    pool = TaskPool.open(record.dir)
    meta = pool.meta()
    check_meta(record, meta)
    execu = make_executor(
        executor or meta.get("executor"),
        n_jobs if n_jobs is not None else meta.get("n_jobs"),
        slurm_config,
    )
    todo = pool.reset_for_retry()
    return Reopened(record, pool, meta, execu, todo)


class reopened:
    """A finished batch run, running again for `--retry-failed`: state running, then the
    outcome, as `start_run` records it for a new run."""

    def __init__(self, store: Any, record: Any) -> None:
        self.store = store
        self.record = record

    def __enter__(self) -> Any:
        self.store.set_state(self.record, start_attempt(self.record.state))
        self.run = Run(self.store, self.record, None)
        return self.run

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        self.run._close()
        state = self.record.state
        if exc is None:
            state.status, state.exit_code, state.error = "completed", 0, None
        elif isinstance(exc, (KeyboardInterrupt, Terminated)):
            state.status, state.exit_code, state.error = "terminated", 130, type(exc).__name__
        else:
            state.status, state.exit_code = "failed", 1
            state.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        state.stopped = now_iso()
        self.store.set_state(self.record, state)
