"""Batches of a decorated main: a task list, one child run per task.

    @tether.experiment(config="conf/train.yaml")
    def main(cfg, run): ...

    python train.py --task-to seed --n-jobs 4              # tasks: the config's `tasks` list
    python train.py --task-to data.file --tasks files.txt  # one task per line (or a YAML list)
    python train.py --task-to seed --tasks-key sweep.seeds --slurm-config slurm.yaml
    python train.py --retry-failed 0193f1c4                # only the failed or missing tasks

A batch is a parent run (named `<name>+batch`, its config the full config, one source snapshot)
and one child run per task (named `<name>`, `parent` = the batch): the child's config is the
parent's without the task list, with the task item at `--task-to` and its own `save_dir`. The
tasks wait in a task pool in the parent's folder (`tasks.db`); workers started by the executor
claim them one at a time (driver.py). A task that raises is recorded failed with its traceback
and the others go on; the batch ends failed when any task failed (exit 1 from the command line)
and `--retry-failed PARENT` runs the failed and missing tasks again, in the same batch.

`@tether.parallel(task_to=..., tasks_key=..., executor=..., n_jobs=...)` (tether.api) sets
defaults for these flags and makes every call a batch.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..capture.secrets import redact_config, run_policy
from ..capture.unredact import recover, terminal_prompt
from ..errors import TetherError
from ..session.naming import function_run_name
from ..session.options import RunOptions, SnapshotOptions
from ..session.start import start_run
from ..store import open_store
from .children import ChildRuns
from .driver import (
    BATCH_SUFFIX,
    BatchResult,
    TasksFailed,
    check_picklable,
    execute,
    make_executor,
    new_pool,
    reopen_batch,
    reopened,
    result_of,
    to_stderr,
)
from .flags import ParallelOptions, parallel_options
from .tasks import (
    base_config,
    check_task_to,
    config_yaml,
    drop_key,
    require_task_to,
    task_items,
)


def run_decorated(
    wrapper: Any,
    func: Callable[..., Any],
    opts: Any,
    cfg: Any,
    cli_args: Any,
    *,
    runs_dir: str | os.PathLike[str] | None = None,
    early: Any = None,
    from_cli: bool = False,
) -> BatchResult:
    """The batch a call of a decorated main asks for (the hook `@tether.experiment` calls when
    `batch_requested` says so)."""
    defaults = parallel_options(wrapper) or ParallelOptions()
    extra = dict(getattr(cli_args, "extra", None) or {})
    popts = defaults.merged(extra)
    opts = dataclasses.replace(opts, name=opts.name or function_run_name(func))
    declared = list(getattr(cli_args, "secrets", None) or ())  # --secret KEY
    if declared:
        opts.secrets = [*opts.secrets, *(k for k in declared if k not in opts.secrets)]
    if popts.retry_failed:
        result = retry_failed(
            func,
            popts.retry_failed,
            executor=popts.executor,
            n_jobs=popts.n_jobs,
            slurm_config=popts.slurm_config,
            runs_dir=runs_dir,
        )
    elif getattr(cli_args, "plan", None) is not None:
        # -m: one task per point of the sweeps, its item the sections that point changes.
        if popts.task_to or popts.tasks or popts.tasks_key:
            raise TetherError(
                "-m (multirun) makes its own tasks: --task-to, --tasks and --tasks-key do not "
                "combine with it"
            )
        plan = cli_args.plan
        result = run_tasks(
            func,
            cfg,
            task_to=plan.task_to,
            tasks=plan.items,
            executor=popts.executor,
            n_jobs=popts.n_jobs,
            slurm_config=popts.slurm_config,
            options=opts,
            runs_dir=runs_dir,
            early=early,
        )
    else:
        result = run_tasks(
            func,
            cfg,
            task_to=popts.task_to,
            tasks_file=popts.tasks,
            tasks_key=popts.tasks_key,
            executor=popts.executor,
            n_jobs=popts.n_jobs,
            slurm_config=popts.slurm_config,
            options=opts,
            runs_dir=runs_dir,
            early=early,
        )
    if from_cli and not result.ok:
        raise SystemExit(1)
    return result


def run_tasks(
    func: Callable[..., Any],
    cfg: Any = None,
    *,
    task_to: str | None = None,
    tasks: Sequence[Any] | None = None,
    tasks_file: str | None = None,
    tasks_key: str | None = None,
    executor: str | None = None,
    n_jobs: int | None = None,
    slurm_config: str | None = None,
    options: Any = None,
    runs_dir: str | os.PathLike[str] | None = None,
    early: Any = None,
    name: str | None = None,
    progress: bool = True,
) -> BatchResult:
    """Run `func(cfg[, run])` once per task, each in a child run of a new batch run.

    `tasks` (a list) or else `tasks_file`, `tasks_key` or the config's `tasks` list give the
    items; each goes at the config key `task_to`. Raises TetherError for bad input before any
    run is made; returns a BatchResult (failed tasks do not raise).
    """
    execu = make_executor(executor, n_jobs, slurm_config)
    base = base_config(cfg)
    items, list_key = task_items(base, tasks=tasks, tasks_file=tasks_file, tasks_key=tasks_key)
    task_to = require_task_to(task_to)
    check_task_to(base, task_to, items[0])
    child_base = drop_key(base, list_key)
    check_picklable(execu, func, child_base)
    opts = options or RunOptions(snapshot=SnapshotOptions(True))
    child_name = name or opts.name or function_run_name(func)
    parent_opts = dataclasses.replace(opts, name=child_name + BATCH_SUFFIX)
    meta = {
        "name": child_name,
        "task_to": task_to,
        "tasks_key": list_key,
        "tasks_file": tasks_file,
        # Recorded with its secrets redacted; `--retry-failed` asks for them again.
        "base_config": redact_config(config_yaml(child_base), run_policy(opts.secrets)),
        "secrets": list(opts.secrets),
    }
    t0 = time.monotonic()
    try:
        with start_run(
            base, runs_dir=runs_dir, options=parent_opts, early_snapshot=early
        ) as parent:
            pool = new_pool(parent, items, meta, execu)
            runner = ChildRuns(
                func,
                base_cfg=child_base,
                task_to=task_to,
                store_root=str(parent.store.root),
                parent_dir=str(parent.dir),
                name=child_name,
                secrets=tuple(opts.secrets),
            )
            result = execute(execu, pool, runner, parent, progress=progress)
    except TasksFailed as failed:
        result = failed.result
    result.seconds = round(time.monotonic() - t0, 3)
    return result


def _not_an_op_batch(record: Any, meta: dict[str, Any]) -> None:
    if meta.get("kind") == "op":
        raise TetherError(
            f"run {record.id[:13]} is a batch of `tether run {meta.get('op', '')}`",
            f"retry it with: tether run {meta.get('op', 'OP')} --retry-failed {record.id[:13]}",
        )


def retry_failed(
    func: Callable[..., Any],
    parent_spec: str,
    *,
    executor: str | None = None,
    n_jobs: int | None = None,
    slurm_config: str | None = None,
    runs_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> BatchResult:
    """Run the failed and missing tasks of batch `parent_spec` again, in that batch."""
    store = open_store(runs_dir)
    batch = reopen_batch(
        store,
        parent_spec,
        not_a_batch=(
            "run {id} ({name}) is not a batch: it has no task pool",
            "give the id of the batch run (named <name>+batch)",
        ),
        check_meta=_not_an_op_batch,
        executor=executor,
        n_jobs=n_jobs,
        slurm_config=slurm_config,
    )
    record, pool, meta = batch.record, batch.pool, batch.meta
    if batch.todo == 0:
        counts = pool.counts()
        to_stderr(
            f"tether: batch {record.id[:13]}: nothing to retry ({counts['completed']} of "
            f"{counts['total']} tasks completed)"
        )
        return result_of(record.id, pool)
    recorded = meta.get("base_config") or {}
    base = base_config(recover([recorded], record.id[:13], terminal_prompt()).reveal(recorded))
    check_picklable(batch.execu, func, base)
    runner = ChildRuns(
        func,
        base_cfg=base,
        task_to=str(meta["task_to"]),
        store_root=str(store.root),
        parent_dir=str(record.dir),
        name=str(meta.get("name") or record.name.removesuffix(BATCH_SUFFIX)),
        secrets=tuple(str(k) for k in meta.get("secrets") or ()),
    )
    t0 = time.monotonic()
    try:
        with reopened(store, record) as parent:
            result = execute(batch.execu, pool, runner, parent, progress=progress, retry=batch.todo)
    except TasksFailed as failed:
        result = failed.result
    result.seconds = round(time.monotonic() - t0, 3)
    return result
