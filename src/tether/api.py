"""Runs from Python: `with tether.start_run(cfg) as run:` and `@tether.experiment(...)`.

Both create the same record: run folder, run.lock (resolved config, command, environment,
source snapshot), state.json moving pending -> running -> completed/failed/terminated, output
teed into output.log, and an index row kept in step.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .errors import TetherError
from .lock import SourceRecord
from .store import RunRecord, Store, open_store
from .store.layout import METRICS, OUTPUT, SUMMARY, find_project_file
from .store.state import RunState, hostname, now_iso, proc_start_time

log = logging.getLogger("tether")

_MISSING_MARKS = (None, "???", "")


class Terminated(BaseException):
    """Raised in the main thread when the run receives SIGTERM."""


class Run:
    """The handle a running experiment gets: its folder, config and a few record helpers."""

    def __init__(self, store: Store, record: RunRecord, cfg: Any) -> None:
        self.store = store
        self.record = record
        self.cfg = cfg
        self._summary: dict[str, dict[str, Any]] = {}
        self._metrics_fh: Any = None
        self._last_flush = 0.0
        self._lock = threading.Lock()

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def dir(self) -> Path:
        return self.record.dir

    @property
    def name(self) -> str:
        return self.record.name

    def path(self, *parts: str) -> Path:
        return self.dir.joinpath(*parts)

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, name={self.name!r}, dir={str(self.dir)!r})"

    # -- attributes -------------------------------------------------------------------------
    def set_label(self, label: str) -> None:
        self.store.add_attr(self.record, "label", label)

    def add_tag(self, *tags: str) -> None:
        for tag in tags:
            self.store.add_attr(self.record, "tag", tag)

    def note(self, text: str) -> None:
        self.store.add_attr(self.record, "note", text)

    # -- metrics ----------------------------------------------------------------------------
    def log_metrics(self, values: dict[str, Any], step: int | None = None) -> None:
        """Append one row to metrics.jsonl and keep last/min/max per key for summary.json."""
        row: dict[str, Any] = {"t": round(time.time(), 3)}
        if step is not None:
            row["step"] = int(step)
        with self._lock:
            for key, value in values.items():
                number = float(value.item() if hasattr(value, "item") else value)
                row[key] = number
                stats = self._summary.get(key)
                if stats is None:
                    self._summary[key] = {"last": number, "min": number, "max": number}
                else:
                    stats["last"] = number
                    stats["min"] = min(stats["min"], number)
                    stats["max"] = max(stats["max"], number)
                if step is not None:
                    self._summary[key]["step"] = int(step)
            if self._metrics_fh is None:
                self._metrics_fh = open(self.path(METRICS), "a", encoding="utf-8")  # noqa: SIM115
            self._metrics_fh.write(json.dumps(row) + "\n")
            self._metrics_fh.flush()
            if time.monotonic() - self._last_flush > 2.0:
                self._flush_summary()

    def _flush_summary(self) -> None:
        from .fsio import atomic_write_json

        self._last_flush = time.monotonic()
        if not self._summary:
            return
        summary = dict(self.record.summary)
        summary["metrics"] = {k: dict(v) for k, v in self._summary.items()}
        atomic_write_json(self.path(SUMMARY), summary, durable=False)
        self.record.summary = summary
        self.store.index.upsert(self.record)

    def flush(self) -> None:
        with self._lock:
            self._flush_summary()
            if self._metrics_fh is not None:
                self._metrics_fh.flush()

    def _close(self) -> None:
        self.flush()
        if self._metrics_fh is not None:
            self._metrics_fh.close()
            self._metrics_fh = None


def _config_container(cfg: Any) -> dict[str, Any]:
    if cfg is None:
        return {}
    if isinstance(cfg, dict) and not hasattr(cfg, "_get_node"):
        return dict(cfg)
    from .config import to_container

    return to_container(cfg)


def _explicit_save_dir(container: dict[str, Any]) -> Path | None:
    value = container.get("save_dir")
    if value in _MISSING_MARKS:
        return None
    return Path(os.path.expanduser(str(value))).absolute()


def _fill_save_dir(cfg: Any, container: dict[str, Any], run_dir: Path) -> None:
    container["save_dir"] = str(run_dir)
    if cfg is None:
        return
    if isinstance(cfg, dict):
        cfg["save_dir"] = str(run_dir)
        return
    from omegaconf import OmegaConf

    OmegaConf.update(cfg, "save_dir", str(run_dir), force_add=True)


def _snapshot(run_id: str, repos: list[str] | None) -> list[SourceRecord]:
    from .capture import source

    out: list[SourceRecord] = []
    project = find_project_file()
    root = project.parent if project else None
    for repo in repos or ["."]:
        path = Path(repo).absolute()
        if source.git_top(path) is None:
            if repos:
                raise TetherError(f"snapshot: {repo} is not inside a git repository")
            continue  # a default snapshot outside git records nothing (source copy: later)
        out.append(source.snapshot_repo(path, run_id, root))
    return out


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


@contextlib.contextmanager
def start_run(
    cfg: Any = None,
    *,
    name: str | None = None,
    runs_dir: str | os.PathLike[str] | None = None,
    snapshot: bool | list[str] = True,
    label: str | None = None,
    tags: tuple[str, ...] | list[str] = (),
    parent: str | None = None,
    capture_output: bool = True,
    command: list[str] | None = None,
    on_error: Callable[[BaseException], None] | None = None,
) -> Iterator[Run]:
    """Create a run for `cfg` (a DictConfig or dict) and record how it ends.

    `save_dir` in the config, when set, is the run folder; when absent or `???` tether fills it
    with the run folder so the code can write its outputs there.
    """
    from .capture.environment import capture_environment

    store = open_store(runs_dir)
    container = _config_container(cfg)
    explicit_dir = _explicit_save_dir(container)
    run_name = name or _default_name()
    lock = store.new_lock(
        run_name,
        command=command if command is not None else [Path(sys.executable).name, *sys.argv],
        env=capture_environment(),
        parent=parent,
    )
    run_dir = explicit_dir or store.run_dir(lock.id)
    _fill_save_dir(cfg, container, run_dir)
    lock.config = container
    if snapshot:
        lock.sources = _snapshot(lock.id, snapshot if isinstance(snapshot, list) else None)
    record = store.create(lock, run_dir=explicit_dir)
    run = Run(store, record, cfg)
    if label:
        run.set_label(label)
    if tags:
        run.add_tag(*tags)

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
        try:
            run._close()
        finally:
            if capture is not None:
                capture.stop()
            state = record.state
            state.status = status
            state.exit_code = exit_code
            state.stopped = now_iso()
            state.error = error
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


def experiment(
    fn: Callable[..., Any] | None = None,
    *,
    config: Any = None,
    defaults: Any = None,
    name: str | None = None,
    snapshot: bool | list[str] = True,
    runs_dir: str | os.PathLike[str] | None = None,
    label: str | None = None,
    tags: tuple[str, ...] | list[str] = (),
    debug: bool = True,
) -> Any:
    """The composite decorator: config command line + run record + snapshot + unsafe_debug.

    The function takes `cfg`, or `cfg, run`. From the command line, bad input prints one line and
    exits 2; an exception in the function marks the run failed and propagates.
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        from .config import _locate

        source = defaults if defaults is not None else _locate(config, func)
        wants_run = len(inspect.signature(func).parameters) >= 2
        run_name = name or _function_run_name(func)

        @functools.wraps(func)
        def wrapper(*a: Any, **kw: Any) -> Any:
            from .config import load_for_call, report_and_exit
            from .debug import post_mortem

            from_cli = not a and not kw
            cfg = load_for_call(wrapper, source, a, kw)
            if cfg is None:
                return None
            try:
                with start_run(
                    cfg,
                    name=run_name,
                    runs_dir=runs_dir,
                    snapshot=snapshot,
                    label=label,
                    tags=tags,
                    on_error=post_mortem if debug else None,
                ) as run:
                    return func(cfg, run) if wants_run else func(cfg)
            except TetherError as exc:
                if from_cli:
                    report_and_exit(exc)
                raise
            except (KeyboardInterrupt, Terminated) as exc:
                if not from_cli:
                    raise
                print(f"\ntether: run stopped ({type(exc).__name__})", file=sys.stderr)
                raise SystemExit(130 if isinstance(exc, KeyboardInterrupt) else 143)

        wrapper.__tether_config_source__ = source  # type: ignore[attr-defined]
        return wrapper

    return decorate(fn) if fn is not None else decorate
