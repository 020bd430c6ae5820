"""Runs from Python: `with tether.start_run(cfg) as run:` and `@tether.experiment(...)`.

Both create the same record: run folder, run.lock (resolved config, command, environment,
source snapshot, data digests, upstream stages), state.json moving pending -> running ->
completed/failed/terminated, output teed into output.log, and an index row kept in step.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import inspect
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .errors import TetherError
from .executors import EXECUTOR_FLAGS, batch_requested
from .lock import RunLock, read_lock
from .options import ATTR, RunOptions, SnapshotOptions, options_of
from .run import Run
from .snapshotting import EarlySnapshot, publish_snapshot, take_snapshot
from .store import RunRecord, Store, open_store
from .store.attrs import read_attributes
from .store.layout import OUTPUT, find_project_file
from .store.state import RunState, hostname, now_iso, proc_start_time

log = logging.getLogger("tether")

_MISSING_MARKS = (None, "???", "")
_current_run: contextvars.ContextVar[Run | None] = contextvars.ContextVar(
    "tether_run", default=None
)


class Terminated(BaseException):
    """Raised in the main thread when the run receives SIGTERM."""


class Skipped(Exception):
    """--needed found a completed run with the same inputs."""

    def __init__(self, twin: str) -> None:
        super().__init__(twin)
        self.twin = twin


def current_run() -> Run | None:
    """The run this code executes in, if any."""
    return _current_run.get()


# -- config helpers ---------------------------------------------------------------------------
def _resolve_config(cfg: Any, store_root: str) -> tuple[dict[str, Any], Any]:
    from .capture.resolvers import collecting

    with collecting(store_root) as collected:
        if cfg is None:
            container: dict[str, Any] = {}
        elif isinstance(cfg, dict) and not hasattr(cfg, "_get_node"):
            from .config import to_container

            container = to_container(_as_omegaconf(cfg)) if _has_interpolation(cfg) else dict(cfg)
        else:
            from .config import to_container

            container = to_container(cfg)
    return container, collected


def _has_interpolation(obj: Any) -> bool:
    if isinstance(obj, str):
        return "${" in obj
    if isinstance(obj, dict):
        return any(_has_interpolation(v) for v in obj.values())
    if isinstance(obj, list):
        return any(_has_interpolation(v) for v in obj)
    return False


def _as_omegaconf(d: dict[str, Any]) -> Any:
    from omegaconf import OmegaConf

    from .capture.resolvers import register

    register()
    return OmegaConf.create(d)


def _set_key(cfg: Any, container: dict[str, Any], key: str, value: Any) -> None:
    node = container
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    if cfg is None:
        return
    if isinstance(cfg, dict) and not hasattr(cfg, "_get_node"):
        target = cfg
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value
        return
    from omegaconf import OmegaConf

    OmegaConf.update(cfg, key, value, force_add=True)


def _get_key(container: dict[str, Any], key: str) -> Any:
    node: Any = container
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


# -- capture ----------------------------------------------------------------------------------
def _stages(
    store: Store, opts: RunOptions, cfg: Any, container: dict[str, Any], collected: Any
) -> tuple[list[Any], dict[str, Path]]:
    from .capture.lineage import find_upstream, stage_record

    records, folders = [], {}
    for name, key in opts.stages.items():
        ref = _get_key(container, key) if key else None
        upstream = find_upstream(store, str(ref) if ref not in _MISSING_MARKS else name)
        records.append(stage_record(name, upstream))
        folders[name] = upstream.dir
        if key:
            _set_key(cfg, container, key, str(upstream.dir))
    for name, run_id in opts.stage_runs.items():
        upstream = store.load(run_id)
        if upstream.status != "completed":
            raise TetherError(
                f"upstream run {run_id[:13]} ({upstream.name}) is {upstream.status}, not completed"
            )
        records.append(stage_record(name, upstream))
        folders[name] = upstream.dir
    for run_id in collected.stages.values():
        if run_id in {r.run for r in records}:
            continue
        upstream = store.load(run_id)
        records.append(stage_record(upstream.name, upstream))
        folders.setdefault(upstream.name, upstream.dir)
    return records, folders


@contextlib.contextmanager
def _signals_raise_terminated() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated(f"received signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _prepare(
    cfg: Any,
    opts: RunOptions,
    store: Store,
    command: list[str] | None,
    parent: str | None,
    early: EarlySnapshot | None = None,
) -> tuple[RunLock, Path | None, dict[str, Path], list[Any]]:
    """Everything about the run that is known before it starts, as an unsaved lock."""
    from .capture.environment import capture_environment
    from .capture.tracking import data_entries, hash_entries, mark_pending

    container, collected = _resolve_config(cfg, str(store.root))
    explicit_dir = (
        None
        if container.get("save_dir") in _MISSING_MARKS
        else Path(os.path.expanduser(str(container["save_dir"]))).absolute()
    )
    lock = store.new_lock(
        opts.name or _default_name(),
        command=command if command is not None else [Path(sys.executable).name, *sys.argv],
        env=capture_environment(),
        parent=parent,
        project_id=_project_id(),
    )
    if early is not None and early.usable(opts.snapshot):
        lock.id = early.run_id  # the early snapshot's commit message names this id
    run_dir = explicit_dir or store.run_dir(lock.id)
    _set_key(cfg, container, "save_dir", str(run_dir))
    lock.stages, folders = _stages(store, opts, cfg, container, collected)
    lock.config = container
    entries = data_entries(container, opts.data_keys, [*opts.data_paths, *collected.tracked])
    background = opts.background_hash and not opts.needed
    if background:
        mark_pending(entries)
    else:
        hash_entries(entries)
    lock.data = entries
    if opts.snapshot.enabled:
        if explicit_dir is not None and (explicit_dir / "run.lock").exists():
            store.create(lock, run_dir=explicit_dir)  # refuses, naming the run already there
        if early is not None and early.usable(opts.snapshot):
            lock.sources = early.result()
        else:
            lock.sources = take_snapshot(lock.id, opts.snapshot, run_dir, store.root)
        for src in lock.sources:
            publish_snapshot(src, lock.id)
    return lock, explicit_dir, folders, entries if background else []


def _project_id() -> str | None:
    from .store.layout import read_project_data

    project = find_project_file()
    value = read_project_data(project).get("project-id") if project else None
    return str(value) if value else None


@contextlib.contextmanager
def start_run(
    cfg: Any = None,
    *,
    name: str | None = None,
    runs_dir: str | os.PathLike[str] | None = None,
    snapshot: bool | SnapshotOptions = True,
    data: list[str] | tuple[str, ...] = (),
    track: list[str] | tuple[str, ...] = (),
    stages: dict[str, str | None] | None = None,
    background_hash: bool = False,
    needed: bool = False,
    label: str | None = None,
    tags: tuple[str, ...] | list[str] = (),
    parent: str | None = None,
    capture_output: bool = True,
    command: list[str] | None = None,
    on_error: Callable[[BaseException], None] | None = None,
    options: RunOptions | None = None,
    early_snapshot: EarlySnapshot | None = None,
) -> Iterator[Run]:
    """Create a run for `cfg` (a DictConfig or dict) and record how it ends.

    `save_dir` in the config, when set, is the run folder; when absent or `???` tether fills it
    with the run folder so the code can write its outputs there. With `needed=True`, a completed
    run with the same inputs raises `Skipped` (its id in `.twin`) instead of running again.
    """
    opts = options or RunOptions(
        name=name,
        snapshot=snapshot if isinstance(snapshot, SnapshotOptions) else SnapshotOptions(snapshot),
        data_keys=list(data),
        data_paths=list(track),
        background_hash=background_hash,
        stages=dict(stages or {}),
        needed=needed,
        label=label,
        tags=list(tags),
    )
    store = open_store(runs_dir)
    store.ensure_root()
    # The run fills in save_dir and upstream folders on its own copy: the caller's config stays
    # as it was, so one dict can start many runs.
    cfg = _copy_config(cfg)
    lock, explicit_dir, folders, pending = _prepare(
        cfg, opts, store, command, parent, early_snapshot
    )
    if opts.needed:
        twin = store.index.completed_twin(lock.digest())
        if twin is not None:
            _drop_snapshot_ref(lock)
            raise Skipped(twin)
    record = store.create(lock, run_dir=explicit_dir)
    run = Run(store, record, cfg, folders)
    if opts.label:
        run.set_label(opts.label)
    if opts.tags:
        run.add_tag(*opts.tags)
    if pending:
        from .capture.datahash import hash_data_background

        hash_data_background(record.dir, [e.path for e in pending])
    _announce(record)
    yield from _lifecycle(store, record, run, capture_output, on_error)


def _copy_config(cfg: Any) -> Any:
    if cfg is None:
        return None
    if isinstance(cfg, dict) and not hasattr(cfg, "_get_node"):
        import copy

        return copy.deepcopy(cfg)
    return cfg.copy() if hasattr(cfg, "copy") else cfg


def _drop_snapshot_ref(lock: RunLock) -> None:
    """A skipped run leaves no snapshot ref behind, in any of its repositories."""
    from .capture.source import REF_PREFIX, _git

    for src in lock.sources:
        if src.commit and src.root:
            with contextlib.suppress(TetherError):
                _git(Path(src.root), "update-ref", "-d", REF_PREFIX + lock.id)


def _announce(record: RunRecord) -> None:
    """Tell a parent process (tether reproduce, batches) which run this is."""
    target = os.environ.get("TETHER_RUN_ID_FILE")
    if target:
        with contextlib.suppress(OSError), open(target, "a", encoding="utf-8") as fh:
            fh.write(record.id + "\n")


def _lifecycle(
    store: Store,
    record: RunRecord,
    run: Run,
    capture_output: bool,
    on_error: Callable[[BaseException], None] | None,
) -> Iterator[Run]:
    capture = None
    if capture_output:
        from .capture.output import OutputCapture

        capture = OutputCapture(record.dir / OUTPUT)
        capture.start()
    pid = os.getpid()
    store.set_state(
        record,
        RunState(
            status="running",
            pid=pid,
            host=hostname(),
            started=now_iso(),
            proc_start=proc_start_time(pid),
        ),
    )
    token = _current_run.set(run)
    status, exit_code, error = "completed", 0, None
    try:
        with _signals_raise_terminated():
            yield run
    except (KeyboardInterrupt, Terminated) as exc:
        status, exit_code = "terminated", 130 if isinstance(exc, KeyboardInterrupt) else 143
        error = f"{type(exc).__name__}: {exc}".rstrip(": ")
        raise
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if code != 0:
            status, exit_code, error = "failed", code, f"SystemExit({exc.code})"
        raise
    except BaseException as exc:
        status, exit_code = "failed", 1
        error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        if capture is not None:
            capture.write_log("".join(traceback.format_exception(exc)))
        if on_error is not None:
            on_error(exc)
        raise
    finally:
        _current_run.reset(token)
        try:
            run._close(status)  # flush and close the run's History and its sinks
            from .track.tensorboard import rollup_into_summary

            rollup_into_summary(store, record)  # TensorBoard scalars join summary.json
        finally:
            if capture is not None:
                capture.stop()
            state = record.state
            state.status = status
            state.exit_code = exit_code
            state.stopped = now_iso()
            state.error = error
            # Labels or notes may have come from another process; run.lock only changes when a
            # background hash fills in its data digests.
            if any(d.status == "pending" for d in record.lock.data):
                record.lock = read_lock(record.dir)
            record.attrs = read_attributes(record.dir)
            store.set_state(record, state)
            store.index.close()


def _function_run_name(func: Callable[..., Any]) -> str:
    """`main` says nothing: name the run after its script (train.py -> train) instead."""
    if func.__name__ != "main":
        return func.__name__
    module = sys.modules.get(func.__module__)
    path = getattr(module, "__file__", None)
    return Path(path).stem if path else func.__name__


def _default_name() -> str:
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    return Path(path).stem if path else "run"


# -- decorators -------------------------------------------------------------------------------
def run_for_call(
    func: Callable[..., Any],
    opts: RunOptions,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    runs_dir: str | os.PathLike[str] | None = None,
    debug: bool = True,
    new_run: bool = False,
    early: EarlySnapshot | None = None,
) -> Any:
    """Call `func(cfg[, run])` inside a run (or inside the current one, if any)."""
    from .debug import post_mortem

    cfg = args[0] if args else None
    wants_run = len(inspect.signature(func).parameters) >= 2
    active = current_run()
    if active is not None and not new_run:
        # Already inside a run (a decorator used alone, under experiment): just call.
        return func(*args, **kwargs) if not wants_run else func(cfg, active)
    opts = dataclasses.replace(opts, name=opts.name or _function_run_name(func))
    if os.environ.get("TETHER_NEEDED") == "1":
        opts.needed = True
    try:
        with start_run(
            cfg,
            runs_dir=runs_dir,
            options=opts,
            on_error=post_mortem if debug else None,
            early_snapshot=early,
        ) as run:
            return func(run.cfg, run) if wants_run else func(run.cfg, *args[1:], **kwargs)
    except Skipped as skip:
        print(
            f"tether: skipped: run {skip.twin} already completed with the same config, "
            "code and data (--needed)",
            file=sys.stderr,
        )
        return None


def experiment(
    fn: Callable[..., Any] | None = None,
    *,
    config: Any = None,
    defaults: Any = None,
    name: str | None = None,
    snapshot: bool = True,
    include: list[str] | tuple[str, ...] = (),
    exclude: list[str] | tuple[str, ...] = (),
    repos: list[str] | tuple[str, ...] = (),
    data: list[str] | tuple[str, ...] = (),
    track: list[str] | tuple[str, ...] = (),
    background_hash: bool = False,
    stages: dict[str, str | None] | None = None,
    needed: bool = False,
    runs_dir: str | os.PathLike[str] | None = None,
    label: str | None = None,
    tags: tuple[str, ...] | list[str] = (),
    debug: bool = True,
    mlflow: bool = False,
) -> Any:
    """The composite decorator: config command line + run record + snapshot + data digests +
    previous stages + unsafe_debug.

    The function takes `cfg`, or `cfg, run`. From the command line, bad input prints one line and
    exits 2; an exception in the function marks the run failed and propagates. With
    `mlflow=True` the run is also logged to MLflow, as `@tether.mlflow` does.
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        from .config import _locate

        source = defaults if defaults is not None else _locate(config, func)
        own = RunOptions(
            name=name,
            snapshot=SnapshotOptions(snapshot, list(include), list(exclude), list(repos)),
            data_keys=list(data),
            data_paths=list(track),
            background_hash=background_hash,
            stages=dict(stages or {}),
            needed=needed,
            label=label,
            tags=list(tags),
        )
        inner = (
            getattr(func, "__wrapped__", func)
            if getattr(func, "__tether_runner__", False)
            else func
        )
        if mlflow:
            from .track.mlflow_decorator import mlflow as log_to_mlflow

            inner = log_to_mlflow(inner)

        @functools.wraps(func)
        def wrapper(*a: Any, **kw: Any) -> Any:
            from .config import load_for_call, report_and_exit

            from_cli = not a and not kw
            # git works on the snapshot while this process imports OmegaConf and loads the
            # config: two cores, half the start-up.
            early = EarlySnapshot.start(own.merged(options_of(wrapper)).snapshot)
            cfg, cli_args = load_for_call(wrapper, source, a, kw)
            if cfg is None:
                return None
            opts = own.merged(options_of(wrapper))
            if cli_args is not None and cli_args.needed:
                opts.needed = True
            try:
                if batch_requested(wrapper, cli_args):
                    # --task-to/--tasks/--n-jobs/--executor/... or @tether.parallel: a batch.
                    from .executors.parallel import run_decorated

                    return run_decorated(
                        wrapper,
                        inner,
                        opts,
                        cfg,
                        cli_args,
                        runs_dir=runs_dir,
                        early=early,
                        from_cli=from_cli,
                    )
                return run_for_call(
                    inner,
                    opts,
                    (cfg,),
                    {},
                    runs_dir=runs_dir,
                    debug=debug,
                    new_run=True,
                    early=early,
                )
            except TetherError as exc:
                if from_cli:
                    report_and_exit(exc)
                raise
            except (KeyboardInterrupt, Terminated) as exc:
                if not from_cli:
                    raise
                print(f"\ntether: run stopped ({type(exc).__name__})", file=sys.stderr)
                raise SystemExit(130 if isinstance(exc, KeyboardInterrupt) else 143)

        setattr(wrapper, ATTR, options_of(func))
        wrapper.__tether_runner__ = True  # type: ignore[attr-defined]
        wrapper.__tether_config_source__ = source  # type: ignore[attr-defined]
        wrapper.__tether_extra_flags__ = EXECUTOR_FLAGS  # type: ignore[attr-defined]
        from .config import add_cli

        add_cli(wrapper)
        return wrapper

    return decorate(fn) if fn is not None else decorate
