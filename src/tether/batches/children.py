"""Each task of a decorated main's batch is a child run of the batch's parent run.

A child run is a run like any other (run.lock, state.json, output.log, metrics, an index row)
with `parent` set to the batch. What is the same for every task is taken once per batch and
once per worker, never per task:

* the source snapshot: children reuse the parent's `sources` record (and its data digests and
  upstream stages), so there is one snapshot per batch;
* the environment record (`env`, with this worker's host and job id): once per worker;
* the YAML of run.lock: the parts every child shares are rendered once per worker; only the id,
  times and config are rendered per task;
* the config: one DictConfig per worker, updated in place for each task (the task item at
  `--task-to`, `save_dir`), and rebuilt only if a task changed it;
* index rows: written by a thread of the worker in one transaction every quarter second, so a
  short task's `running` row is superseded before it is ever written;
* durability: child files are replaced atomically but not fsynced one by one; the worker
  flushes them to disk in bulk (`os.sync`) every few seconds, and once more when it ends,
  without waiting for that one (`sync_in_background`). After a crash a child whose state.json
  was lost reads as `unknown`, and the task pool, not the child files, says which tasks are
  done.

A task interrupted by its worker's stop (submitit's checkpoint on preemption or timeout, SIGTERM
to a PBS job) is not done: its run closes this attempt (`terminated`), waits `queued`, and the
task goes back to the pool with its run, after the run's metrics are flushed. The attempt that
claims it next (the requeued job, or another worker) continues the same run: same id and
folder, one more attempt in state.json, History resuming after the last recorded step.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import context
from ..capture.environment import capture_environment
from ..capture.resolvers import collecting, register
from ..capture.secrets import redact_config, run_policy
from ..clock import now_iso
from ..config.compose import to_container
from ..executors.taskpool import Claim, Outcome
from ..fsio import atomic_write_bytes, made_folder
from ..lock import RunLock, read_lock
from ..session.exits import Terminated
from ..session.resolve import has_interpolation
from ..session.run import Run
from ..store import Store
from ..store.layout import OUTPUT, STATE
from ..store.records import Attributes, RunRecord
from ..store.state import (
    LIVE,
    Attempt,
    RunState,
    end_attempt,
    hostname,
    read_state,
    start_attempt,
)
from .childlock import ChildLock, LockParts
from .childoutput import captured
from .tasks import (
    Shape,
    config_shape,
    inject,
    merged,
    same_shape,
    set_leaf,
    task_keys,
    with_task,
)

SYNC_EVERY_S = 5.0
FLUSH_EVERY_S = 0.25
LOCK = "run.lock"
INTERRUPTED = "interrupted (preempted or requeued): its task went back to the pool"


class Interrupted(BaseException):
    """Raised into a task when its worker is told to stop."""


# -- records ----------------------------------------------------------------------------------
def write_state(run_dir: Path, state: RunState) -> None:
    """state.json, replaced atomically, not fsynced (see the module doc), compact JSON (the
    C encoder: `indent` would take the slow pure-Python one)."""
    state.updated = now_iso()
    if state.status not in LIVE:
        end_attempt(state)
    data = json.dumps(state.to_dict(), sort_keys=True) + "\n"
    atomic_write_bytes(f"{run_dir}/{STATE}", data.encode("utf-8"), durable=False)


def write_lock_text(run_dir: Path, text: str) -> None:
    """run.lock, replaced atomically, not fsynced (see the module doc)."""
    atomic_write_bytes(f"{run_dir}/{LOCK}", text.encode("utf-8"), durable=False)


def make_run_dir(run_dir: Path) -> None:
    """The folder of a child run. One made here holds no temp of a killed write, so the atomic
    writes into it skip their sweep; one that was there already (a run made ahead, or one an
    interrupted attempt left) is swept by the first of them."""
    try:
        os.mkdir(run_dir)
    except FileExistsError:
        return
    except FileNotFoundError:  # the runs root itself is gone: make it again
        run_dir.mkdir(parents=True, exist_ok=True)
    made_folder(run_dir)


def _snapshot(record: RunRecord) -> RunRecord:
    return RunRecord(
        record.id,
        record.dir,
        record.lock,
        _copy_state(record.state),
        record.attrs,
        dict(record.summary),
    )


def _copy_state(state: RunState) -> RunState:
    """`state.copy()` (its attempts copied too) without the round trip through a dict (a
    fifth of the time: two copies a task)."""
    out = object.__new__(RunState)
    out.__dict__.update(state.__dict__)
    attempts = []
    for attempt in state.attempts:
        copied = object.__new__(Attempt)
        copied.__dict__.update(attempt.__dict__)
        attempts.append(copied)
    out.attempts = attempts
    return out


class Recorder:
    """A worker's thread that writes what need not hold up a task: index rows (many per
    transaction), the `running` state of tasks still running after `FLUSH_EVERY_S` (a short
    task goes from run.lock straight to its final state.json), and the periodic `os.sync`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._rows: dict[str, RunRecord] = {}
        self._started: dict[str, tuple[float, RunRecord]] = {}
        # Held while a state.json is written, by either thread; re-entrant, because submitit's
        # checkpoint runs in a signal handler that may interrupt the main thread holding it.
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = False
        self._last_sync = time.monotonic()
        self._dirty = False
        self._index: Any = None
        self._journal = Store(root).journal
        self._thread = threading.Thread(target=self._loop, name="tether-records", daemon=True)
        self._thread.start()

    def started(self, record: RunRecord) -> None:
        with self._lock:
            self._started[record.id] = (time.monotonic(), _snapshot(record))

    def intend(self, run_id: str, kind: str = "state") -> None:
        """Announce in the change journal that a run's records are about to change, before
        they are written: a worker killed before the index row leaves no lag (store/journal).
        `kind` "created" where run.lock is (re)written."""
        self._journal.append(run_id, kind)

    def ended(self, record: RunRecord) -> None:
        """Write the final state.json now (it supersedes a pending `running` one)."""
        with self._lock:
            self._started.pop(record.id, None)
            self.intend(record.id)
            write_state(record.dir, record.state)
            self._rows[record.id] = _snapshot(record)
            self._dirty = True

    def put(self, record: RunRecord) -> None:
        with self._lock:
            self._rows[record.id] = _snapshot(record)
            self._dirty = True

    def flush(self, *, running_older_than: float | None = FLUSH_EVERY_S) -> None:
        """Write what is due (in the recorder's thread: SQLite connections stay in theirs)."""
        now = time.monotonic()
        with self._lock:
            for run_id, (t0, record) in list(self._started.items()):
                if running_older_than is None or now - t0 >= running_older_than:
                    self.intend(run_id)
                    write_state(record.dir, record.state)
                    self._rows.setdefault(run_id, record)
                    del self._started[run_id]
            batch = list(self._rows.values())
            self._rows.clear()
        if not batch:
            return
        if self._index is None:
            self._index = Store(self.root).open_index()
        try:
            self._index.upsert_many(batch, kind="state", announced=True)
        except Exception as exc:  # the index is a cache: `tether runs reindex` rebuilds it
            print(f"tether: index not updated ({exc})", file=sys.stderr)

    def _loop(self) -> None:
        while True:
            self._wake.wait(FLUSH_EVERY_S)
            self._wake.clear()
            if self._stop:
                break
            self.flush()
            if self._dirty and time.monotonic() - self._last_sync > SYNC_EVERY_S:
                self._sync()
        self.flush(running_older_than=None)
        if self._index is not None:
            self._index.close()
            self._index = None
        if self._dirty:
            # The worker's last files: their writeback starts now, but the batch does not wait
            # for it (sync(2) waits for every dirty page of the machine, other programs' too:
            # seconds on a busy disk); once started, the kernel finishes it even if this
            # process exits first.
            sync_in_background()

    def _sync(self) -> None:
        self._dirty = False
        self._last_sync = time.monotonic()
        os.sync()

    def wake(self) -> None:
        self._wake.set()

    def close(self) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join(timeout=60)


_syncing = threading.Lock()  # held by the one background sync in flight
_sync_again = threading.Event()  # asked for while one was in flight: one more after it


def sync_in_background() -> None:
    """`os.sync()` in a thread of its own, not waited for; one at a time, and one more after
    it when asked for meanwhile (so the files written before this call are covered)."""
    if not _syncing.acquire(blocking=False):
        _sync_again.set()
        return

    def sync() -> None:
        while True:
            try:
                while True:
                    _sync_again.clear()
                    os.sync()
                    if not _sync_again.is_set():
                        break
            finally:
                _syncing.release()
            # Asked for between the last look and the release: go on, unless another took it.
            if not _sync_again.is_set() or not _syncing.acquire(blocking=False):
                return

    threading.Thread(target=sync, name="tether-sync", daemon=True).start()


# -- the runner -------------------------------------------------------------------------------
def wants_run(func: Callable[..., Any]) -> bool:
    try:
        return len(inspect.signature(func).parameters) >= 2
    except (TypeError, ValueError):
        return False


class ChildRuns:
    """The TaskRunner of a decorated main's batch: each task calls `func(cfg[, run])` in a child
    run.

    Pickled to every worker: it carries the function, the base config (the parent's, without
    the task list, interpolations unresolved), where to put each item, and where the parent is.
    """

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        base_cfg: Any,
        task_to: str,
        store_root: str,
        parent_dir: str,
        name: str,
        secrets: tuple[str, ...] = (),
    ) -> None:
        self.func = func
        self.secrets = secrets  # declared secret keys (capture.secrets): the locks redact them
        self.base_cfg = base_cfg
        self.task_to = task_to
        self.store_root = store_root
        self.parent_dir = parent_dir
        self.name = name
        self._ready = False

    def __getstate__(self) -> dict[str, Any]:
        keep = ("func", "base_cfg", "task_to", "store_root", "parent_dir", "name", "secrets")
        return {k: self.__dict__[k] for k in keep}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._ready = False

    # -- once per worker --------------------------------------------------------------------
    def setup(self) -> None:
        if self._ready:
            return
        register()
        self.store = Store(self.store_root)
        self.root = Path(self.store_root)
        parent = read_lock(Path(self.parent_dir))
        self.parent_lock = parent
        self.env = capture_environment()
        self._secrets = run_policy(self.secrets)
        self.wants_run = wants_run(self.func)
        self.stage_dirs: dict[str, Path] = {}
        for st in parent.stages:
            with contextlib.suppress(Exception):
                self.stage_dirs[st.name] = self.store.load(st.run).dir
        from omegaconf import DictConfig, OmegaConf

        self._pristine = self._as_config(self.base_cfg)
        self._cfg = self._pristine.copy()
        self._shape: Shape | None = None  # the worker's config as the last task was given it
        raw: dict[str, Any] = OmegaConf.to_container(self._pristine, resolve=False)  # type: ignore[assignment]
        self._interpolated = has_interpolation(raw)
        # A multirun's task_to names several keys (tasks.task_keys), its items map each to a value.
        keys = task_keys(self.task_to) or [self.task_to]
        self._paths = [k.removeprefix("+").split(".") for k in keys]
        self._path = self._paths[0]
        target = (
            OmegaConf.select(self._pristine, ".".join(self._path), default=None)
            if len(keys) == 1
            else None
        )
        self._pristine_target: dict[str, Any] | None = (
            OmegaConf.to_container(target, resolve=False)  # type: ignore[assignment]
            if isinstance(target, DictConfig)
            else None
        )
        # The config every task shares, converted, redacted and rendered once: a task patches
        # only the top-level keys it sets (its item's, `save_dir`), so its cost does not grow
        # with the config (a 200-element list converted per task cost 3 ms).
        self._base = raw
        self._base_redacted = redact_config(raw, self._secrets)
        # run.lock, rendered once: everything but id, created and config, in the record's
        # order, and the config's top-level keys but those a task sets (`childlock`).
        shared = self.new_lock("", {}, "")
        self._lock_parts = LockParts(shared, None if self._interpolated else self._base_redacted)
        self._writer = Recorder(self.root)
        self._interrupted: set[str] = set()
        self._ready = True

    def teardown(self) -> None:
        if self._ready:
            self._writer.close()
            self._ready = False

    @staticmethod
    def _as_config(cfg: Any) -> Any:
        """The batch's config as a DictConfig that the worker only ever copies: the one it was
        given, as it is (a copy of a 200-element list costs ~3 ms)."""
        from omegaconf import OmegaConf

        if cfg is None:
            return OmegaConf.create({})
        if OmegaConf.is_config(cfg):
            return cfg
        return OmegaConf.create(copy.deepcopy(cfg))

    # -- one task ---------------------------------------------------------------------------
    def config_for(self, item: Any, run_dir: Path) -> tuple[Any, dict[str, Any]]:
        """The task's DictConfig (the worker's, updated in place) and its container.

        OmegaConf is slow to build and convert configs (a millisecond or more for a small one,
        more with the config's size), so the worker keeps one DictConfig and sets the task's
        keys in it, and the container is the batch's with those keys set. If the previous task
        changed its DictConfig (its shape, `config_shape`, but for the keys set per task,
        differs from the one it was given), the DictConfig is rebuilt from the batch's first.
        """
        if isinstance(item, dict) and self._pristine_target is not None:
            # A mapping item merges into the batch's mapping, not into the last task's.
            item = merged(self._pristine_target, item)
        skip = (*self._paths, ["save_dir"])  # set again for each task: not part of the shape
        if self._shape is not None and not same_shape(config_shape(self._cfg, skip), self._shape):
            self._cfg, self._shape = self._pristine.copy(), None  # the last task changed it
        cfg = self._cfg
        inject(cfg, self.task_to, item, merge=False)
        set_leaf(cfg, "save_dir", str(run_dir))
        if self._shape is None:
            self._shape = config_shape(cfg, skip)
        if not self._interpolated:
            container = with_task(self._base, self.task_to, item)
            container["save_dir"] = str(run_dir)
            return cfg, container
        with collecting(self.store_root):
            container = to_container(cfg)
        return cfg, container

    def lock_text(self, lock: RunLock) -> str:
        """run.lock's YAML, identical to `lock.to_yaml()`, from the parts rendered once: the
        shared keys once per worker, the config's top-level keys once per worker but for
        those a task sets (when the config has no interpolation to resolve)."""
        return self._lock_parts.text(lock)

    def new_lock(self, run_id: str, config: dict[str, Any], created: str | None = None) -> RunLock:
        p = self.parent_lock
        lock = ChildLock(
            id=run_id,
            name=self.name,
            created=created or now_iso(),
            command=list(p.command),
            config=self._redacted(config),  # the task's code keeps the values
            sources=p.sources,
            data=p.data,
            stages=p.stages,
            env=self.env,
            parent=p.id,
            project_id=p.project_id,
        )
        lock.parts = getattr(self, "_lock_parts", None)
        return lock

    def _redacted(self, config: dict[str, Any]) -> dict[str, Any]:
        """`redact_config(config, ...)`, from the batch's config redacted once: only the
        top-level keys a task sets are redacted again (redaction goes key by key, so a
        top-level key's result does not depend on the others)."""
        base = getattr(self, "_base_redacted", None)
        if base is None or self._interpolated or not config:
            return redact_config(config, self._secrets)
        raw = self._base
        out: dict[str, Any] = {}
        for k, v in config.items():
            if k in base and raw.get(k) is v:  # the batch's value itself: redacted already
                out[k] = base[k]
            else:
                out.update(redact_config({k: v}, self._secrets))
        return out

    def prepare(self, run_id: str, item: Any, status: str = "queued") -> RunRecord:
        """Make a child run ahead of its task (under a scheduler: status `queued`)."""
        run_dir = self.root / run_id
        self._writer.intend(run_id, "created")
        make_run_dir(run_dir)
        _, container = self.config_for(item, run_dir)
        lock = self.new_lock(run_id, container)
        write_lock_text(run_dir, self.lock_text(lock))
        record = RunRecord(
            run_id, run_dir, lock, RunState(status=status, host=hostname()), Attributes(), {}
        )
        self._writer.ended(record)  # writes state.json and queues the index row
        return record

    def run(self, claim: Claim) -> Outcome:
        assert claim.run is not None
        run_id = claim.run
        run_dir = self.root / run_id
        created = None
        previous: RunState | None = None
        if claim.prepared:  # made ahead (queued), or continued after an interrupted attempt
            with contextlib.suppress(Exception):
                created = read_lock(run_dir).created
            previous = read_state(run_dir)
        make_run_dir(run_dir)
        try:
            cfg, container = self.config_for(claim.item, run_dir)
        except Exception as exc:  # this task's config does not resolve: the task fails
            self._cfg, self._shape = self._pristine.copy(), None
            return self._failed_before_start(claim, run_dir, exc, created, previous)
        # A first attempt from what this worker read of itself once (no /proc read a task).
        state = start_attempt(previous)
        continued = len(state.attempts) > 1
        if continued:
            # The run goes on as it began: its run.lock stays, its summary is where History's
            # statistics go on from (the attempts record where each attempt ran).
            lock = read_lock(run_dir)
            record = self.store.load_dir(run_dir, lock=lock)
            record.state = state
        else:
            # A run made ahead (queued) gets its lock again now, with this worker's env (host,
            # job id): run.lock is final from the moment the run starts.
            lock = self.new_lock(run_id, container, created)
            self._writer.intend(run_id, "created")
            write_lock_text(run_dir, self.lock_text(lock))
            record = RunRecord(run_id, run_dir, lock, state, Attributes(), {})
        self._writer.started(record)
        run = Run(self.store, record, cfg, self.stage_dirs)
        token = context.enter(run)
        status, exit_code, error, result, trace = "completed", 0, None, None, None
        try:
            with captured(run_dir / OUTPUT) as log:
                try:
                    result = self.func(cfg, run) if self.wants_run else self.func(cfg)
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
                    if run_id in self._interrupted:
                        status, exit_code, error = "terminated", 143, "interrupted (requeued)"
                        raise
                    if code != 0:
                        status, exit_code, error = "failed", code, f"SystemExit({exc.code})"
                        trace = "".join(traceback.format_exception(exc))
                        log.write("tether", trace)
                except (KeyboardInterrupt, Interrupted) as exc:
                    status, exit_code, error = "terminated", 130, type(exc).__name__
                    raise
                except BaseException as exc:
                    if isinstance(exc, Terminated) or run_id in self._interrupted:
                        status, exit_code, error = "terminated", 143, type(exc).__name__
                        raise
                    status, exit_code = "failed", 1
                    error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                    trace = "".join(traceback.format_exception(exc))
                    log.write("tether", trace)
        finally:
            context.leave(token)
            try:
                run._close(status)  # metrics flushed before the task can go back to the pool
            finally:
                record = run.record
                record.state = state
                state.status, state.exit_code, state.error = status, exit_code, error
                state.stopped = now_iso()
                if run_id in self._interrupted and status != "completed":
                    # Not done: this attempt ends, the run waits for the next one.
                    end_attempt(state, "terminated", 143, INTERRUPTED)
                    state.status, state.stopped = "queued", None
                    state.error = "waiting to continue: " + INTERRUPTED
                self._writer.ended(record)
        if status == "completed":
            return Outcome("completed", run_id, result=result)
        return Outcome(status, run_id, error=trace or error)

    def _failed_before_start(
        self,
        claim: Claim,
        run_dir: Path,
        exc: Exception,
        created: str | None,
        previous: RunState | None,
    ) -> Outcome:
        """A run for a task whose config cannot be made, recorded failed with the reason."""
        assert claim.run is not None
        lock = self.new_lock(claim.run, {"task": claim.item}, created)
        self._writer.intend(claim.run, "created")
        write_lock_text(run_dir, self.lock_text(lock))
        error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        state = start_attempt(previous)
        state.status, state.exit_code = "failed", 1
        state.stopped, state.error = now_iso(), error
        self._writer.ended(RunRecord(claim.run, run_dir, lock, state, Attributes(), {}))
        return Outcome("failed", claim.run, error="".join(traceback.format_exception(exc)))

    def interrupted(self, claim: Claim) -> bool:
        """The worker stops in the middle of this task (preempted, timed out, stopped; called
        from a signal handler). The task function unwinds (submitit's exit, SIGTERM's), and the
        end of `run` records the attempt `terminated` and the run `queued`, to be continued;
        True: the worker hands the task back after that, not now."""
        if claim.run is None or not self._ready:
            return False
        self._interrupted.add(claim.run)
        return True
