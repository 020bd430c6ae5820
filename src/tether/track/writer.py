"""The writer behind History: the row buffer, per-key statistics, metrics.jsonl, summary.json,
the sinks, and the background thread that flushes them.

All the History handles of one run share one Core (kept on the run as `_history_core`). The
thread wakes every `flush_every` seconds, when `flush_rows` rows wait, or when asked
(`request`), and writes the rows, the statistics and the sinks; cores still open at interpreter
exit are closed then. With reduce=True, rows are reduced across ranks in the caller's thread
(`reduce_now`) before they reach the buffer.

A run's metrics.jsonl may hold rows already when its Core is made: the run is continued (a
requeued batch task, `tether run --restart`, a process attached to the run). The Core then
resumes after the file's last step (`metrics_file.last_step`, read from the end of the file):
rows at earlier steps, and keys already recorded at that step, are dropped at flush, so a
training loop that goes back to its last checkpoint never writes a step twice. A finished run
reopened with `open_run` is not continued: rows are added as they come.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import sys
import threading
import time
import warnings
import weakref
from pathlib import Path
from typing import Any

from ..errors import TetherError, disk_full, is_disk_full
from ..fsio import atomic_write_json
from ..store.layout import SUMMARY
from ..store.state import FINISHED
from . import batch as batches
from .batch import Encoder
from .handle import TrackedRun
from .metrics_file import RESERVED, LastStep, count_rows, iter_metrics, last_step, not_recorded
from .reduce import distributed, reduce_rows
from .sinks.base import Row, SinkContext, SinkRunner
from .sinks.jsonl import JsonlSink, dump_rows
from .summary_stats import fold_stats
from .values import NOW, PLAIN, TENSOR, Kind, classify, not_a_number

log = logging.getLogger("tether.history")

_BACKFILL_CHUNK = 5000


# -- the writers of this process ------------------------------------------------------------------
_live: weakref.WeakSet[Core] = weakref.WeakSet()


def _close_all_at_exit() -> None:
    for core in list(_live):
        try:
            core.close(None, timeout=30.0, at_exit=True)
        except Exception:
            pass


atexit.register(_close_all_at_exit)


def _after_fork() -> None:
    # The flush thread does not survive a fork; a child that logs starts its own.
    for core in list(_live):
        core._thread = None
        core._cond = threading.Condition()
        core._wake = threading.Event()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


class Core:
    """The buffer, statistics, files, sinks and flush thread behind one or more History
    handles (all the History objects of one run share it)."""

    def __init__(
        self,
        *,
        run: TrackedRun | None,
        path: Path | None,
        flush_every: float,
        flush_rows: int,
    ) -> None:
        self.run = run
        self.path = path
        # A run continued in a later attempt (requeue, --restart): where its file stood. Not
        # for a finished run (open_run adds to it), nor in the first attempt, where other
        # writers of the same run (an operation's scanned output scalars) may already have
        # written rows that must not hide the script's own.
        state = run.record.state if run is not None else None
        self.resumed: LastStep | None = (
            last_step(path)
            if state is not None
            and path is not None
            and state.status not in FINISHED
            and len(state.attempts) > 1
            else None
        )
        self.dropped = 0  # rows (or parts of rows) not written again after `resumed`
        self.summary_path = (
            run.dir / SUMMARY if run is not None else (path.parent / SUMMARY if path else None)
        )
        self.flush_every = max(0.0, float(flush_every))
        self.flush_rows = max(1, int(flush_rows))
        self.kinds: dict[str, Kind] = {}
        # key: the type of its last value, for the keys whose values update() keeps as they are
        # (floats, ints, bools, NumPy scalars): a value of that type needs no check.
        self.plain: dict[str, type] = {}
        self.tensors: dict[str, type] = {}  # the same for keys of tensors (Core.check)
        self.warned: set[str] = set()
        # A row per update: its values as logged, `t` and `step` last; the values become numbers
        # at flush, and the keys take the file's order (tether.track.batch).
        self.pending: list[Row] = []
        self.asked = False  # update() woke the thread for a full buffer it has not taken yet
        self.memory: list[Row] | None = [] if path is None else None
        self.file = JsonlSink(path) if path is not None else None
        self.encoder = Encoder()
        self.safe_split = True  # no key holds a "}": batches are encoded in one call
        self.stats: dict[str, dict[str, Any]] = {}
        self.sink_states: dict[str, Any] = {}
        self.summary_extra: dict[str, Any] = {}
        self._load_summary()
        self.runners: list[SinkRunner] = []
        self.new_sinks = False  # open_run(new=True): sinks open fresh destinations
        self.artifacts: list[Path] = []
        self.status: str | None = None  # a finished run's status (open_run)
        self.nrows: int | None = None  # rows in the file; counted when a sink needs it
        self.closed = False
        self.dirty = False  # statistics changed since summary.json was written
        self.last_summary = 0.0
        self.file_error: str | None = None
        self.rank: int | None = None
        # A rank other than 0 writing its own ranks/<rank>/metrics.jsonl: it writes whatever
        # rank it is, and leaves the rows reduced across ranks to rank 0.
        self.per_rank = False
        self.touched: set[str] = set()  # keys this core logged (the rest: summary.json's)
        # reduce=True
        self.reduce_pending: list[Row] = []
        self.reduce_used = False
        self.reduce_every = 1
        self.reduce_since = time.monotonic()
        # the flush thread
        self._thread: threading.Thread | None = None
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._requested = 0
        self._done = 0
        self._closing = False
        self._close_status: str | None = None
        _live.add(self)

    # -- summary ----------------------------------------------------------------------------
    def _load_summary(self) -> None:
        summary: dict[str, Any] = {}
        if self.run is not None:
            summary = dict(self.run.record.summary or {})
        elif self.summary_path is not None and self.summary_path.is_file():
            try:
                loaded = json.loads(self.summary_path.read_text(encoding="utf-8"))
                summary = loaded if isinstance(loaded, dict) else {}
            except (OSError, ValueError):
                summary = {}
        self.stats = {
            k: dict(v) for k, v in (summary.get("metrics") or {}).items() if isinstance(v, dict)
        }
        self.sink_states = dict(summary.get("sinks") or {})
        self.summary_extra = {k: v for k, v in summary.items() if k not in ("metrics", "sinks")}

    def summary(self, on_disk: dict[str, Any] | None = None) -> dict[str, Any]:
        out = dict(self.summary_extra)
        if self.run is not None:
            current = self.run.record.summary or {}
            out.update({k: v for k, v in current.items() if k not in ("metrics", "sinks")})
        metrics = {k: dict(v) for k, v in self.stats.items()}
        if on_disk:
            # Another process writes this run's metrics too (a script attached to it, its
            # owner's output scalars): keep its keys, and its values of keys this core never
            # logged.
            for key, stats in (on_disk.get("metrics") or {}).items():
                if key not in self.touched and isinstance(stats, dict):
                    metrics[key] = dict(stats)
        out["metrics"] = metrics
        sinks = dict(self.sink_states)
        for runner in self.runners:
            sinks[runner.name] = runner.state
        if sinks:
            out["sinks"] = sinks
        else:
            out.pop("sinks", None)
        return out

    def _write_summary(self) -> None:
        self.last_summary = time.monotonic()
        self.dirty = False
        if self.summary_path is None:
            return
        summary = self.summary(self._on_disk() if self.run is not None else None)
        # A connection of this thread's own: SQLite connections stay in their thread. The
        # change is announced before summary.json is written, so a process killed before its
        # index row leaves an entry the next listing applies (coalesced: store/journal.py).
        index = self.run.store.open_index() if self.run is not None else None
        announced = False
        if index is not None and self.run is not None:
            try:
                index.intend(self.run.record.id, "summary")
                announced = True
            except Exception as exc:
                log.debug("live metrics not announced in the change journal: %s", exc)
        try:
            atomic_write_json(self.summary_path, summary, durable=False)
        except OSError as exc:
            if index is not None:
                index.close()
            self._report_file_error(self._write_error(self.summary_path, exc))
            return
        if index is not None and self.run is not None:
            record = self.run.record
            record.summary = summary
            try:
                index.upsert(record, kind="summary", announced=announced)
            except Exception as exc:
                log.debug("index not updated with live metrics: %s", exc)
            finally:
                index.close()

    def _on_disk(self) -> dict[str, Any] | None:
        """summary.json as another process may have left it."""
        assert self.summary_path is not None
        try:
            loaded = json.loads(self.summary_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return loaded if isinstance(loaded, dict) else None

    def _report_file_error(self, message: str) -> None:
        """Say it once on stderr; never raise (the thread outlives a full disk, a lost stderr)."""
        if self.file_error == message:
            return
        self.file_error = message
        line = f"tether: History: {message}\n"
        try:
            sys.stderr.write(line)
            sys.stderr.flush()
        except Exception:
            try:  # the process's own stderr, under any capture
                os.write(2, line.encode("utf-8", "replace"))
            except OSError:
                pass

    def _write_error(self, path: object, exc: BaseException) -> str:
        return disk_full(path) if is_disk_full(exc) else f"{path} not written: {exc}"

    # -- values -----------------------------------------------------------------------------
    def learn(self, key: Any, value: Any) -> Kind:
        if not isinstance(key, str):
            raise TetherError(f"metric keys are strings, not {type(key).__name__} ({key!r})")
        if key in RESERVED:
            raise TetherError(
                f"metric key {key!r} is reserved", "pass the step as update(..., step=N)"
            )
        kind = classify(key, value)
        before = self.kinds.get(key)
        if before is None:
            if "}" in key and self.safe_split:
                self.safe_split = False
                for sink in [self.file, *(r.sink for r in self.runners)]:
                    if isinstance(sink, JsonlSink):
                        sink.safe_split = False
        elif before[2] != kind[2] and key not in self.warned:
            self.warned.add(key)
            warnings.warn(
                f"metric {key!r} changed type from {before[2]} to {kind[2]} "
                "(recorded as numbers all the same; warned once)",
                RuntimeWarning,
                stacklevel=4,
            )
        self.kinds[key] = kind
        self.plain.pop(key, None)
        self.tensors.pop(key, None)
        if kind[1] == PLAIN:
            self.plain[key] = kind[0]
        elif kind[1] == TENSOR:
            self.tensors[key] = kind[0]
        return kind

    def check(self, values: Any) -> dict[str, Any]:
        """The row to buffer for `values` (a mapping) when a value is not of its key's plain
        type: a tensor under a key of tensors (one element, kept without its graph), a new key
        or type (learned: a value that is no number raises here, a change of type warns), or a
        value converted now."""
        row: dict[str, Any] = {}
        plain, tensors = self.plain, self.tensors
        for key, value in values.items():
            kind = type(value)
            if plain.get(key) is kind:
                row[key] = value
            elif tensors.get(key) is kind:
                # Converted at flush, all at once. Not `.item()` here, even on the CPU: torch
                # releases the GIL in it, and taking it back from a busy flush thread can cost
                # the training loop a switch interval (5 ms). `.data`, not `.detach()`, for the
                # same reason: the same view, without the graph (which a buffered row would
                # otherwise keep alive, activations and all, until the flush).
                if value.requires_grad:
                    value = value.data
                if value.numel() != 1:
                    raise not_a_number(key, value, f" (a tensor of {value.numel()} elements)")
                row[key] = value
            else:
                learned = self.learn(key, value)
                if learned[1] == NOW:
                    row[key] = learned[3](value)  # classify's checking converter for its type
                elif learned[1] == TENSOR:
                    row[key] = value.data if value.requires_grad else value  # one element
                else:
                    row[key] = value
        return row

    # -- the thread -------------------------------------------------------------------------
    def ensure_thread(self) -> None:
        thread = self._thread
        if thread is not None and thread.is_alive():
            return
        with self._cond:
            if self._thread is not None and self._thread.is_alive():
                return
            self._closing = False
            self._thread = threading.Thread(target=self._loop, name="tether-history", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            self._wake.wait(self.flush_every if self.flush_every > 0 else None)
            self._wake.clear()
            with self._cond:
                target = self._requested
                closing = self._closing
            try:
                self.flush_now(force=target > self._done, closing=closing)
            except BaseException as exc:  # never let the thread die silently
                if is_disk_full(exc):
                    self._report_file_error(disk_full(getattr(exc, "filename", None) or self.path))
                else:
                    self._report_file_error(f"flush failed: {type(exc).__name__}: {exc}")
            with self._cond:
                self._done = target
                self._cond.notify_all()
            if closing:
                return

    def request(self, *, closing: bool = False, timeout: float | None = None) -> None:
        """Have the thread flush (and close) now, and wait until it has."""
        if threading.current_thread() is self._thread:
            self.flush_now(force=True, closing=closing)
            return
        self.ensure_thread()
        with self._cond:
            self._requested += 1
            target = self._requested
            if closing:
                self._closing = True
            self._wake.set()
            deadline = None if timeout is None else time.monotonic() + timeout
            while self._done < target and self._thread is not None and self._thread.is_alive():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._cond.wait(left if left is not None else 1.0)
        if closing and self._thread is not None:
            self._thread.join(timeout)

    # -- flushing (in the thread) -----------------------------------------------------------
    def _write_rank(self) -> bool:
        """False on ranks other than 0 of an initialised torch.distributed."""
        if self.per_rank:
            return True
        if self.rank is None:
            dist = sys.modules.get("torch.distributed")
            try:
                if dist is not None and dist.is_available() and dist.is_initialized():
                    self.rank = int(dist.get_rank())
            except Exception:
                pass
        return not self.rank

    def flush_now(self, *, force: bool, closing: bool) -> None:
        pending = self.pending
        n = len(pending)
        batch = pending[:n]
        del pending[:n]  # update() only appends at the end: nothing is lost between the two
        self.asked = False
        if not self._write_rank():
            return
        if batch and self.resumed is not None:
            batch = self._not_recorded(batch)
        if self.runners and self.nrows is None:
            # Rows already in the file: sinks number rows from its start.
            if self.path is not None:
                self.nrows = count_rows(self.path)
            else:
                self.nrows = len(self.memory or ())
        first = self.nrows or 0
        rows: list[Row] = []
        if batch:
            n = len(batch)
            groups = batches.numbered(batch)
            text = self.encoder.encode(groups, n)
            if text is None or self.memory is not None or self.runners:
                rows = batches.rows(groups, n)
            if text is None:  # NaN or an infinity: the json module writes them
                text = dump_rows(rows, self.safe_split)
            if self.file is not None:
                try:
                    self.file.write_text(text)
                except OSError as exc:
                    self._report_file_error(self._write_error(self.path, exc))
            elif self.memory is not None:
                self.memory.extend(rows)
            if self.nrows is not None:
                self.nrows += n
            # The statistics need the columns and, of the rows, each key's last (all of them
            # when a value is not finite, to name the first such).
            self._update_stats(rows or batches.last_rows(groups), batches.columns(groups))
        for runner in list(self.runners):
            self._feed(runner, rows, first)
        if closing:
            if self.runners:
                self._write_summary()  # complete before sinks upload it
            for runner in list(self.runners):
                if runner.opened and not runner.failed:
                    runner.call(
                        "close", runner.sink.close, self._close_status, self.context(runner)
                    )
            if self.file is not None:
                self.file.close()
        if force or closing or (self.dirty and self._summary_due()):
            self._write_summary()

    def _not_recorded(self, batch: list[Row]) -> list[Row]:
        """The batch less the rows a continued run's file holds already (metrics_file)."""
        assert self.resumed is not None
        last = self.resumed.step
        if all(row.get("step", last) > last for row in batch):
            return batch  # past the file's last step: nothing to drop
        kept = not_recorded(batch, self.resumed)
        if len(kept) < len(batch) and not self.dropped:
            log.info(
                "History: run continued after step %d: rows up to it are recorded already "
                "and are not written again",
                last,
            )
        self.dropped += len(batch) - len(kept)
        return kept

    def _summary_due(self) -> bool:
        return time.monotonic() - self.last_summary >= self.flush_every

    def context(self, runner: SinkRunner) -> SinkContext:
        ctx = SinkContext(
            state=dict(self.sink_states.get(runner.name) or {}),
            new=self.new_sinks,
            extra_artifacts=list(self.artifacts),
            status=self.status,
        )
        if self.run is not None:
            record = self.run.record
            ctx.run_dir = Path(record.dir)
            ctx.run_id = record.id
            ctx.run_name = record.name
            ctx.config = dict(record.lock.config or {})
            ctx.runs_root = Path(self.run.store.root)
            # A run this process records the end of (not a finished one re-opened): sinks may
            # work after it (Sink.ended, called by `ended` below).
            ctx.after_end = self.status is None and bool(getattr(self.run, "records_end", False))
            ctx.started = record.state.started
            ctx.stopped = record.state.stopped
            ctx.label = record.attrs.label
            ctx.tags = list(record.attrs.tags)
            for source in record.lock.sources:
                if source.commit:
                    ctx.source_commit = source.head or source.commit
                    break
        elif self.path is not None:
            ctx.runs_root = self.path.parent
        if self.path is not None:
            path = self.path
            ctx.rows = lambda start: iter_metrics(path, start=start)
        return ctx

    def _feed(self, runner: SinkRunner, rows: list[Row], first: int) -> None:
        """Open the sink if needed, send it the rows it lacks from the file, then `rows`."""
        if runner.failed:
            return
        if not runner.opened:
            ctx = self.context(runner)
            ok, held = runner.call("open", runner.sink.open, ctx)
            if not ok:
                return
            runner.opened = True
            held = held if held is not None else ctx.state.get("rows", 0)
            runner.rows = min(int(held or 0), first)
            self.dirty = True
        if runner.rows < first and self.path is not None:
            chunk: list[Row] = []
            start = runner.rows
            for row in iter_metrics(self.path, start=runner.rows):
                if start + len(chunk) >= first:
                    break
                chunk.append(row)
                if len(chunk) >= _BACKFILL_CHUNK:
                    if not runner.call("write", runner.sink.write, chunk, start)[0]:
                        return
                    start += len(chunk)
                    runner.rows = start
                    chunk = []
            if chunk:
                if not runner.call("write", runner.sink.write, chunk, start)[0]:
                    return
                runner.rows = start + len(chunk)
            self.dirty = True
        if (
            rows
            and runner.rows <= first
            and runner.call("write", runner.sink.write, rows, first)[0]
        ):
            runner.rows = first + len(rows)
            self.dirty = True
        if runner.failed:
            self.dirty = True

    def _update_stats(self, rows: list[Row], columns: dict[tuple[str, ...], list[Any]]) -> None:
        """Fold a batch into last/min/max/step; `columns`: its values by key sequence."""
        self.touched.update(fold_stats(self.stats, self.warned, rows, columns))
        self.dirty = True

    # -- reductions (in the caller's thread) ------------------------------------------------
    def reduce_now(self) -> None:
        """All-gather the reduce buffer across ranks and queue the reduced rows."""
        batch, self.reduce_pending = self.reduce_pending, []
        rows = batches.convert(batch)
        reduced, self.reduce_every = reduce_rows(
            rows,
            since=self.reduce_since,
            flush_every=self.flush_every,
            most=self.flush_rows,
            current=self.reduce_every,
        )
        self.reduce_since = time.monotonic()
        if self.per_rank:
            reduced = []  # rank 0 records them
        for row in reduced:
            for key in row:
                if key not in self.kinds and key not in RESERVED:
                    self.kinds[key] = (float, PLAIN, "float", float)
        self.pending.extend(reduced)
        if len(self.pending) >= self.flush_rows:
            self._wake.set()

    # -- ending -----------------------------------------------------------------------------
    def flush(self, timeout: float | None = None) -> None:
        if self.closed:
            return  # everything was written when it closed
        if self.reduce_used and distributed():
            self.reduce_now()  # every rank flushes: the ranks stay in step
        self.request(timeout=timeout)

    def close(
        self, status: str | None, timeout: float | None = None, at_exit: bool = False
    ) -> None:
        if self.closed:
            return
        if self.reduce_used:
            if not at_exit and distributed():
                self.reduce_now()  # the last exchange also catches ranks that logged more
            elif self.reduce_pending:
                log.warning(
                    "History: %d rows logged with reduce=True were not reduced "
                    "(closed at exit, or the process group is gone) and are dropped",
                    len(self.reduce_pending),
                )
                self.reduce_pending = []
        self._close_status = status
        self.closed = True
        needed = bool(self.pending or self.runners or self.dirty or self.file is not None)
        if needed or self._thread is not None:
            self.request(closing=True, timeout=timeout)
        _live.discard(self)

    def ended(self) -> None:
        """The run's record is complete (session.lifecycle): sinks that work after the run
        start now (Sink.ended); a failure is reported as the sink's other failures are."""
        for runner in list(self.runners):
            if runner.opened and not runner.failed:
                runner.call("ended", runner.sink.ended, self.context(runner))
