"""How a created run lives and ends in this process: state.json moving running ->
completed/failed/terminated, output teed into output.log, and the index row kept in step."""

from __future__ import annotations

import contextlib
import os
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..capture.output import OutputCapture
from ..capture.secrets import redact_known
from ..clock import now_iso
from ..context import running
from ..errors import TetherError, disk_full, is_disk_full
from ..store import RunRecord, Store
from ..store.attrs import read_attributes
from ..store.layout import OUTPUT
from ..store.state import start_attempt
from ..track.tensorboard import rollup_into_summary
from .exits import Terminated, signals_raise_terminated
from .manifest import write_manifest
from .run import Run

RESERVE = ".tether-reserve"  # in the run folder while it runs: room for its final state
RESERVE_BYTES = 128 * 1024


def announce(record: RunRecord) -> None:
    """Tell a parent process (tether reproduce, batches) which run this is."""
    target = os.environ.get("TETHER_RUN_ID_FILE")
    if target:
        with contextlib.suppress(OSError), open(target, "a", encoding="utf-8") as fh:
            fh.write(record.id + "\n")


def ending(exc: BaseException) -> tuple[str, int, str | None]:
    """(status, exit code, error) of a run whose block raised `exc`."""
    if isinstance(exc, (KeyboardInterrupt, Terminated)):
        code = 130 if isinstance(exc, KeyboardInterrupt) else 143
        return "terminated", code, f"{type(exc).__name__}: {exc}".rstrip(": ")
    if isinstance(exc, SystemExit):
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if code == 0:
            return "completed", 0, None
        return "failed", code, getattr(exc, "reason", None) or f"SystemExit({exc.code})"
    return "failed", 1, "".join(traceback.format_exception_only(type(exc), exc)).strip()


@dataclass
class Outcome:
    """How the block of a run ended: what state.json (or a rank's record) says of it."""

    status: str = "completed"
    exit_code: int = 0
    error: str | None = None


@contextlib.contextmanager
def recording(
    run: Run,
    capture: OutputCapture | None,
    on_error: Callable[[BaseException], None] | None,
    outcome: Outcome,
    disarm: Callable[[], None],
) -> Iterator[Outcome]:
    """Run the block with `run` current; fill `outcome` from how it ended (a failure's
    traceback goes to the output log) and re-raise. The caller holds SIGTERM
    (`signals_raise_terminated`) around the block and its ending: `disarm` when it ends."""
    try:
        with running(run):
            yield outcome
    except BaseException as exc:
        outcome.status, outcome.exit_code, outcome.error = ending(exc)
        if outcome.status == "failed" and not isinstance(exc, SystemExit):
            if capture is not None:
                with contextlib.suppress(OSError):  # a full disk: the state still gets written
                    capture.write_log("".join(traceback.format_exception(exc)))
            if on_error is not None:
                on_error(exc)
        raise
    finally:
        disarm()  # the run ends now: a second SIGTERM must not cut its ending short


def lifecycle(
    store: Store,
    record: RunRecord,
    run: Run,
    capture_output: bool,
    on_error: Callable[[BaseException], None] | None,
) -> Iterator[Run]:
    """Mark the run running, yield it as the current run, and record how the block ended.

    A failed or terminated run writes its final state first, before its History, sinks and
    output log are closed, so a full disk (which likely made it fail) cannot leave it
    `running`: the room for that write is reserved at the start (RESERVE, freed at the end).
    """
    capture = None
    if capture_output:
        capture = OutputCapture(record.dir / OUTPUT)
        capture.start()
    # One more attempt: the first of a new run, or the next of a restarted one.
    store.set_state(record, start_attempt(record.state))
    reserve = _reserve(record)
    outcome = Outcome()
    run.records_end = True  # sinks may work after the end (Sink.ended, below)
    with signals_raise_terminated() as disarm:
        try:
            with recording(run, capture, on_error, outcome, disarm):
                yield run
        finally:
            status, exit_code, error = outcome.status, outcome.exit_code, outcome.error
            _release(reserve)
            failed = status != "completed"
            if failed:
                _end_state(store, record, status, exit_code, error, report=True)
            try:
                run._close(status)  # flush and close the run's History and its sinks
                rollup_into_summary(store, record)  # TensorBoard scalars join summary.json
            except Exception as exc:
                if not failed and not is_disk_full(exc):
                    raise
                _say(_one_line(exc, record))
                if not failed:  # a full disk at the end: the run did not record all it made
                    status, exit_code, error, failed = "failed", 1, _one_line(exc, record), True
            finally:
                if capture is not None:
                    with contextlib.suppress(OSError):
                        capture.stop()
                # Other processes may have added to the run: labels or notes, data digests of a
                # background hash, and a script attached to it (its config, data, stages and
                # summary.json): the index row is made from the files as they are now.
                with contextlib.suppress(TetherError, OSError):
                    fresh = store.load_dir(record.dir)
                    record.lock, record.summary = fresh.lock, fresh.summary
                with contextlib.suppress(OSError):
                    record.attrs = read_attributes(record.dir)
                _end_state(store, record, status, exit_code, error, report=failed)
                with contextlib.suppress(TetherError, OSError):
                    write_manifest(record.dir, record.id)  # every file of the folder, as it ends
                run._ended()  # the record is complete: the MLflow sync, say, starts now
                store.close_index()


def _reserve(record: RunRecord) -> Path | None:
    """Room on the run's disk for its final state.json and index row, taken now."""
    path = record.dir / RESERVE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError:
        return None
    try:
        os.posix_fallocate(fd, 0, RESERVE_BYTES)
    except (OSError, AttributeError):
        pass  # no room even now, or no fallocate: the end state is written all the same
    finally:
        os.close(fd)
    return path


def _release(reserve: Path | None) -> None:
    if reserve is not None:
        with contextlib.suppress(OSError):
            reserve.unlink()


def _end_state(
    store: Store,
    record: RunRecord,
    status: str,
    exit_code: int,
    error: str | None,
    *,
    report: bool,
) -> None:
    """Write the run's final state; on a failure path a write error is one line, not a
    second traceback chained to the run's own."""
    state = record.state
    state.status = status
    state.exit_code = exit_code
    state.stopped = now_iso()
    state.error = redact_known(error) if error else error  # a message may quote a secret
    if not report:
        store.set_state(record, state)
        return
    try:
        store.set_state(record, state)
    except (OSError, TetherError) as exc:
        _say(_one_line(exc, record))


def _one_line(exc: BaseException, record: RunRecord) -> str:
    if is_disk_full(exc):
        if isinstance(exc, TetherError):
            return exc.message
        return disk_full(getattr(exc, "filename", None) or record.dir)
    return f"{type(exc).__name__}: {exc}"


def _say(message: str) -> None:
    with contextlib.suppress(Exception):
        os.write(2, f"tether: error: {message}\n".encode("utf-8", "replace"))
