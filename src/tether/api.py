"""The decorators: `@tether.experiment`, the stackable ones and `@tether.mlflow`, thin sugar
over session/.

The run itself (record, lifecycle, attach) is made by tether.session.start, a finished one is
re-opened by tether.session.open; this module only turns a decorated function's options and
command line into a call of it.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

# Only what decorating a function needs is imported here. The run machinery (session.start:
# the store, SQLite, the environment record) and batches load inside the wrapper, after
# EarlySnapshot has started git in a thread: git snapshots while Python imports, and a script's
# `--help` or a bad override costs neither.
from .batches.flags import EXECUTOR_FLAGS, PARALLEL_ATTR, ParallelOptions, batch_requested
from .capture.snapshot import EarlySnapshot
from .config.cli import add_cli, load_for_call, locate_config, report_and_exit
from .context import current_run, run_env_of
from .errors import TetherError
from .session.exits import Terminated
from .session.options import ATTR, RunOptions, SnapshotOptions, options_of

if TYPE_CHECKING:
    from .track.sinks.mlflow import MlflowSink


# -- the stackable decorators -----------------------------------------------------------------
def _with_options(
    fn: Callable[..., Any], update: Callable[[RunOptions], None]
) -> Callable[..., Any]:
    opts = dataclasses.replace(options_of(fn))
    opts.snapshot = dataclasses.replace(opts.snapshot)
    opts.stages = dict(opts.stages)
    opts.data_keys = list(opts.data_keys)
    opts.data_paths = list(opts.data_paths)
    update(opts)
    if getattr(fn, "__tether_runner__", False):
        setattr(fn, ATTR, opts)
        return fn

    @functools.wraps(fn)
    def standalone(*args: Any, **kwargs: Any) -> Any:
        from .session.start import run_for_call

        return run_for_call(fn, getattr(standalone, ATTR), args, kwargs)

    setattr(standalone, ATTR, opts)
    standalone.__tether_runner__ = True  # type: ignore[attr-defined]
    return standalone


def snapshot(
    fn: Callable[..., Any] | None = None,
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    repos: Sequence[str] = (),
    enabled: bool = True,
    max_file_size: str | int | None = None,
) -> Any:
    """Snapshot the source (git working tree, or a copy outside git) into the run record.
    Untracked files above `max_file_size` ("50MB" by default, 0: no limit) are left out."""

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        def update(o: RunOptions) -> None:
            o.snapshot = SnapshotOptions(
                enabled, list(include), list(exclude), list(repos), max_file_size
            )

        return _with_options(f, update)

    return decorate(fn) if fn is not None else decorate


def track_data(
    *keys: str,
    paths: Sequence[str] = (),
    background: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Hash the data at these config keys (and explicit `paths`) into run.lock."""

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        def update(o: RunOptions) -> None:
            o.data_keys += [k for k in keys if k not in o.data_keys]
            o.data_paths += [p for p in paths if p not in o.data_paths]
            o.background_hash = o.background_hash or background

        return _with_options(f, update)

    return decorate


def previous_stage(
    name: str, key: str | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Consume an upstream run: config `key` holds its id, folder or name (default: the latest
    completed run named `name`); the key then holds the upstream folder."""

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        def update(o: RunOptions) -> None:
            o.stages[name] = key

        return _with_options(f, update)

    return decorate


# -- batches ----------------------------------------------------------------------------------
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
    """Run the decorated main as a batch: one child run per task (tether.batches.decorated).

    The arguments are defaults of the executor flags (`--task-to`, `--tasks`, `--tasks-key`,
    `--executor`, `--n-jobs`, `--slurm-config`; the command line wins) and every call is a
    batch. Over `@tether.experiment` it only sets those defaults; used alone, it turns
    `main(cfg)` into a batch over `cfg.tasks` with a run record like `@tether.experiment`'s.
    """
    defaults = ParallelOptions(task_to, tasks, tasks_key, executor, n_jobs, slurm_config)

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        if getattr(f, "__tether_runner__", False):
            # Over @experiment (or another runner): it reads these defaults when it is called.
            setattr(f, PARALLEL_ATTR, defaults)
            f.__tether_extra_flags__ = EXECUTOR_FLAGS  # type: ignore[attr-defined]
            return f

        @functools.wraps(f)
        def standalone(*a: Any, **kw: Any) -> Any:
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
                from .batches.decorated import run_decorated

                return run_decorated(
                    standalone, inner, options_of(standalone), cfg, cli_args, from_cli=from_cli
                )
            except TetherError as exc:
                if from_cli:
                    report_and_exit(exc)
                raise

        setattr(standalone, PARALLEL_ATTR, defaults)
        standalone.__tether_runner__ = True  # type: ignore[attr-defined]
        standalone.__tether_extra_flags__ = EXECUTOR_FLAGS  # type: ignore[attr-defined]
        add_cli(standalone)
        return standalone

    return decorate(fn) if fn is not None else decorate


# -- MLflow -----------------------------------------------------------------------------------
def mlflow(
    fn: Callable[..., Any] | None = None,
    *,
    run: Any = None,
    new: bool = False,
    tracking_uri: str | None = None,
    experiment: str | None = None,
) -> Any:
    """Log the run of the decorated function to MLflow (naga's decorator), or diagnostics of a
    finished one.

        @tether.experiment(config="conf.yaml")    # or: @tether.experiment(..., mlflow=True)
        @tether.mlflow
        def main(cfg, run): ...

    Inside a run (under `experiment`, `start_run`, or in a function they call) it adds the
    MLflow sink to the run: the run.lock config as params, the metrics the run logs, and at the
    end run.lock, config, output.log and report as artifacts; a run that logs again continues
    its MLflow run. Used alone, the decorated function gets a run of its own, as the other
    decorators do.

        @tether.mlflow(run=True)                  # diag("1"): the run to add to comes first
        def diag(run):
            run.log_metrics({"diag/acc": evaluate(run.path("model.pt"))})

    With `run=` (a RUN spec, or True to take it from the first argument) the function gets the
    finished run re-opened by `tether.open_run` instead: its metrics and artifacts update that
    run's MLflow entry in place, or, with `new=True`, go to a new MLflow run that supersedes it.
    """

    def sink() -> MlflowSink:
        from .track.sinks.mlflow import MlflowSink

        return MlflowSink(tracking_uri=tracking_uri, experiment=experiment)

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        if run is not None and run is not False:

            @functools.wraps(f)
            def diagnostics(*args: Any, **kwargs: Any) -> Any:
                if run is True:
                    if not args:
                        raise TetherError(
                            f"{f.__name__}() needs the run to open as its first argument"
                        )
                    spec, rest = args[0], args[1:]
                else:
                    spec, rest = run, args
                from .session.open import open_run

                with open_run(
                    spec, new=new, mlflow=True, tracking_uri=tracking_uri, experiment=experiment
                ) as opened:
                    return f(opened, *rest, **kwargs)

            return diagnostics

        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            active = current_run()
            if active is not None:
                active.add_sink(sink())
                return f(*args, **kwargs)
            from .session.run import sinks_for_next_run

            with sinks_for_next_run(sink):
                if getattr(f, "__tether_runner__", False):
                    return f(*args, **kwargs)  # it starts the run, which takes the sink
                from .session.start import run_for_call

                return run_for_call(f, options_of(f), args, kwargs)

        wrapper.__tether_runner__ = False  # type: ignore[attr-defined]
        return wrapper

    return decorate(fn) if fn is not None else decorate


_log_to_mlflow = mlflow  # experiment(mlflow=True): its parameter hides the decorator's name


# -- the composite decorator ------------------------------------------------------------
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
    max_file_size: str | int | None = None,
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
    secrets: list[str] | tuple[str, ...] = (),
) -> Any:
    """The composite decorator: config command line + run record + snapshot + data digests +
    previous stages + unsafe_debug.

    The function takes `cfg`, or `cfg, run`. From the command line, bad input prints one line and
    exits 2; an exception in the function marks the run failed and propagates. With
    `mlflow=True` the run is also logged to MLflow, as `@tether.mlflow` does. `secrets`: config
    keys whose values are recorded redacted (besides the default ones, and `--secret KEY` on
    the command line; see docs/reproducibility.md).
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        source = defaults if defaults is not None else locate_config(config, func)
        own = RunOptions(
            name=name,
            snapshot=SnapshotOptions(
                snapshot, list(include), list(exclude), list(repos), max_file_size
            ),
            data_keys=list(data),
            data_paths=list(track),
            background_hash=background_hash,
            stages=dict(stages or {}),
            needed=needed,
            label=label,
            tags=list(tags),
            secrets=list(secrets),
        )
        inner = (
            getattr(func, "__wrapped__", func)
            if getattr(func, "__tether_runner__", False)
            else func
        )
        if mlflow:
            inner = _log_to_mlflow(inner)

        @functools.wraps(func)
        def wrapper(*a: Any, **kw: Any) -> Any:
            from_cli = not a and not kw
            # git works on the snapshot while this process imports OmegaConf and loads the
            # config: two cores, half the start-up.
            # In a process started for a run (TETHER_RUN_DIR) the run attaches: no snapshot.
            attaching = run_env_of() is not None
            early = (
                None if attaching else EarlySnapshot.start(own.merged(options_of(wrapper)).snapshot)
            )
            cfg, cli_args = load_for_call(wrapper, source, a, kw)
            if cfg is None:
                return None
            opts = own.merged(options_of(wrapper))
            if cli_args is not None and cli_args.needed:
                opts.needed = True
            if cli_args is not None and cli_args.secrets:
                opts.secrets = [*opts.secrets, *cli_args.secrets]
            try:
                if batch_requested(wrapper, cli_args):
                    # --task-to/--tasks/--n-jobs/--executor/... or @tether.parallel: a batch.
                    from .batches.decorated import run_decorated

                    batch = run_decorated
                    if getattr(getattr(cli_args, "plan", None), "search", None) is not None:
                        # -m --optimize: the study gives each task's point (tether.search)
                        from .search.multirun import run_multirun_search as batch
                    return batch(
                        wrapper,
                        inner,
                        opts,
                        cfg,
                        cli_args,
                        runs_dir=runs_dir,
                        early=early,
                        from_cli=from_cli,
                    )
                from .session.start import run_for_call

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
        add_cli(wrapper)
        return wrapper

    return decorate(fn) if fn is not None else decorate
