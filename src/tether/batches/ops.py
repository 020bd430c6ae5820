"""Batches of `tether run OP`: the trials of a grid, random or file batch (tether.ops.batch
expands them), each a run with `parent` = the batch run (named `OP+batch`, its config the
batch spec). The batch run's `batch.json` lists every trial with its status and run.

- in this process, one trial after the other (`run_batch`, the default): `batch.json` is kept
  up to date as trials start and end, the parent's metrics count them (`trials`, `completed`,
  `failed`, `skipped`, `terminated`, `not_started`), and Ctrl-C terminates the current trial,
  records the rest as not started and marks the batch terminated. Exits 1 when a trial failed,
  130 when stopped, 0 otherwise. What it has to say goes to a `TrialReport` the command line
  passes in (its rich lines);
- on an executor (`--executor NAME --n-jobs N --slurm-config FILE`, `run_op_batch`): the trials
  go into a task pool as the tasks of a decorated main do (driver.py); each worker runs
  `run_trial` for the trials it claims, so everything `tether run` records for a trial is
  recorded the same way wherever it runs; `--retry-failed PARENT` (`retry_op_batch`) runs the
  failed and missing trials again, in that batch. A trial whose worker was stopped in the middle
  (a preempted or requeued Slurm job, a PBS rerun) is continued, not run anew: the next attempt
  runs its command again in the same run (tether.ops.restart), whose History resumes after the
  last step it recorded.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..capture.output import LogFile
from ..capture.secrets import for_workers, redact_flat, redact_text, run_policy
from ..capture.unredact import recover
from ..errors import TetherError
from ..executors.taskpool import Claim, Outcome
from ..fsio import atomic_write_json
from ..ops.batch import MAX_TRIALS, Batch
from ..ops.exec import plan_trial, run_trial, working_dir
from ..ops.flags import describe
from ..ops.restart import restart_trial
from ..ops.staging import BATCH_FILE, plan_staging
from ..project.parse import load_project
from ..session.exits import Terminated
from ..session.options import RunOptions, SnapshotOptions
from ..session.run import Run
from ..session.start import start_run
from ..store import Store
from ..store.layout import OUTPUT
from ..store.state import end_attempt, hostname, read_state
from .driver import (
    BATCH_SUFFIX,
    TasksFailed,
    check_picklable,
    execute,
    make_executor,
    new_pool,
    reopen_batch,
    reopened,
    to_stderr,
)

NOT_STARTED = "not started"  # batch.json's status of a trial that did not run
INTERRUPTED = "interrupted (preempted or requeued): its trial went back to the pool"


# -- batch.json -------------------------------------------------------------------------------
def write_batch_file(
    folder: Path,
    op_name: str,
    mode: str,
    trials: list[dict[str, Any]],
    *,
    interrupted: bool = False,
    stamped: bool = False,
) -> None:
    """batch.json: every trial of the batch, its status and run (and, `stamped`, when)."""
    data: dict[str, Any] = {
        "op": op_name,
        "mode": mode,
        "interrupted": interrupted,
        "trials": trials,
    }
    if stamped:
        data["t"] = time.time()
    rules = run_policy()  # declared keys: the project's and --secret's (TETHER_SECRETS)
    data["trials"] = [
        {**t, "flags": redact_flat(t["flags"], rules)} if isinstance(t.get("flags"), dict) else t
        for t in trials
    ]
    atomic_write_json(folder / BATCH_FILE, data, durable=False)


def pool_trials(pool: Any) -> list[dict[str, Any]]:
    """The trials of a batch on an executor, from its task pool, as batch.json lists them."""
    names = {"pending": NOT_STARTED, "running": NOT_STARTED}
    trials = []
    for row in pool.rows():
        entry: dict[str, Any] = {
            "index": row.index + 1,
            "flags": row.item,
            "status": names.get(row.status, row.status),
        }
        if row.run:
            entry["run"] = row.run
        if isinstance(row.result, dict) and row.result.get("status") == "skipped":
            entry["status"], entry["twin"] = "skipped", row.result.get("twin")
        if row.error:
            entry["error"] = row.error.strip().splitlines()[-1]
        trials.append(entry)
    return trials


def _write_pool_file(folder: Path, pool: Any, op_name: str, mode: str) -> None:
    write_batch_file(folder, op_name, mode, pool_trials(pool), stamped=True)


@contextlib.contextmanager
def _op_parent(
    batch: Batch,
    store: Any,
    op_name: str,
    *,
    root: Path,
    label: str | None,
    tags: Sequence[str],
    command: Sequence[str],
) -> Iterator[Run]:
    """The batch run of an op's batch (in the project folder): named `OP+batch`, no snapshot of
    its own (each trial has its own), its output not captured (the trials' is)."""
    opts = RunOptions(
        name=op_name + BATCH_SUFFIX,
        snapshot=SnapshotOptions(enabled=False),
        label=label,
        tags=list(tags),
    )
    with (
        working_dir(root),
        start_run(
            batch.spec,
            runs_dir=str(store.root),
            options=opts,
            capture_output=False,
            command=list(command),
        ) as parent,
    ):
        yield parent


# -- in this process --------------------------------------------------------------------------
@dataclass
class TrialRow:
    index: int
    flags: dict[str, Any]
    status: str = NOT_STARTED
    run: str | None = None
    exit_code: int | None = None
    seconds: float | None = None
    error: str | None = None
    twin: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


class TrialReport(Protocol):
    """What `run_batch` tells the user as it goes (the command line's renderer)."""

    def began(self, parent_id: str, batch: Batch, op_name: str) -> None: ...

    def trial(self, row: TrialRow, total: int, desc: str) -> None: ...

    def result(self, row: TrialRow, total: int) -> None: ...

    def done(self, counts: dict[str, int]) -> None: ...

    def stopped(self, counts: dict[str, int]) -> None: ...


def run_batch(
    batch: Batch,
    make_plan: Callable[[dict[str, Any]], Any],
    store: Any,
    *,
    root: Path,
    op_name: str,
    command: Sequence[str],
    report: TrialReport,
    label: str | None = None,
    tags: Sequence[str] = (),
    needed: bool = False,
) -> int:
    """Run the trials one after the other under a parent run; the exit code of the batch.

    The trials are drawn one at a time (`Batch.all_trials`): a streamed batch of millions
    starts its first trial at once, and batch.json lists the trials drawn so far."""
    streamed = batch.streamed
    rows = [] if streamed else [TrialRow(i, t) for i, t in enumerate(batch.trials, start=1)]
    total = batch.total

    def each_row() -> Iterator[TrialRow]:
        if not streamed:
            yield from rows
            return
        for index, flags in enumerate(batch.all_trials(), start=1):
            rows.append(TrialRow(index, flags))
            yield rows[-1]

    interrupted = False
    try:
        with _op_parent(
            batch, store, op_name, root=root, label=label, tags=tags, command=command
        ) as parent:
            log = LogFile(parent.dir / OUTPUT)

            def save() -> None:
                trials = [r.to_dict() for r in rows]
                write_batch_file(parent.dir, op_name, batch.mode, trials, interrupted=interrupted)

            def note(line: str) -> None:
                log.write("tether", redact_text(line) + "\n")  # the trials' secrets as tokens

            report.began(parent.id, batch, op_name)
            save()
            current: TrialRow | None = None
            try:
                for row in each_row():
                    current = row
                    row.status = "running"
                    save()
                    desc = describe(row.flags) or "(defaults)"
                    report.trial(row, total, desc)

                    def started(run_id: str, row: TrialRow = row) -> None:
                        row.run = run_id
                        save()

                    t0 = time.monotonic()
                    try:
                        result = run_trial(
                            make_plan(row.flags),
                            store,
                            label=label,
                            tags=tags,
                            needed=needed,
                            parent=parent.id,
                            on_start=started,
                        )
                        row.status, row.exit_code = result.status, result.exit_code
                        row.run = result.run_id or row.run
                        row.twin = result.twin
                    except TetherError as exc:
                        row.status, row.error = "failed", str(exc)
                    row.seconds = round(time.monotonic() - t0, 3)
                    report.result(row, total)
                    note(f"trial {row.index}/{total} {desc}: {status_text(row)}")
                    save()
                current = None
            except (KeyboardInterrupt, Terminated):
                interrupted = True
                if current is not None:
                    current.status = "terminated"
                left = [r for r in rows if r.status in (NOT_STARTED, "running")]
                for r in left:
                    r.status = NOT_STARTED
                note(f"stopped: {len(left) + total - len(rows)} trial(s) not started")
                raise
            finally:
                counts = trial_counts(rows, total)
                save()
                parent.log_metrics({k: v for k, v in counts.items()})
                log.close()
                if not interrupted:
                    report.done(counts)
            if counts["failed"]:
                raise SystemExit(1)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except (KeyboardInterrupt, Terminated):
        report.stopped(trial_counts(rows, total))
        return 130
    return 0


def trial_counts(rows: list[TrialRow], total: int | None = None) -> dict[str, int]:
    """The batch's counts; `total` counts the trials not drawn yet as not started."""
    total = len(rows) if total is None else max(total, len(rows))

    def n(status: str) -> int:
        return sum(1 for r in rows if r.status == status)

    return {
        "trials": total,
        "completed": n("completed"),
        "failed": n("failed"),
        "skipped": n("skipped"),
        "terminated": n("terminated"),
        "not_started": n(NOT_STARTED) + total - len(rows),
    }


def status_text(row: TrialRow) -> str:
    text = row.status
    if row.run:
        text += f" (run {row.run[:13]})"
    if row.status == "failed" and row.exit_code:
        text += f", exit {row.exit_code}"
    if row.twin:
        text += f", same as run {row.twin[:13]}"
    if row.error:
        text += f": {row.error}"
    return text


# -- on an executor ---------------------------------------------------------------------------
class OpTrials:
    """The TaskRunner of an operation's batch: each task is one trial (its flags)."""

    def __init__(
        self,
        *,
        project_path: str,
        op_name: str,
        staging: Any,
        store_root: str,
        parent: str,
        label: str | None,
        tags: Sequence[str],
        needed: bool,
        quiet: bool,
    ) -> None:
        self.project_path = project_path
        self.op_name = op_name
        self.staging = staging
        self.store_root = store_root
        self.parent = parent
        self.label = label
        self.tags = list(tags)
        self.needed = needed
        self.quiet = quiet
        self.name = op_name

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def setup(self) -> None:
        self._project = load_project(path=Path(self.project_path))
        self._op = self._project.ops[self.op_name]
        self._store = Store(self.store_root)
        self._current: str | None = None
        self._interrupted = False

    def teardown(self) -> None:
        pass

    def run(self, claim: Claim) -> Outcome:
        self._interrupted = False

        def started(run_id: str) -> None:
            self._current = run_id

        saved = sys.stdout, sys.stderr
        sink = None
        if self.quiet:  # the trial's output goes to its output.log, not over the progress bar
            sink = open(os.devnull, "w")  # noqa: SIM115
            sys.stdout = sys.stderr = sink
        try:
            if claim.prepared and claim.run:  # left by an interrupted attempt: continued
                record = self._store.load(claim.run)
                result = restart_trial(
                    self._project, self._op, self._store, record, on_start=started
                )
            else:
                item = claim.item
                item = recover([item], self.parent[:13]).reveal(item)  # TETHER_SECRET_*
                plan = plan_trial(self._project, self._op, item, self._store, self.staging)
                result = run_trial(
                    plan,
                    self._store,
                    label=self.label,
                    tags=self.tags,
                    needed=self.needed,
                    parent=self.parent,
                    on_start=started,
                )
        except (KeyboardInterrupt, Terminated):
            return Outcome("terminated", self._current)
        except TetherError as exc:
            return Outcome("failed", self._current, error=str(exc))
        finally:
            sys.stdout, sys.stderr = saved
            if sink is not None:
                sink.close()
        run_id, self._current = result.run_id, None
        if self._interrupted:
            self._mark_waiting(run_id)
            return Outcome("terminated", run_id)
        if result.status in ("completed", "skipped"):
            return Outcome(
                "completed", run_id, result={"status": result.status, "twin": result.twin}
            )
        return Outcome("failed", run_id, error=f"exit {result.exit_code}")

    def interrupted(self, claim: Claim) -> bool:
        """The worker stops during this trial (from a signal handler): the trial's command is
        stopped as the exit unwinds `run`, which then hands the trial back (True)."""
        self._interrupted = True
        return True

    def _mark_waiting(self, run_id: str | None) -> None:
        """The interrupted trial's run: this attempt `terminated`, the run `queued` until the
        next attempt continues it (unless that one has begun already)."""
        if not run_id:
            return
        with contextlib.suppress(Exception):
            record = self._store.load(run_id)
            state = read_state(record.dir)
            last = state.attempts[-1] if state.attempts else None
            if last is None or last.pid != os.getpid() or last.host != hostname():
                return  # another attempt has the run now
            last.stop = None  # reopened, to be closed as interrupted
            end_attempt(state, "terminated", 143, INTERRUPTED, stop=state.stopped)
            state.status, state.exit_code, state.stopped = "queued", 143, None
            state.error = "waiting to continue: " + INTERRUPTED
            self._store.set_state(record, state)


def run_op_batch(
    project: Any,
    op: Any,
    batch: Batch,
    store: Any,
    *,
    staging: Any,
    label: str | None,
    tags: Sequence[str],
    needed: bool,
    command: list[str],
    executor: str | None,
    n_jobs: int | None,
    slurm_config: str | None,
) -> int:
    """Run an op's batch on an executor; the exit code (1 when a trial failed)."""
    execu = make_executor(executor or ("local" if not slurm_config else None), n_jobs, slurm_config)
    command = [*command, f"--executor={execu.name}"]
    if n_jobs is not None:
        command.append(f"--n-jobs={n_jobs}")
    if slurm_config:
        command.append(f"--slurm-config={slurm_config}")
    runner_args = {
        "project_path": str(project.path),
        "op_name": op.name,
        "staging": staging,
        "store_root": str(store.root),
        "label": label,
        "tags": list(tags),
        "needed": needed,
        "quiet": sys.stderr.isatty(),
    }
    if batch.streamed:  # a task pool holds every trial up front
        raise TetherError(
            f"a batch of {batch.total} trials runs in this process, one trial at a time "
            f"(an executor's task pool takes at most {MAX_TRIALS})",
            "drop --executor/--n-jobs/--slurm-config, or lower --max-runs",
        )
    check_picklable(execu, OpTrials, staging)
    try:
        with _op_parent(
            batch, store, op.name, root=project.root, label=label, tags=tags, command=command
        ) as parent:
            meta = {"kind": "op", "op": op.name, "mode": batch.mode}
            # The pool holds the trials' secrets redacted; the workers get them back from
            # their environment.
            trials, secret_env = for_workers(batch.trials, run_policy(project.secrets))
            os.environ.update(secret_env)
            pool = new_pool(parent, trials, meta, execu)
            runner = OpTrials(parent=parent.id, **runner_args)
            try:
                execute(execu, pool, runner, parent, progress=True, prepare=False)
            finally:
                _write_pool_file(parent.dir, pool, op.name, batch.mode)
    except TasksFailed:
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _same_op(op_name: str) -> Callable[[Any, dict[str, Any]], None]:
    def check(record: Any, meta: dict[str, Any]) -> None:
        if meta.get("op") != op_name:
            raise TetherError(
                f"run {record.id[:13]} is a batch of {meta.get('op') or record.name!r}, "
                f"not of {op_name!r}"
            )

    return check


def retry_op_batch(
    project: Any,
    op: Any,
    store: Any,
    parent_spec: str,
    *,
    executor: str | None,
    n_jobs: int | None,
    slurm_config: str | None,
    label: str | None = None,
    tags: Sequence[str] = (),
) -> int:
    """`tether run OP --retry-failed PARENT`: the failed and missing trials, in that batch."""
    batch = reopen_batch(
        store,
        parent_spec,
        not_a_batch=(
            "run {id} ({name}) is not a batch run by an executor",
            "give the id of a batch run (named OP+batch) made with --executor or --n-jobs",
        ),
        check_meta=_same_op(op.name),
        executor=executor,
        n_jobs=n_jobs,
        slurm_config=slurm_config,
    )
    record = batch.record
    if not batch.todo:
        to_stderr(f"tether: batch {record.id[:13]}: nothing to retry")
        return 0
    staging = plan_staging(project, op, store)
    runner = OpTrials(
        project_path=str(project.path),
        op_name=op.name,
        staging=staging,
        store_root=str(store.root),
        parent=record.id,
        label=label,
        tags=list(tags),
        needed=False,
        quiet=sys.stderr.isatty(),
    )
    mode = str(batch.meta.get("mode", ""))
    with working_dir(project.root):
        try:
            with reopened(store, record) as parent:
                try:
                    execute(
                        batch.execu,
                        batch.pool,
                        runner,
                        parent,
                        progress=True,
                        retry=batch.todo,
                        prepare=False,
                    )
                finally:
                    _write_pool_file(record.dir, batch.pool, op.name, mode)
        except TasksFailed:
            return 1
    return 0
