"""`@tether.parallel` and the executor flags of any decorated main: a task list as a batch.

    @tether.experiment(config="conf/train.yaml")
    def main(cfg, run): ...

    python train.py --task-to seed --n-jobs 4              # tasks: the config's `tasks` list
    python train.py --task-to data.file --tasks files.txt  # one task per line (or a YAML list)
    python train.py --task-to seed --tasks-key sweep.seeds --slurm-config slurm.yaml
    python train.py --retry-failed 0193f1c4                # only the failed or missing tasks

A batch is a parent run (named `<name>+batch`, its config the full config, one source snapshot)
and one child run per task (named `<name>`, `parent` = the batch): the child's config is the
parent's without the task list, with the task item at `--task-to` and its own `save_dir`. The
tasks wait in a task pool in the parent's folder (`tasks.db`, see taskpool.py); workers started
by the executor claim them one at a time. A task that raises is recorded failed with its
traceback and the others go on; the batch ends failed when any task failed (exit 1 from the
command line) and `--retry-failed PARENT` runs the failed and missing tasks again, in the same
batch.

`@tether.parallel(task_to=..., tasks_key=..., executor=..., n_jobs=...)` sets defaults for these
flags and makes every call a batch; used alone, it turns `main(cfg)` into a batch over
`cfg.tasks` with a run record like `@tether.experiment`'s.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, TetherError
from . import EXECUTOR_FLAGS

BATCH_SUFFIX = "+batch"
DEFAULT_TASKS_KEY = "tasks"
ATTR = "__tether_parallel__"


@dataclass
class ParallelOptions:
    """Defaults for the executor flags (the command line wins)."""

    task_to: str | None = None
    tasks: str | None = None  # a file
    tasks_key: str | None = None
    executor: str | None = None
    n_jobs: int | None = None
    slurm_config: str | None = None
    retry_failed: str | None = None

    def merged(self, extra: dict[str, Any]) -> ParallelOptions:
        out = dataclasses.replace(self)
        for name in EXECUTOR_FLAGS:
            if extra.get(name) is not None:
                setattr(out, name, extra[name])
        return out


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


# -- the decorator ----------------------------------------------------------------------------
def parallel(
    fn: Callable[..., Any] | None = None,
    *,
    task_to: str | None = None,
    tasks: str | None = None,
    tasks_key: str | None = None,
    executor: str | None = None,
    n_jobs: int | None = None,
    slurm_config: str | None = None,
) -> Any:
    """Run the decorated main as a batch: one child run per task (see the module doc)."""
    defaults = ParallelOptions(task_to, tasks, tasks_key, executor, n_jobs, slurm_config)

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        if getattr(f, "__tether_runner__", False):
            # Over @experiment (or another runner): it reads these defaults when it is called.
            setattr(f, ATTR, defaults)
            f.__tether_extra_flags__ = EXECUTOR_FLAGS  # type: ignore[attr-defined]
            return f

        @functools.wraps(f)
        def standalone(*a: Any, **kw: Any) -> Any:
            from ..config import load_for_call, report_and_exit
            from ..options import options_of

            source = getattr(f, "__tether_config_source__", None)
            inner = getattr(f, "__wrapped__", f) if source is not None else f
            cli_args = None
            from_cli = not a and not kw
            if source is not None or from_cli:
                cfg, cli_args = load_for_call(standalone, source, a, kw)
                if cfg is None:
                    return None
            else:
                cfg = a[0] if a else None
            try:
                return run_decorated(
                    standalone, inner, options_of(standalone), cfg, cli_args, from_cli=from_cli
                )
            except TetherError as exc:
                if from_cli:
                    report_and_exit(exc)
                raise

        from ..config import add_cli

        setattr(standalone, ATTR, defaults)
        standalone.__tether_runner__ = True  # type: ignore[attr-defined]
        standalone.__tether_extra_flags__ = EXECUTOR_FLAGS  # type: ignore[attr-defined]
        add_cli(standalone)
        return standalone

    return decorate(fn) if fn is not None else decorate


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
    defaults = getattr(wrapper, ATTR, None) or ParallelOptions()
    extra = dict(getattr(cli_args, "extra", None) or {})
    popts = defaults.merged(extra)
    from ..api import _function_run_name

    opts = dataclasses.replace(opts, name=opts.name or _function_run_name(func))
    if popts.retry_failed:
        result = retry_failed(
            func,
            popts.retry_failed,
            executor=popts.executor,
            n_jobs=popts.n_jobs,
            slurm_config=popts.slurm_config,
            runs_dir=runs_dir,
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


# -- tasks ------------------------------------------------------------------------------------
def load_tasks(
    cfg: Any, tasks_file: str | None, tasks_key: str | None
) -> tuple[list[Any], str | None]:
    """The task list, and the config key it came from (None for a file)."""
    if tasks_file:
        return read_tasks_file(tasks_file), None
    from omegaconf import ListConfig, OmegaConf

    key = tasks_key or DEFAULT_TASKS_KEY
    from ..config import _ABSENT, _select, _suggest_key

    node = _ABSENT if cfg is None else _select(cfg, key)
    if node is _ABSENT or node is None:
        if tasks_key:
            hint = _suggest_key(cfg, key) if cfg is not None else None
            raise ConfigError(f"--tasks-key {key!r} is not a key of the config", hint)
        raise ConfigError(
            "no tasks: the config has no `tasks` list",
            "add one, or give --tasks FILE (.txt: one task per line, or a YAML list) or "
            "--tasks-key KEY",
        )
    if not isinstance(node, ListConfig):
        what = "a mapping" if OmegaConf.is_config(node) else type(node).__name__
        raise ConfigError(f"config key {key!r} holds {what}, not a list of tasks")
    items = OmegaConf.to_container(node, resolve=True)
    assert isinstance(items, list)
    if not items:
        raise ConfigError(f"no tasks: the list at config key {key!r} is empty")
    return items, key


def read_tasks_file(path: str) -> list[Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(
            f"--tasks {path}: no such file" if not p.exists() else f"--tasks {path}: not a file"
        )
    suffix = p.suffix.lower()
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--tasks {path}: cannot read it ({exc})")
    if suffix in (".yaml", ".yml", ".json"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f":{mark.line + 1}" if mark else ""
            raise ConfigError(
                f"--tasks {path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})"
            )
        if isinstance(data, dict) and isinstance(data.get("tasks"), list):
            data = data["tasks"]
        if not isinstance(data, list):
            raise ConfigError(
                f"--tasks {path}: expected a YAML list of tasks, got {type(data).__name__}"
            )
        items = data
    else:
        lines = [line.strip() for line in text.splitlines()]
        items = [_scalar(line) for line in lines if line and not line.startswith("#")]
    if not items:
        raise ConfigError(f"no tasks: {path} is empty")
    return items


def _scalar(text: str) -> Any:
    """A line of a task file, typed as a YAML scalar would be (7, 0.5, true, a/b.csv)."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (str, int, float, bool)) else text


def _base_config(cfg: Any) -> Any:
    from omegaconf import OmegaConf

    from ..capture.resolvers import register

    register()
    if cfg is None:
        return OmegaConf.create({})
    if OmegaConf.is_config(cfg):
        return cfg.copy()
    import copy

    return OmegaConf.create(copy.deepcopy(dict(cfg)))


# -- executors --------------------------------------------------------------------------------
def make_executor(name: str | None, n_jobs: Any, slurm_config: str | None) -> Any:
    from . import get_executor
    from .base import check_n_jobs

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


# -- running ----------------------------------------------------------------------------------
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
    from ..options import RunOptions, SnapshotOptions
    from .children import check_task_to, drop_key

    execu = make_executor(executor, n_jobs, slurm_config)
    base = _base_config(cfg)
    if tasks is not None:
        items, list_key = list(tasks), None
        if not items:
            raise ConfigError("no tasks: the task list is empty")
    else:
        items, list_key = load_tasks(base, tasks_file, tasks_key)
    items = [_plain(item) for item in items]
    if not task_to:
        raise ConfigError(
            "--task-to KEY is needed: the config key each task item goes to",
            "e.g. --task-to seed (or @tether.parallel(task_to='seed'))",
        )
    check_task_to(base, task_to, items[0])
    child_base = drop_key(base, list_key)
    check_picklable(execu, func, child_base)
    opts = options or RunOptions(snapshot=SnapshotOptions(True))
    from ..api import _function_run_name

    child_name = name or opts.name or _function_run_name(func)
    parent_opts = dataclasses.replace(opts, name=child_name + BATCH_SUFFIX)
    t0 = time.monotonic()
    try:
        result = _start_batch(
            func,
            base,
            child_base,
            items,
            execu,
            parent_opts,
            child_name,
            runs_dir,
            early,
            task_to=task_to,
            list_key=list_key,
            tasks_file=tasks_file,
            progress=progress,
        )
    except TasksFailed as failed:
        result = failed.result
    result.seconds = round(time.monotonic() - t0, 3)
    return result


def _start_batch(
    func: Callable[..., Any],
    base: Any,
    child_base: Any,
    items: list[Any],
    execu: Any,
    parent_opts: Any,
    child_name: str,
    runs_dir: Any,
    early: Any,
    *,
    task_to: str,
    list_key: str | None,
    tasks_file: str | None,
    progress: bool,
) -> BatchResult:
    from ..api import start_run
    from .children import ChildRuns
    from .taskpool import TaskPool

    with start_run(base, runs_dir=runs_dir, options=parent_opts, early_snapshot=early) as parent:
        meta = {
            "name": child_name,
            "task_to": task_to,
            "tasks_key": list_key,
            "tasks_file": tasks_file,
            "base_config": _config_yaml(child_base),
            **execu.record(),
        }
        pool = TaskPool.create(parent.dir, items, meta=meta)
        runner = ChildRuns(
            func,
            base_cfg=child_base,
            task_to=task_to,
            store_root=str(parent.store.root),
            parent_dir=str(parent.dir),
            name=child_name,
        )
        return _execute(execu, pool, runner, parent, progress=progress)


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
    from omegaconf import OmegaConf

    from ..store import open_store
    from .children import ChildRuns
    from .taskpool import POOL_FILE, TaskPool

    store = open_store(runs_dir)
    record = store.resolve_one(parent_spec)
    if not (record.dir / POOL_FILE).is_file():
        raise TetherError(
            f"run {record.id[:13]} ({record.name}) is not a batch: it has no task pool",
            "give the id of the batch run (named <name>+batch)",
        )
    pool = TaskPool.open(record.dir)
    meta = pool.meta()
    if meta.get("kind") == "op":
        raise TetherError(
            f"run {record.id[:13]} is a batch of `tether run {meta.get('op', '')}`",
            f"retry it with: tether run {meta.get('op', 'OP')} --retry-failed {record.id[:13]}",
        )
    execu = make_executor(
        executor or meta.get("executor"),
        n_jobs if n_jobs is not None else meta.get("n_jobs"),
        slurm_config,
    )
    todo = pool.reset_for_retry()
    if todo == 0:
        counts = pool.counts()
        print(
            f"tether: batch {record.id[:13]}: nothing to retry ({counts['completed']} of "
            f"{counts['total']} tasks completed)",
            file=sys.stderr,
        )
        return _result(record.id, pool)
    from ..capture.resolvers import register

    register()
    base = OmegaConf.create(meta.get("base_config") or {})
    check_picklable(execu, func, base)
    runner = ChildRuns(
        func,
        base_cfg=base,
        task_to=str(meta["task_to"]),
        store_root=str(store.root),
        parent_dir=str(record.dir),
        name=str(meta.get("name") or record.name.removesuffix(BATCH_SUFFIX)),
    )
    t0 = time.monotonic()
    try:
        with reopened(store, record) as parent:
            result = _execute(execu, pool, runner, parent, progress=progress, retry=todo)
    except TasksFailed as failed:
        result = failed.result
    result.seconds = round(time.monotonic() - t0, 3)
    return result


def _execute(
    execu: Any,
    pool: Any,
    runner: Any,
    parent: Any,
    *,
    progress: bool,
    retry: int | None = None,
    prepare: bool = True,
) -> BatchResult:
    """Start the workers, show progress, record the outcome in the parent run (which ends
    failed, by TasksFailed, when a task failed or was left undone)."""
    from .base import drive
    from .taskpool import Worker

    counts = pool.counts()
    if getattr(execu, "lease_s", None):
        pool.lease_s = float(execu.lease_s)
    if execu.scheduler and prepare:
        prepare_queued(runner, pool)
    worker = Worker(pool, runner)
    label = f"{runner.name} ({counts['total']} task{'s' if counts['total'] != 1 else ''})"
    first = (
        f"tether: batch {parent.id[:13]}: "
        + (f"retrying {retry} of {counts['total']} tasks" if retry else f"{counts['total']} tasks")
        + f" of {runner.name} on {execu.name}"
    )
    print(first, file=sys.stderr)
    display = ProgressDisplay(pool, label, scheduler=execu.scheduler, enabled=progress)
    errors: list[str] = []
    try:
        with display:
            errors = drive(execu, worker, pool, parent.dir, on_tick=display.tick)
    except BaseException:
        _stop_all(pool, runner)
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
    result = _result(parent.id, pool)
    for line in errors:
        print(f"tether: {line}", file=sys.stderr)
    print(_summary(result), file=sys.stderr)
    for index in sorted(result.errors)[:5]:
        lines = [ln for ln in result.errors[index].strip().splitlines() if ln.strip()]
        run = result.runs[index] or ""
        print(
            f"tether:   task {index} failed (run {run[:13]}): {lines[-1].strip() if lines else ''}",
            file=sys.stderr,
        )
    if len(result.errors) > 5:
        print(f"tether:   ... and {len(result.errors) - 5} more failed", file=sys.stderr)
    if not result.ok:
        print(
            f"tether: rerun the failed and missing tasks with --retry-failed {parent.id[:13]}",
            file=sys.stderr,
        )
    if not result.ok:
        raise TasksFailed(
            _failure_text(result), f"rerun them with --retry-failed {parent.id[:13]}", result
        )
    return result


def prepare_queued(runner: Any, pool: Any) -> None:
    """Under a scheduler the children exist from the start, `queued`, so `tether runs` shows
    the whole batch while the jobs wait."""
    from ..ids import new_id

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


def _stop_all(pool: Any, runner: Any) -> None:
    """The batch is stopped (Ctrl-C): tasks in flight go back to the pool, their runs end
    `terminated`."""
    from ..store import open_store
    from ..store.state import now_iso, read_state, write_state

    try:
        runs = pool.release_all()
    except Exception:
        return
    store = open_store(runner.store_root)
    for run_id in runs:
        try:
            record = store.load(run_id)
            state = read_state(record.dir)
            if state.status in ("running", "queued", "pending"):
                state.status, state.exit_code, state.stopped = "terminated", 130, now_iso()
                state.error = "batch stopped"
                write_state(record.dir, state)
                record.state = state
                store.index.upsert(record)
        except Exception:
            continue


def _result(parent_id: str, pool: Any) -> BatchResult:
    rows = pool.rows()
    return BatchResult(
        parent=parent_id,
        counts=pool.counts(),
        runs=[r.run for r in rows],
        results=[r.result for r in rows],
        errors={r.index: r.error for r in rows if r.status == "failed" and r.error},
    )


def _summary(result: BatchResult) -> str:
    c = result.counts
    parts = [f"{c['completed']} completed"]
    if c["failed"]:
        parts.append(f"{c['failed']} failed")
    left = c["pending"] + c["running"]
    if left:
        parts.append(f"{left} not done")
    return f"tether: batch {result.parent[:13]}: {c['total']} tasks: " + ", ".join(parts)


def _failure_text(result: BatchResult) -> str:
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


def _plain(item: Any) -> Any:
    from omegaconf import OmegaConf

    if OmegaConf.is_config(item):
        item = OmegaConf.to_container(item, resolve=True)
    import json

    try:
        json.dumps(item)
    except (TypeError, ValueError):
        raise ConfigError(
            f"task {item!r} is not plain data (strings, numbers, lists, mappings)",
            "a task list holds values that can be written to YAML",
        )
    return item


def _config_yaml(cfg: Any) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=False)


# -- the parent of a retried batch ------------------------------------------------------------
class reopened:
    """A finished batch run, running again for `--retry-failed`: state running, then the
    outcome, as `start_run` records it for a new run."""

    def __init__(self, store: Any, record: Any) -> None:
        self.store = store
        self.record = record

    def __enter__(self) -> Any:
        from ..run import Run
        from ..store.state import RunState, hostname, now_iso, proc_start_time

        pid = os.getpid()
        previous = self.record.state
        self.store.set_state(
            self.record,
            RunState(
                status="running",
                pid=pid,
                host=hostname(),
                started=previous.started or now_iso(),
                proc_start=proc_start_time(pid),
            ),
        )
        self.run = Run(self.store, self.record, None)
        return self.run

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        from ..store.state import now_iso

        self.run._close()
        state = self.record.state
        if exc is None:
            state.status, state.exit_code, state.error = "completed", 0, None
        elif isinstance(exc, (KeyboardInterrupt,)) or type(exc).__name__ == "Terminated":
            state.status, state.exit_code, state.error = "terminated", 130, type(exc).__name__
        else:
            state.status, state.exit_code = "failed", 1
            state.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        state.stopped = now_iso()
        self.store.set_state(self.record, state)


# -- progress ---------------------------------------------------------------------------------
class ProgressDisplay:
    """A rich progress bar of the pool: done / running / failed (and queued under a
    scheduler), redrawn from the pool a few times a second; off when stderr is not a terminal
    (the summary line is printed either way)."""

    def __init__(
        self, pool: Any, label: str, *, scheduler: bool, enabled: bool, console: Any = None
    ) -> None:
        self.pool = pool
        self.label = label
        self.scheduler = scheduler
        self.console = console
        self.enabled = enabled and (console is not None or _is_terminal())
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> ProgressDisplay:
        if not self.enabled:
            return self
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[states]}"),
            TimeElapsedColumn(),
            console=self.console or Console(stderr=True),
            transient=False,
            auto_refresh=True,
            refresh_per_second=5,
        )
        self._progress.__enter__()
        counts = self.pool.counts()
        self._task = self._progress.add_task(
            self.label, total=counts["total"], completed=counts["completed"], states=""
        )
        return self

    def tick(self) -> None:
        if self._progress is None:
            return
        c = self.pool.counts()
        states = [f"[cyan]{c['running']} running[/cyan]"]
        if self.scheduler:
            states.insert(0, f"[yellow]{c['pending']} queued[/yellow]")
        states.append(f"[red]{c['failed']} failed[/red]" if c["failed"] else "0 failed")
        self._progress.update(
            self._task, completed=c["completed"] + c["failed"], states=" · ".join(states)
        )

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self.tick()
            self._progress.__exit__(None, None, None)


def _is_terminal() -> bool:
    try:
        return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False
