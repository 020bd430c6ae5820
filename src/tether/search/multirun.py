"""A search over a decorated main's multirun: `python train.py -m x=interval(-2,2) --optimize tpe
--trials 8 --minimize loss`.

The batch is a decorated main's batch (a parent run `<name>+batch`, one child run per task, the
task pool in its folder, tether.batches.decorated) whose tasks are the search's slots, as in a
search of an op (runner.py): a worker that claims a slot asks the study for a point, calls the
main in a child run with the point's values at the swept keys, and tells the study the run's
last value of the objective. The study's journal is in the batch's folder, the best trial's run
is tagged `best` and batch.json lists the trials, so `tether show BATCH` shows the study.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from typing import Any

from ..batches.children import ChildRuns
from ..batches.driver import (
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
from ..batches.flags import ParallelOptions, parallel_options
from ..batches.tasks import base_config, check_task_to, config_yaml
from ..capture.secrets import redact_config, run_policy
from ..capture.unredact import recover, terminal_prompt
from ..errors import TetherError
from ..executors.taskpool import Claim, Outcome
from ..session.naming import function_run_name
from ..session.start import start_run
from ..store import open_store
from . import study as studies
from .runner import (
    MODE,
    StudyTrials,
    _fail_unclaimed,
    _set_attr,
    finish,
    latest_search,
    sample_flags,
)
from .space import SearchSpec, check_options, from_sweeps, grid_size


class MultirunTrials(StudyTrials, ChildRuns):
    """The TaskRunner of a decorated main's search: its trial's params are the swept keys'
    values, the item of a multirun task (one value per task key)."""

    def __init__(self, func: Callable[..., Any], *, search: dict[str, Any], **kw: Any) -> None:
        ChildRuns.__init__(self, func, **kw)
        self.search = search
        self.batch_dir = kw["parent_dir"]

    def __getstate__(self) -> dict[str, Any]:
        return {**ChildRuns.__getstate__(self), "search": self.search, "batch_dir": self.batch_dir}

    def setup(self) -> None:
        if self._ready:
            return
        ChildRuns.setup(self)
        self._store = self.store
        self._open_study()

    def _run_trial(self, claim: Claim, params: dict[str, Any]) -> Outcome:
        number = self.__dict__.get("_number")
        if claim.run and number is not None:  # recorded as it starts: a killed trial goes on
            _set_attr(self._study, number, claim.run)
        return ChildRuns.run(self, dataclasses.replace(claim, item=dict(params)))


def search_spec(plan: Any) -> SearchSpec:
    """The SearchSpec of a multirun plan (tether.config.multirun.plan_search)."""
    opts = plan.search
    key, direction = check_options(
        str(opts["optimize"]), opts["trials"], opts["minimize"], opts["maximize"], opts["prune"]
    )
    if opts["prune"] is not None:
        # A trial's reports reach the pruner through tether.track.trial, which reads its trial
        # from the environment once per process; a worker here runs many trials in one.
        raise TetherError(
            f"--prune {opts['prune']}: a decorated main's search does not prune yet",
            "drop --prune, or search the script as an op: tether run OP --optimize ... --prune",
        )
    dims = from_sweeps(plan.sweeps)
    trials = opts["trials"] if opts["optimize"] != "grid" else grid_size(dims)
    if opts["optimize"] == "grid" and opts["trials"] is not None:
        trials = min(trials, int(opts["trials"]))
    return SearchSpec(str(opts["optimize"]), int(trials), key, direction, dims, prune=opts["prune"])


def run_multirun_search(
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
    """The batch of `-m ... --optimize ALGO` (the hook `@tether.experiment` calls)."""
    popts = (parallel_options(wrapper) or ParallelOptions()).merged(
        dict(getattr(cli_args, "extra", None) or {})
    )
    if popts.task_to or popts.tasks or popts.tasks_key or popts.retry_failed:
        raise TetherError(
            "-m --optimize makes its own tasks: --task-to, --tasks, --tasks-key and "
            "--retry-failed do not combine with it",
            "continue a search with --resume",
        )
    plan = cli_args.plan
    spec = search_spec(plan)
    studies.optuna()  # installed? (a clear error before any run is made)
    studies.sampler(spec)
    name = opts.name or function_run_name(func)
    opts = dataclasses.replace(opts, name=name)
    store = open_store(runs_dir)
    kw: dict[str, Any] = {
        "executor": popts.executor,
        "n_jobs": popts.n_jobs,
        "slurm_config": popts.slurm_config,
    }
    earlier = latest_search(store, name, spec) if plan.search.get("resume") else None
    if earlier is not None:
        result = _resume(func, store, earlier, spec, **kw)
    else:
        if plan.search.get("resume"):
            to_stderr(f"tether: --resume: no search of {name} asked the same: a new one")
        result = _new(func, cfg, plan, spec, opts, runs_dir=runs_dir, early=early, **kw)
    if from_cli and not result.ok:
        raise SystemExit(1)
    return result


def _new(
    func: Callable[..., Any],
    cfg: Any,
    plan: Any,
    spec: SearchSpec,
    opts: Any,
    *,
    runs_dir: Any,
    early: Any,
    executor: str | None,
    n_jobs: int | None,
    slurm_config: str | None,
) -> BatchResult:
    execu = make_executor(executor, n_jobs, slurm_config)
    base = base_config(cfg)
    sample = sample_flags(spec)
    check_task_to(base, plan.task_to, sample)
    check_picklable(execu, func, base)
    parent_opts = dataclasses.replace(opts, name=opts.name + BATCH_SUFFIX)
    meta = {
        "name": opts.name,
        "mode": MODE,
        "search": spec.to_dict(),
        "task_to": plan.task_to,
        "base_config": redact_config(config_yaml(base), run_policy(opts.secrets)),
        "secrets": list(opts.secrets),
    }
    t0 = time.monotonic()
    try:
        with start_run(
            base, runs_dir=runs_dir, options=parent_opts, early_snapshot=early
        ) as parent:
            pool = new_pool(parent, list(range(spec.trials)), meta, execu)
            studies.open_study(parent.dir, spec)
            runner = MultirunTrials(
                func,
                search=spec.to_dict(),
                base_cfg=base,
                task_to=plan.task_to,
                store_root=str(parent.store.root),
                parent_dir=str(parent.dir),
                name=opts.name,
                secrets=tuple(opts.secrets),
            )
            try:
                result = execute(execu, pool, runner, parent, progress=True, prepare=False)
            finally:
                finish(parent.dir, pool, parent.store, opts.name)
    except TasksFailed as failed:
        result = failed.result
    result.seconds = round(time.monotonic() - t0, 3)
    return result


def _resume(
    func: Callable[..., Any],
    store: Any,
    record: Any,
    spec: SearchSpec,
    *,
    executor: str | None,
    n_jobs: int | None,
    slurm_config: str | None,
) -> BatchResult:
    """Continue the search `record`: its slots not done run again (runner.py's module doc)."""
    batch = reopen_batch(
        store,
        record.id,
        not_a_batch=("run {id} ({name}) is not a search", "give the id of a search batch"),
        check_meta=lambda rec, meta: None,
        executor=executor,
        n_jobs=n_jobs,
        slurm_config=slurm_config,
    )
    name = str(batch.meta.get("name") or record.name.removesuffix(BATCH_SUFFIX))
    if not batch.todo:
        to_stderr(f"tether: search {record.id[:13]}: every trial is done")
        finish(record.dir, batch.pool, store, name)
        return result_of(record.id, batch.pool)
    _fail_unclaimed(studies.open_study(record.dir, spec))
    # The base config as recorded (its secrets asked again), as --retry-failed does.
    recorded = batch.meta.get("base_config") or {}
    base = base_config(recover([recorded], record.id[:13], terminal_prompt()).reveal(recorded))
    check_picklable(batch.execu, func, base)
    runner = MultirunTrials(
        func,
        search=spec.to_dict(),
        base_cfg=base,
        task_to=str(batch.meta["task_to"]),
        store_root=str(store.root),
        parent_dir=str(record.dir),
        name=name,
        secrets=tuple(str(k) for k in batch.meta.get("secrets") or ()),
    )
    t0 = time.monotonic()
    try:
        with reopened(store, record) as parent:
            try:
                result = execute(
                    batch.execu,
                    batch.pool,
                    runner,
                    parent,
                    progress=True,
                    retry=batch.todo,
                    prepare=False,
                )
            finally:
                finish(record.dir, batch.pool, store, name)
    except TasksFailed as failed:
        result = failed.result
    result.seconds = round(time.monotonic() - t0, 3)
    return result
