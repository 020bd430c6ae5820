"""`tether.History`: metrics that cost nothing to log, flushed in the background.

    history = tether.History()              # inside a run: that run's metrics.jsonl
    history.update({"train/loss": loss, "train/acc": acc}, step=i)

`update` checks the values and appends one row to an in-memory buffer; a background thread
writes the buffer to `metrics.jsonl` (one JSON object per line: `{"step": .., "t": .., key:
number, ...}`) and to every sink at most every `flush_every` seconds or `flush_rows` rows, when
`flush()` or `close()` is called, when the run ends and at interpreter exit, so a training loop
never waits on disk or network. `summary.json` (and the run's index row, so `tether runs` and
`tether show` see live values) keeps, per key, the last value, the min, the max and the last
step; it is rewritten with the rows at most every `flush_every` seconds.

Values: Python numbers, NumPy scalars and one-element torch tensors. Tensors are kept as they
are (detached) and converted at flush time, all of one device at once, so logging a CUDA loss
costs no device sync per step: one per flush. NaN and infinities are recorded as they are
(`NaN`, `Infinity` in the file) and flagged (`"nonfinite": true` in the summary, one warning per
key); min and max skip NaN. Anything else (a string, None, a list, a tensor of many elements)
raises TetherError naming the key; a key whose type changes (int to float, float to bool)
warns once.

With `reduce=True`, when torch.distributed is initialised with more than one rank, the rows are
reduced across ranks in the caller's thread (collectives must run in the same order on every
rank): the key sets are compared first (a mismatch is a TetherError on every rank, not a hang),
then one all_gather carries every value of the batch, and `key` (the mean), `key/min`,
`key/max` and `key/std` are recorded. Only rank 0 writes files and sinks; the other ranks'
unreduced rows are dropped. Reductions happen every few updates, a count the ranks agree on so
that they come about every `flush_every` seconds, and at `flush()`/`close()`, which every rank
must call (the run's end does).
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import struct
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from time import time as _now
from typing import TYPE_CHECKING, Any

from ..errors import TetherError
from ..store.layout import INDEX, METRICS, SUMMARY
from .sinks.base import Row, Sink, SinkContext, SinkRunner, load_sink
from .sinks.jsonl import JsonlSink, RowEncoder

if TYPE_CHECKING:
    from ..run import Run

log = logging.getLogger("tether.history")

RESERVED = ("step", "t")  # columns of a row that are not metric keys
REDUCED = ("min", "max", "std")  # reduce=True adds key/min, key/max, key/std beside key (mean)
FINISHED = ("completed", "failed", "terminated", "unknown")
_BACKFILL_CHUNK = 5000

# How a value of a given type is turned into a number: kept, converted now, or at flush.
_PLAIN, _NOW, _TENSOR = 0, 1, 2
_F32 = struct.Struct("<f")
_FLOAT = {float}
_NUMBERS = (float, int)
_INF = float("inf")


# -- reading ----------------------------------------------------------------------------------
def metrics_file(source: str | os.PathLike[str]) -> Path:
    """`source` is a metrics.jsonl, or a run folder holding one."""
    path = Path(source)
    return path / METRICS if path.is_dir() else path


def iter_metrics(source: str | os.PathLike[str], start: int = 0) -> Iterator[Row]:
    """The rows of a metrics.jsonl (or of the one in a run folder), in order, from row `start`.

    Tolerant: a missing file has no rows; a line that is not a JSON object is skipped (the last
    one may be torn by a writer killed mid-line, or being written right now), and counts as no
    row, so row numbers stay those the writer and its sinks used.
    """
    path = metrics_file(source)
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below; bytes, so a torn character is fine
    except (FileNotFoundError, NotADirectoryError):
        return
    with fh:
        number = 0
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except ValueError:
                row = None
            if not isinstance(row, dict):
                if raw.endswith(b"\n"):
                    log.warning("%s:%d: not a JSON object, skipped", path, lineno)
                continue
            if number >= start:
                yield row
            number += 1


def read_metrics(source: str | os.PathLike[str]) -> list[Row]:
    """All rows of a metrics.jsonl or of a run folder's (see `iter_metrics`)."""
    return list(iter_metrics(source))


def count_rows(source: str | os.PathLike[str]) -> int:
    return sum(1 for _ in iter_metrics(source))


# -- values -----------------------------------------------------------------------------------
def _torch() -> Any:
    return sys.modules.get("torch")


def _category(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    return "float"


def _not_a_number(key: str, value: Any, why: str = "") -> TetherError:
    shown = " ".join(repr(value).split())
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return TetherError(
        f"metric {key!r}: {type(value).__name__} {shown} is not a number{why}",
        "log Python numbers, NumPy scalars or one-element tensors",
    )


def _item(key: str, value: Any) -> int | float:
    """A NumPy scalar, a 0-d array or anything with `.item()` as a Python number."""
    try:
        number = value.item()
        if type(number) is float and getattr(value.dtype, "itemsize", 8) <= 4:
            number = short32(number)
    except (ValueError, TypeError, AttributeError, RuntimeError):
        raise _not_a_number(key, value, " (it holds more than one value)")
    if isinstance(number, bool):
        return int(number)
    if isinstance(number, (int, float)):
        return number
    raise _not_a_number(key, value)


def _real(key: str, value: Any) -> int | float:
    """A number of another type (an int or float subclass, Fraction, Decimal)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return int(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise _not_a_number(key, value)


def _tensor(key: str, value: Any) -> Any:
    """The tensor to convert at flush, without its autograd graph."""
    if value.numel() != 1:
        raise _not_a_number(key, value, f" (a tensor of {value.numel()} elements)")
    # `.data`, not `.detach()`: the same view without the graph, and no GIL hand-off (detach
    # costs ~20 us whenever another thread exists, as the flush thread does).
    return value.data if value.requires_grad else value


def _classify(key: str, value: Any) -> tuple[type, int, str]:
    """(type, how to convert, category) for the first value of a type seen under `key`."""
    kind = type(value)
    if kind is float:
        return kind, _PLAIN, "float"
    if kind is int:
        return kind, _PLAIN, "int"
    if kind is bool:
        return kind, _NOW, "bool"
    torch = _torch()
    if torch is not None and isinstance(value, torch.Tensor):
        if value.is_complex():
            raise _not_a_number(key, value, " (complex)")
        _tensor(key, value)  # validates
        if value.dtype == torch.bool:
            return kind, _TENSOR, "bool"
        return kind, _TENSOR, "float" if value.dtype.is_floating_point else "int"
    if isinstance(value, (int, float)):
        return kind, _NOW, _category(value)
    if hasattr(value, "item") and hasattr(value, "dtype"):
        number = _item(key, value)  # NumPy scalars and 0-d arrays (JAX arrays alike)
        return kind, _NOW, "bool" if getattr(value.dtype, "kind", "") == "b" else _category(number)
    import numbers

    if isinstance(value, numbers.Real):
        return kind, _NOW, _category(_real(key, value))
    raise _not_a_number(key, value)


def _convert_now(key: str, value: Any) -> int | float:
    if type(value) is bool or isinstance(value, (int, float)):
        return _real(key, value)
    if hasattr(value, "item"):
        return _item(key, value)
    return _real(key, value)


def _materialize(rows: list[Row], tensor_keys: Sequence[str]) -> list[Row]:
    """The rows with their tensors turned into numbers, in place: one stack per key, one
    `.tolist()` (so one device sync) per device."""
    torch = _torch()
    if not tensor_keys or torch is None:
        return rows
    by_device: dict[Any, list[tuple[str, list[Row], str, Any]]] = {}
    for key in tensor_keys:
        # update() left only numbers and tensors under a key: what is not a number is a tensor.
        holders = [r for r in rows if type(r.get(key, 0.0)) not in _NUMBERS]
        if not holders:
            continue
        column = [r[key] for r in holders]
        try:
            stacked = torch.stack(column).reshape(-1)
            if stacked.numel() != len(column):
                raise ValueError("not one element each")
        except (RuntimeError, ValueError):  # shapes or devices differ: one at a time
            device = column[0].device
            stacked = torch.stack([t.reshape(()).to(device) for t in column])
        dtype = stacked.dtype
        if dtype.is_complex:
            for row in holders:
                row.pop(key)
            log.warning("metric %r: complex tensors are not numbers, left out", key)
            continue
        kind = "int" if not dtype.is_floating_point else ("f32" if dtype.itemsize <= 4 else "")
        by_device.setdefault(stacked.device, []).append((key, holders, kind, stacked))
    for entries in by_device.values():
        if len(entries) == 1:
            numbers = entries[0][3].tolist()
        else:
            numbers = torch.cat([e[3].to(torch.float64) for e in entries]).tolist()
        start = 0
        for key, holders, kind, _ in entries:
            chunk = numbers[start : start + len(holders)]
            start += len(holders)
            if kind == "int":
                chunk = [int(x) for x in chunk]
            elif kind == "f32":
                chunk = shorten32(chunk)
            for row, number in zip(holders, chunk, strict=True):
                row[key] = number
    return rows


def shorten32(numbers: list[float]) -> list[float]:
    """float32 values as the short decimals NumPy prints for them, all at once."""
    try:
        import numpy
    except ImportError:
        return [short32(x) for x in numbers]
    return list(map(float, numpy.array(numbers, dtype=numpy.float32).astype(str)))


def short32(number: float) -> float:
    """A float32 value as the shortest decimal that reads back as it (0.2, not
    0.20000000298023224), as NumPy prints float32."""
    try:
        packed = _F32.pack(number)
    except OverflowError:
        return number
    if number != number or number in (_INF, -_INF):
        return number
    for digits in (6, 7, 8):
        candidate = float(f"{number:.{digits}g}")
        if _F32.pack(candidate) == packed:
            return candidate
    return number


# -- the shared writer ------------------------------------------------------------------------
_live: weakref.WeakSet[_Core] = weakref.WeakSet()


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


class _Core:
    """The buffer, statistics, files, sinks and flush thread behind one or more History
    handles (all the History objects of one run share it)."""

    def __init__(
        self,
        *,
        run: Run | None,
        path: Path | None,
        flush_every: float,
        flush_rows: int,
    ) -> None:
        self.run = run
        self.path = path
        self.summary_path = (
            run.dir / SUMMARY if run is not None else (path.parent / SUMMARY if path else None)
        )
        self.flush_every = max(0.0, float(flush_every))
        self.flush_rows = max(1, int(flush_rows))
        self.kinds: dict[str, tuple[type, int, str]] = {}
        self.tensor_keys: list[str] = []  # keys that ever held a tensor
        self.deferred: set[str] = set()  # the same, as a set
        self.float_keys: set[str] = set()  # keys whose values are floats, so far
        self.warned: set[str] = set()
        self.pending: list[Row] = []  # rows; tensors in them are converted at flush
        self.memory: list[Row] | None = [] if path is None else None
        self.file = JsonlSink(path) if path is not None else None
        self.encoder = RowEncoder()
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

    def summary(self) -> dict[str, Any]:
        out = dict(self.summary_extra)
        if self.run is not None:
            current = self.run.record.summary or {}
            out.update({k: v for k, v in current.items() if k not in ("metrics", "sinks")})
        out["metrics"] = {k: dict(v) for k, v in self.stats.items()}
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
        from ..fsio import atomic_write_json

        summary = self.summary()
        try:
            atomic_write_json(self.summary_path, summary, durable=False)
        except OSError as exc:
            self._report_file_error(f"summary.json not written: {exc}")
            return
        if self.run is not None:
            record = self.run.record
            record.summary = summary
            from ..store.index import Index

            # A connection of this thread's own: SQLite connections stay in their thread.
            index = Index(self.run.store.root / INDEX)
            try:
                index.upsert(record)
            except Exception as exc:
                log.debug("index not updated with live metrics: %s", exc)
            finally:
                index.close()

    def _report_file_error(self, message: str) -> None:
        if self.file_error != message:
            self.file_error = message
            print(f"tether: History: {message}", file=sys.stderr, flush=True)

    # -- values -----------------------------------------------------------------------------
    def learn(self, key: Any, value: Any) -> tuple[type, int, str]:
        if not isinstance(key, str):
            raise TetherError(f"metric keys are strings, not {type(key).__name__} ({key!r})")
        if key in RESERVED:
            raise TetherError(
                f"metric key {key!r} is reserved", "pass the step as update(..., step=N)"
            )
        kind = _classify(key, value)
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
        if kind[0] is float:
            self.float_keys.add(key)
        else:
            self.float_keys.discard(key)
        return kind

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
        rows = pending[:n]
        del pending[:n]  # update() only appends at the end: nothing is lost between the two
        if rows and self.tensor_keys:
            _materialize(rows, list(self.tensor_keys))
        if not self._write_rank():
            return
        if self.runners and self.nrows is None:
            # Rows already in the file: sinks number rows from its start.
            if self.path is not None:
                self.nrows = count_rows(self.path)
            else:
                self.nrows = len(self.memory or ())
        first = self.nrows or 0
        if rows:
            text, columns = self.encoder.encode(rows)
            if self.file is not None:
                try:
                    self.file.write_text(text)
                except OSError as exc:
                    self._report_file_error(f"{self.path} not written: {exc}")
            elif self.memory is not None:
                self.memory.extend(rows)
            if self.nrows is not None:
                self.nrows += len(rows)
            self._update_stats(rows, columns)
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
        found: dict[str, list[Any]] = {}
        for keys, cols in columns.items():
            for key, col in zip(keys, cols, strict=True):
                if key != "step" and key != "t":
                    found.setdefault(key, []).append(col)
        stats = self.stats
        last_row = rows[-1]
        for key, cols in found.items():
            last = last_row if key in last_row else next(r for r in reversed(rows) if key in r)
            nonfinite = False
            los, his = [], []
            for col in cols:
                try:
                    finite = math.isfinite(sum(col))
                except OverflowError:
                    finite = False
                values = col
                if not finite:
                    nonfinite = nonfinite or any(not math.isfinite(v) for v in col)
                    values = [v for v in col if v == v]  # NaN out; infinities count
                if values:
                    los.append(min(values))
                    his.append(max(values))
            lo = min(los) if los else None
            hi = max(his) if his else None
            entry = stats.get(key)
            if entry is None:
                entry = stats[key] = {"last": last[key], "min": lo, "max": hi}
            else:
                entry["last"] = last[key]
                if lo is not None:
                    old = entry.get("min")
                    entry["min"] = lo if old is None else min(old, lo)
                    old = entry.get("max")
                    entry["max"] = hi if old is None else max(old, hi)
            if "step" in last:
                entry["step"] = last["step"]
            if nonfinite:
                entry["nonfinite"] = True
                if key not in self.warned:
                    self.warned.add(key)
                    bad = next(r for r in rows if key in r and not math.isfinite(r[key]))
                    log.warning(
                        "metric %r is %s%s (recorded and flagged in summary.json)",
                        key,
                        bad[key],
                        f" at step {bad['step']}" if "step" in bad else "",
                    )
        self.dirty = True

    # -- reductions (in the caller's thread) ------------------------------------------------
    def reduce_now(self) -> None:
        """All-gather the reduce buffer across ranks and queue the reduced rows."""
        batch, self.reduce_pending = self.reduce_pending, []
        from .reduce import reduce_rows

        rows = _materialize(batch, list(self.tensor_keys)) if batch else []
        reduced, self.reduce_every = reduce_rows(
            rows,
            since=self.reduce_since,
            flush_every=self.flush_every,
            most=self.flush_rows,
            current=self.reduce_every,
        )
        self.reduce_since = time.monotonic()
        for row in reduced:
            for key in row:
                if key not in self.kinds and key not in RESERVED:
                    self.kinds[key] = (float, _PLAIN, "float")
                    self.float_keys.add(key)
            self.pending.append(row)
        if len(self.pending) >= self.flush_rows:
            self._wake.set()

    # -- ending -----------------------------------------------------------------------------
    def flush(self, timeout: float | None = None) -> None:
        if self.closed:
            return  # everything was written when it closed
        if self.reduce_used and _distributed():
            self.reduce_now()  # every rank flushes: the ranks stay in step
        self.request(timeout=timeout)

    def close(
        self, status: str | None, timeout: float | None = None, at_exit: bool = False
    ) -> None:
        if self.closed:
            return
        if self.reduce_used:
            if not at_exit and _distributed():
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


class History:
    """Metrics of a run (or of a file) logged without waiting: see the module docstring.

    `run`: the run whose metrics.jsonl and summary.json to write (default: the current run,
    if any). `path`: a metrics.jsonl to write instead (its summary.json goes beside it). With
    neither, rows are kept in memory (`rows()`). All History objects of one run share one
    buffer, file and thread (the first one's `flush_every` and `flush_rows` hold). `sinks`:
    names of `tether.sinks` entry points (`"mlflow"`, `"wandb"`, `"tensorboard"`, ...) or Sink
    objects, besides metrics.jsonl.
    """

    def __init__(
        self,
        run: Run | None = None,
        path: str | os.PathLike[str] | None = None,
        flush_every: float = 2.0,
        flush_rows: int = 1000,
        sinks: Sequence[str | Sink] | None = None,
    ) -> None:
        if run is None and path is None:
            from ..api import current_run

            run = current_run()
        if run is not None and path is None:
            core = run._history_core
            if core is None:
                core = _Core(
                    run=run, path=run.dir / METRICS, flush_every=flush_every, flush_rows=flush_rows
                )
                run._history_core = core
                for name in _env_sinks():
                    _add_sink(core, name)
        else:
            core = _Core(
                run=None,
                path=Path(path).absolute() if path is not None else None,
                flush_every=flush_every,
                flush_rows=flush_rows,
            )
        self._core = core
        for spec in sinks or ():
            _add_sink(core, spec)

    # -- logging ----------------------------------------------------------------------------
    def update(
        self, values: Mapping[str, Any], step: int | None = None, reduce: bool = False
    ) -> None:
        """Record `values` ({key: number}) at `step`. Returns at once; see the class doc."""
        core = self._core
        try:
            floats = set(map(type, values.values())) == _FLOAT and core.float_keys.issuperset(
                values
            )
        except AttributeError:
            raise TetherError(
                f"History.update takes a mapping of metric names to numbers, not "
                f"{type(values).__name__}"
            )
        if core.closed:
            raise TetherError(
                "this History is closed (its run has ended)",
                "add metrics to a finished run with tether.open_run(RUN)",
            )
        # `t` is written rounded to milliseconds (the encoder's %.3f), not rounded here: every
        # operation in a training loop's step costs more than it does alone.
        if step is None:
            row: Row = {"t": _now()}
        else:
            if type(step) is not int:
                step = _as_step(step)
            row = {"step": step, "t": _now()}
        if floats:  # only floats, under keys that always had floats: nothing to check
            row.update(values)
        else:
            kinds = core.kinds
            for key, value in values.items():
                kind = kinds.get(key)
                if kind is None or kind[0] is not type(value):
                    kind = core.learn(key, value)
                how = kind[1]
                if how == _PLAIN:
                    row[key] = value
                elif how == _TENSOR:
                    # Converted at flush, all at once. Not `.item()` here, even on the CPU:
                    # torch releases the GIL in it, and taking it back from a busy flush thread
                    # can cost the training loop a switch interval (5 ms). `.data`, not
                    # `.detach()`, for the same reason: the same view, without the graph.
                    if value.numel() != 1:
                        raise _not_a_number(key, value, f" (a tensor of {value.numel()} elements)")
                    row[key] = value.data if value.requires_grad else value
                    if key not in core.deferred:
                        core.deferred.add(key)
                        core.tensor_keys.append(key)
                else:
                    row[key] = _convert_now(key, value)
        if reduce and _distributed():
            core.reduce_used = True
            core.reduce_pending.append(row)
            if len(core.reduce_pending) >= core.reduce_every:
                core.reduce_now()
        else:
            pending = core.pending
            pending.append(row)
            if len(pending) >= core.flush_rows:
                core._wake.set()
        if core._thread is None:
            core.ensure_thread()

    log = update

    def flush(self, timeout: float | None = None) -> None:
        """Write everything logged so far (files, summary, sinks) and wait until it is done."""
        self._core.flush(timeout)

    def close(self, status: str | None = None) -> None:
        """Flush and close the file and the sinks. A run's History closes when the run ends."""
        self._core.close(status)

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sinks ------------------------------------------------------------------------------
    def add_sink(self, spec: str | Sink, **options: Any) -> Sink:
        """Also send rows to this sink (a `tether.sinks` name or a Sink); it receives the rows
        logged before too."""
        return _add_sink(self._core, spec, **options)

    @property
    def sinks(self) -> list[Sink]:
        return [r.sink for r in self._core.runners]

    # -- reading ----------------------------------------------------------------------------
    @property
    def path(self) -> Path | None:
        """The metrics.jsonl written (None for a History kept in memory)."""
        return self._core.path

    @property
    def run(self) -> Run | None:
        return self._core.run

    def keys(self) -> list[str]:
        """Metric keys in the order they were first logged."""
        return [k for k in self._core.kinds] or list(self._core.stats)

    def groups(self) -> dict[str, list[str]]:
        """Keys by prefix: `{"train": ["train/loss", ...], "eval": [...], "": [unprefixed]}`."""
        out: dict[str, list[str]] = {}
        for key in self.keys():
            group = key.split("/", 1)[0] if "/" in key else ""
            out.setdefault(group, []).append(key)
        return out

    def summary(self) -> dict[str, dict[str, Any]]:
        """`{key: {"last", "min", "max", "step"[, "nonfinite"]}}` of what was flushed."""
        self.flush()
        return {k: dict(v) for k, v in self._core.stats.items()}

    def rows(self) -> list[Row]:
        """Every row logged (after a flush): read back from the file, or kept in memory."""
        self.flush()
        core = self._core
        if core.memory is not None:
            return [dict(r) for r in core.memory]
        assert core.path is not None
        return read_metrics(core.path)

    def series(self, key: str) -> tuple[list[Any], list[Any]]:
        """(steps, values) of one key; a row without a step counts by its position."""
        steps, values = [], []
        for i, row in enumerate(self.rows()):
            if key in row:
                steps.append(row.get("step", i))
                values.append(row[key])
        return steps, values

    # -- plots and reports (tether.track.plots / tether.track.report) -----------------------
    def _source(self) -> Path:
        self.flush()
        if self._core.path is None:
            raise TetherError(
                "this History keeps its rows in memory",
                "give it a run or a path to plot or report",
            )
        return self._core.path

    def plot(self, keys: Sequence[str] | None = None, **options: Any) -> Any:
        """Chart the metrics (in the terminal, or as PNGs with `png=True`): `tether plot`."""
        from . import plots

        return plots.plot(self._source(), keys, **options)

    def report(self, out: str | os.PathLike[str] | None = None, **options: Any) -> Any:
        """Write report.md with the summary table and PNG charts: `tether report`."""
        from . import report

        return report.write_report(self._source().parent, out, **options)

    def __repr__(self) -> str:
        where = self._core.path or "memory"
        return f"History({where}, keys={len(self._core.kinds)})"


def _as_step(step: Any) -> int:
    try:
        if hasattr(step, "item"):
            step = step.item()
        if isinstance(step, float) and not step.is_integer():
            raise ValueError
        return int(step)
    except (TypeError, ValueError, OverflowError):
        raise TetherError(f"step must be an integer, not {step!r}")


def _distributed() -> bool:
    from .reduce import active_world

    return active_world() > 1


def _env_sinks() -> list[str]:
    return [s.strip() for s in os.environ.get("TETHER_SINKS", "").split(",") if s.strip()]


def _add_sink(core: _Core, spec: str | Sink, **options: Any) -> Sink:
    sink = load_sink(spec, **options)
    for runner in core.runners:
        if runner.name == sink.name and not runner.failed:
            return runner.sink  # one sink of a kind per run
    if isinstance(sink, JsonlSink) and not core.safe_split:
        sink.safe_split = False
    core.runners.append(SinkRunner(sink))
    core.dirty = True
    core.ensure_thread()
    core._wake.set()
    return sink
