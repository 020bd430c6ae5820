"""`tether run OP ... --executor NAME --n-jobs N --slurm-config FILE`: an operation's batch on an
executor, and `tether run OP --retry-failed PARENT`.

The trials of the batch go into a task pool in the batch run's folder, as the tasks of
`@tether.parallel` do; each worker runs `run_trial` for the trials it claims (the op's command
in a run folder of its own, with `parent` = the batch), so everything `tether run` records for a
trial is recorded the same way wherever it runs. The batch run's `batch.json` lists the trials
with their status and run when the batch ends.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import TetherError
from .taskpool import Claim, Outcome

BATCH_FILE = "batch.json"


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
        from ..project import load_project
        from ..store import Store

        self._project = load_project(path=Path(self.project_path))
        self._op = self._project.ops[self.op_name]
        self._store = Store(self.store_root)
        self._current: str | None = None
        self._interrupted = False

    def teardown(self) -> None:
        pass

    def run(self, claim: Claim) -> Outcome:
        from .. import api
        from ..ops.exec import plan_trial, run_trial

        plan = plan_trial(self._project, self._op, claim.item, self._store, self.staging)

        def started(run_id: str) -> None:
            self._current = run_id

        saved = sys.stdout, sys.stderr
        sink = None
        if self.quiet:  # the trial's output goes to its output.log, not over the progress bar
            sink = open(os.devnull, "w")  # noqa: SIM115
            sys.stdout = sys.stderr = sink
        try:
            result = run_trial(
                plan,
                self._store,
                label=self.label,
                tags=self.tags,
                needed=self.needed,
                parent=self.parent,
                on_start=started,
            )
        except (KeyboardInterrupt, api.Terminated):
            return Outcome("terminated", self._current)
        except TetherError as exc:
            return Outcome("failed", self._current, error=str(exc))
        finally:
            sys.stdout, sys.stderr = saved
            if sink is not None:
                sink.close()
        run_id, self._current = result.run_id, None
        if self._interrupted:
            self._mark_terminated(run_id)
            return Outcome("terminated", run_id)
        if result.status in ("completed", "skipped"):
            return Outcome(
                "completed", run_id, result={"status": result.status, "twin": result.twin}
            )
        return Outcome("failed", run_id, error=f"exit {result.exit_code}")

    def interrupted(self, claim: Claim) -> None:
        self._interrupted = True

    def _mark_terminated(self, run_id: str | None) -> None:
        if not run_id:
            return
        from ..store.state import now_iso, read_state

        with contextlib.suppress(Exception):
            record = self._store.load(run_id)
            state = read_state(record.dir)
            state.status, state.exit_code, state.stopped = "terminated", 143, now_iso()
            state.error = "interrupted: the trial went back to the pool"
            self._store.set_state(record, state)


def run_op_batch(
    project: Any,
    op: Any,
    batch: Any,
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
    from ..api import start_run
    from ..ops.exec import working_dir
    from ..options import RunOptions, SnapshotOptions
    from .parallel import TasksFailed, _execute, check_picklable, make_executor
    from .taskpool import TaskPool

    execu = make_executor(executor or ("local" if not slurm_config else None), n_jobs, slurm_config)
    command = [*command, f"--executor={execu.name}"]
    if n_jobs is not None:
        command.append(f"--n-jobs={n_jobs}")
    if slurm_config:
        command.append(f"--slurm-config={slurm_config}")
    opts = RunOptions(
        name=op.name + "+batch",
        snapshot=SnapshotOptions(enabled=False),
        label=label,
        tags=list(tags),
    )
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
    check_picklable(execu, OpTrials, staging)
    code = 0
    with working_dir(project.root):
        try:
            with start_run(
                batch.spec,
                runs_dir=str(store.root),
                options=opts,
                capture_output=False,
                command=list(command),
            ) as parent:
                meta = {"kind": "op", "op": op.name, "mode": batch.mode, **execu.record()}
                pool = TaskPool.create(parent.dir, batch.trials, meta=meta)
                runner = OpTrials(parent=parent.id, **runner_args)
                try:
                    _execute(execu, pool, runner, parent, progress=True, prepare=False)
                finally:
                    write_batch_file(parent.dir, pool, op.name, batch.mode)
        except TasksFailed:
            code = 1
        except KeyboardInterrupt:
            return 130
    return code


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
    from ..ops.exec import working_dir
    from ..ops.staging import plan_staging
    from .parallel import TasksFailed, _execute, make_executor, reopened
    from .taskpool import POOL_FILE, TaskPool

    record = store.resolve_one(parent_spec)
    if not (record.dir / POOL_FILE).is_file():
        raise TetherError(
            f"run {record.id[:13]} ({record.name}) is not a batch run by an executor",
            "give the id of a batch run (named OP+batch) made with --executor or --n-jobs",
        )
    pool = TaskPool.open(record.dir)
    meta = pool.meta()
    if meta.get("op") != op.name:
        raise TetherError(
            f"run {record.id[:13]} is a batch of {meta.get('op') or record.name!r}, "
            f"not of {op.name!r}"
        )
    execu = make_executor(
        executor or meta.get("executor"),
        n_jobs if n_jobs is not None else meta.get("n_jobs"),
        slurm_config,
    )
    todo = pool.reset_for_retry()
    if not todo:
        print(f"tether: batch {record.id[:13]}: nothing to retry", file=sys.stderr)
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
    with working_dir(project.root):
        try:
            with reopened(store, record) as parent:
                try:
                    _execute(execu, pool, runner, parent, progress=True, retry=todo, prepare=False)
                finally:
                    write_batch_file(record.dir, pool, op.name, str(meta.get("mode", "")))
        except TasksFailed:
            return 1
    return 0


def write_batch_file(folder: Path, pool: Any, op_name: str, mode: str) -> None:
    """batch.json, as `tether run` batches write it: every trial, its status and run."""
    from ..fsio import atomic_write_json

    names = {"pending": "not started", "running": "not started"}
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
    atomic_write_json(
        folder / BATCH_FILE,
        {"op": op_name, "mode": mode, "interrupted": False, "trials": trials, "t": time.time()},
        durable=False,
    )
