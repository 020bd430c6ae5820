"""The workers' side of a search (ask, run the trial as a child run, tell) and its entry points.

The task pool of a search holds one slot per trial (its items are the slot numbers). A worker
that claims slot k opens the study and asks it for a trial, unless slot k has one already:

- a trial told (completed, pruned, failed) is not run again: the slot was done, only its
  record in the pool was lost (the batch killed between the two);
- a trial still running whose run an interrupted attempt left (SIGKILL, a preempted job) is
  continued in that run (tether.ops.restart), as the same trial;
- a trial asked but whose run never began is failed and a new one asked.

So a free worker gets a trial at once on any executor, and a search stopped at any point goes
on from where it was with no finished trial run twice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..batches.driver import (
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
from ..batches.ops import OpTrials, _op_parent, write_batch_file
from ..errors import TetherError
from ..executors.taskpool import Claim, Outcome, TaskPool, has_pool
from ..ops.batch import Batch
from ..ops.exec import check, plan_trial, working_dir
from ..ops.staging import plan_staging
from ..store.state import read_state
from ..track.trial import PRUNED_EXIT, TRIAL_ENV
from . import study as studies
from .space import SearchSpec

MODE = "search"  # the task pool meta's `mode` of a search batch
BEST_TAG = "best"
PRUNED_TAG = "pruned"
PRUNED_TEXT = "pruned by the search's pruner"


class StudyTrials:
    """The study's side of a search's TaskRunner, for any runner of child runs: each task is a
    slot; its trial comes from the study, `_run_trial` runs it (an op's trial, SearchTrials; a
    decorated main's call, tether.search.multirun)."""

    search: dict[str, Any]
    batch_dir: str
    _store: Any

    def _open_study(self) -> None:
        self._spec = SearchSpec.from_dict(self.search)
        self._study = studies.open_study(Path(self.batch_dir), self._spec)
        self._dists = studies.distributions(self._spec)

    def _run_trial(self, claim: Claim, params: dict[str, Any]) -> Outcome:
        raise NotImplementedError

    def run(self, claim: Claim) -> Outcome:
        states = studies.optuna().trial.TrialState
        study = self._study
        mine = [
            t
            for t in study.get_trials(deepcopy=False)
            if t.user_attrs.get(studies.SLOT_ATTR) == claim.index
        ]
        last = mine[-1] if mine else None
        for older in mine[:-1]:  # asked by an attempt whose lease ran out: superseded
            if not older.state.is_finished():
                with contextlib.suppress(Exception):  # its worker may be telling it now
                    study.tell(older.number, state=states.FAIL)
        if last is not None and last.state.is_finished():
            run_id = last.user_attrs.get(studies.RUN_ATTR) or claim.run
            record = self._load(run_id)
            if last.state == states.PRUNED and record is not None:
                self._mark_pruned(record)  # told, but killed before the run was marked
            return Outcome("completed", run_id, result=_result(last))
        if last is not None:  # asked by an attempt that did not end (a killed worker)
            earlier = last.user_attrs.get(studies.RUN_ATTR)
            record = self._load(earlier)
            if record is None:  # its run never began: a new trial instead
                study.tell(last.number, state=states.FAIL)
                last = None
            elif record.status in ("completed", "failed"):  # it ended; the tell was lost
                return self._tell(last.number, earlier, Outcome(record.status, earlier))
            else:  # continued in its run, as the same trial
                claim = dataclasses.replace(claim, prepared=True, run=earlier)
        if last is None:
            if self._spec.seed is not None:  # seeded per slot (study.sampler)
                study.sampler = studies.sampler(self._spec, claim.index)
            trial = study.ask(self._dists)
            trial.set_user_attr(studies.SLOT_ATTR, claim.index)
            number, params = trial.number, trial.params
        else:
            number, params = last.number, last.params
        os.environ[TRIAL_ENV] = json.dumps(
            {
                "study": str(Path(self.batch_dir) / studies.STUDY_FILE),
                "name": studies.STUDY_NAME,
                "trial": number,
                "key": self._spec.key,
                "prune": self._spec.prune,
            }
        )
        self.__dict__["_number"] = number
        try:
            outcome = self._run_trial(claim, params)
        finally:
            os.environ.pop(TRIAL_ENV, None)
            self.__dict__["_number"] = None
        if outcome.status == "terminated":  # handed back: the same trial goes on next time
            return outcome
        return self._tell(number, outcome.run, outcome)

    def _load(self, run_id: str | None) -> Any:
        if not run_id:
            return None
        try:
            return self._store.load(run_id)
        except TetherError:
            return None

    def _tell(self, number: int, run_id: str | None, outcome: Outcome) -> Outcome:
        states = studies.optuna().trial.TrialState
        study = self._study
        if run_id:
            _set_attr(study, number, run_id)
        record = self._load(run_id)
        state = read_state(record.dir) if record is not None else None
        if record is not None and state is not None and state.exit_code == PRUNED_EXIT:
            self._mark_pruned(record)  # first: a kill between the two leaves the run marked
            _tell_once(study, number, state=states.PRUNED)
            return Outcome("completed", run_id, result={"trial": number, "state": "pruned"})
        if outcome.status != "completed":
            _tell_once(study, number, state=states.FAIL)
            return outcome
        value = (record.metrics().get(self._spec.key) or {}).get("last") if record else None
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            _tell_once(study, number, state=states.FAIL)
            return Outcome(
                "failed",
                run_id,
                error=f"the trial logged no metric {self._spec.key!r} (the search's objective): "
                "log it with History.update or print `key: value`",
            )
        _tell_once(study, number, float(value))
        return Outcome(
            "completed", run_id, result={"trial": number, "state": "complete", "value": value}
        )

    def _mark_pruned(self, record: Any) -> None:
        state = read_state(record.dir)
        if state.status == "terminated" and PRUNED_TAG in (record.attrs.tags or []):
            return
        state.status = "terminated"
        state.error = PRUNED_TEXT
        if state.attempts:  # its process exited PRUNED_EXIT: stopped on purpose, not failed
            state.attempts[-1].status, state.attempts[-1].error = "terminated", PRUNED_TEXT
        self._store.set_state(record, state)
        self._store.add_attr(record, "tag", PRUNED_TAG)


class SearchTrials(StudyTrials, OpTrials):
    """The TaskRunner of a search of an op: its trial's params are the op's flags."""

    def __init__(self, *, search: dict[str, Any], batch_dir: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.search = search
        self.batch_dir = batch_dir

    def setup(self) -> None:
        super().setup()
        self._open_study()

    def _run_trial(self, claim: Claim, params: dict[str, Any]) -> Outcome:
        return OpTrials.run(self, dataclasses.replace(claim, item={**self._spec.fixed, **params}))

    # OpTrials.run sets `_current` to the trial's run as soon as it starts: the study records
    # it then (not only at the end), so a trial whose worker is killed is continued in that
    # run by the next attempt, whatever the task pool kept.
    @property
    def _current(self) -> str | None:
        return self.__dict__.get("_run_now")

    @_current.setter
    def _current(self, run_id: str | None) -> None:
        self.__dict__["_run_now"] = run_id
        number = self.__dict__.get("_number")
        if run_id and number is not None:
            _set_attr(self._study, number, run_id)


def _tell_once(study: Any, number: int, value: Any = None, state: Any = None) -> None:
    """Tell the study how a trial ended, unless it knows already: a trial superseded (its
    slot taken over after its lease ran out) was failed by the worker that took it over."""
    try:
        study.tell(number, value, state=state)
    except (ValueError, RuntimeError):
        if not study._storage.get_trial(_trial_id(study, number)).state.is_finished():
            raise


def _trial_id(study: Any, number: int) -> int:
    return int(study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number))


def _set_attr(study: Any, number: int, run_id: str) -> None:
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    study._storage.set_trial_user_attr(trial_id, studies.RUN_ATTR, run_id)


def _result(trial: Any) -> dict[str, Any]:
    return {"trial": trial.number, "state": trial.state.name.lower(), "value": trial.value}


def batch_config(op_name: str, spec: SearchSpec) -> dict[str, Any]:
    """The batch run's config: the search as a user reads it (the task pool's meta has it
    whole)."""
    space: dict[str, Any] = {}
    for dim in spec.dimensions:
        if dim.kind == "categorical":
            space[dim.name] = list(dim.choices)
        else:
            func = "loguniform" if dim.log else "uniform"
            space[dim.name] = f"{func}({dim.low}, {dim.high})"
    return {
        "op": op_name,
        "mode": MODE,
        "optimize": spec.algorithm,
        "trials": spec.trials,
        spec.direction: spec.key,
        "prune": spec.prune,
        "space": space,
        "flags": dict(spec.fixed),
    }


# -- entry points -----------------------------------------------------------------------------
def sample_flags(spec: SearchSpec) -> dict[str, Any]:
    """One point of the space (each range's low end, each list's first value): to check the
    op's command before any run is made."""
    point = dict(spec.fixed)
    for dim in spec.dimensions:
        point[dim.name] = dim.choices[0] if dim.kind == "categorical" else dim.low
    return point


def _runner(project: Any, op: Any, store: Any, parent: Any, spec: SearchSpec, **kw: Any) -> Any:
    return SearchTrials(
        search=spec.to_dict(),
        batch_dir=str(parent.dir),
        project_path=str(project.path),
        op_name=op.name,
        staging=plan_staging(project, op, store),
        store_root=str(store.root),
        parent=parent.id,
        label=kw.get("label"),
        tags=list(kw.get("tags") or ()),
        needed=False,
        quiet=sys.stderr.isatty(),
    )


def run_search(
    project: Any,
    op: Any,
    spec: SearchSpec,
    store: Any,
    *,
    label: str | None,
    tags: Sequence[str],
    command: list[str],
    executor: str | None,
    n_jobs: int | None,
    slurm_config: str | None,
) -> int:
    """Run a new search of `op`; the exit code (1 when a trial failed)."""
    studies.optuna()  # installed? (a clear error before any run is made)
    studies.sampler(spec)
    execu = make_executor(executor or ("local" if not slurm_config else None), n_jobs, slurm_config)
    staging = plan_staging(project, op, store)
    check(plan_trial(project, op, sample_flags(spec), store, staging))
    batch = Batch(MODE, [], batch_config(op.name, spec))
    batch.total = spec.trials
    check_picklable(execu, SearchTrials, staging)
    try:
        with _op_parent(
            batch, store, op.name, root=project.root, label=label, tags=tags, command=command
        ) as parent:
            meta = {"kind": "op", "op": op.name, "mode": MODE, "search": spec.to_dict()}
            pool = new_pool(parent, list(range(spec.trials)), meta, execu)
            study = studies.open_study(parent.dir, spec)
            if spec.warm_start:
                _warm_start(study, spec, store, op)
            runner = _runner(project, op, store, parent, spec, label=label, tags=tags)
            try:
                execute(execu, pool, runner, parent, progress=True, prepare=False)
            finally:
                finish(parent.dir, pool, store, op.name)
    except TasksFailed:
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _warm_start(study: Any, spec: SearchSpec, store: Any, op: Any) -> None:
    """Seed the study with the earlier completed runs of the op whose code and data digests are
    those of its newest completed run (the code and data a search of it starts from)."""
    digest = _latest_digest(store, op.name)
    if digest is None:
        to_stderr(f"tether: --warm-start: no completed run of {op.name} to start from")
        return
    added = studies.warm_start(study, spec, store, op.name, digest)
    to_stderr(f"tether: --warm-start: {added} earlier run(s) of {op.name} seed the study")


def _latest_digest(store: Any, op_name: str) -> str | None:
    for row in store.list():
        if row.name == op_name and row.status == "completed":
            with contextlib.suppress(Exception):
                return studies.inputs_digest(store.load(row.id).lock)
    return None


def search_batch(store: Any, spec: str) -> Any | None:
    """The record of batch `spec` when it is a search, else None."""
    with contextlib.suppress(Exception):
        record = store.resolve_one(spec)
        if has_pool(record.dir) and studies.has_study(record.dir):
            return record
    return None


def latest_search(store: Any, op_name: str, spec: SearchSpec) -> Any | None:
    """The newest search batch of `op_name` asked with the same spec (`--resume`)."""
    want = spec.to_dict()
    for row in store.list():
        if row.name != op_name + BATCH_SUFFIX:
            continue
        with contextlib.suppress(Exception):
            record = store.load(row.id)
            if not studies.has_study(record.dir):
                continue
            meta = TaskPool.open(record.dir).meta()
            if meta.get("search") == want:
                return record
    return None


def resume_search(
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
    """Continue the search `parent_spec`: its slots not done (failed, or left by a killed
    worker once its lease ran out) run again, each asking the study anew or continuing its
    interrupted trial."""

    def same_op(record: Any, meta: dict[str, Any]) -> None:
        if meta.get("op") != op.name or meta.get("mode") != MODE:
            raise TetherError(f"run {record.id[:13]} is not a search of {op.name!r}")

    batch = reopen_batch(
        store,
        parent_spec,
        not_a_batch=("run {id} ({name}) is not a search", "give the id of a search batch"),
        check_meta=same_op,
        executor=executor,
        n_jobs=n_jobs,
        slurm_config=slurm_config,
    )
    record = batch.record
    if not batch.todo:
        to_stderr(f"tether: search {record.id[:13]}: every trial is done")
        finish(record.dir, batch.pool, store, op.name)
        return 0
    spec = SearchSpec.from_dict(batch.meta["search"])
    _fail_unclaimed(studies.open_study(record.dir, spec))
    with working_dir(project.root):
        try:
            with reopened(store, record) as parent:
                runner = _runner(project, op, store, parent, spec, label=label, tags=tags)
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
                    finish(record.dir, batch.pool, store, op.name)
        except TasksFailed:
            return 1
        except KeyboardInterrupt:
            return 130
    return 0


def _fail_unclaimed(study: Any) -> None:
    """Trials asked by a worker killed before it wrote the trial's slot: no slot will ever
    continue them, so they are failed (their slot asks anew)."""
    states = studies.optuna().trial.TrialState
    for t in study.get_trials(deepcopy=False, states=(states.RUNNING,)):
        if studies.SLOT_ATTR not in t.user_attrs:
            study.tell(t.number, state=states.FAIL)


# -- the end of a search ----------------------------------------------------------------------
def finish(folder: Path, pool: Any, store: Any, op_name: str) -> None:
    """batch.json from the study (each trial's params, state, value and run) and the best
    trial's run tagged `best` (the tag moved when a resumed search found a better one)."""
    with contextlib.suppress(Exception):
        study = studies.load_study(Path(folder))
        trials = []
        for t in study.get_trials(deepcopy=False):
            entry: dict[str, Any] = {
                "index": t.number + 1,
                "flags": dict(t.params),
                "status": t.state.name.lower(),
            }
            if t.user_attrs.get(studies.RUN_ATTR):
                entry["run"] = t.user_attrs[studies.RUN_ATTR]
            if t.value is not None:
                entry["value"] = t.value
            trials.append(entry)
        write_batch_file(Path(folder), op_name, MODE, trials, stamped=True)
        best = _best_run(study)
        for t in study.get_trials(deepcopy=False):
            run_id = t.user_attrs.get(studies.RUN_ATTR)
            if not run_id:
                continue
            record = store.load(run_id)
            tagged = BEST_TAG in (record.attrs.tags or [])
            if run_id == best and not tagged:
                store.add_attr(record, "tag", BEST_TAG)
            elif run_id != best and tagged:
                store.add_attr(record, "untag", BEST_TAG)


def _best_run(study: Any) -> str | None:
    try:
        best = study.best_trial
    except ValueError:  # no completed trial
        return None
    return best.user_attrs.get(studies.RUN_ATTR)
