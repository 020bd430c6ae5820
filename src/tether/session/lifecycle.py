"""How a created run lives and ends in this process: state.json moving running ->
completed/failed/terminated, output teed into output.log, and the index row kept in step."""

from __future__ import annotations

import contextlib
import os
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..capture.output import OutputCapture
from ..clock import now_iso
from ..context import running
from ..errors import TetherError
from ..store import RunRecord, Store
from ..store.attrs import read_attributes
from ..store.layout import OUTPUT
from ..store.state import start_attempt
from ..track.tensorboard import rollup_into_summary
from .exits import Terminated, signals_raise_terminated
from .run import Run


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
) -> Iterator[Outcome]:
    """Run the block with `run` current and SIGTERM raising Terminated; fill `outcome` from
    how it ended (a failure's traceback goes to the output log) and re-raise."""
    try:
        with running(run), signals_raise_terminated():
            yield outcome
    except BaseException as exc:
        outcome.status, outcome.exit_code, outcome.error = ending(exc)
        if outcome.status == "failed" and not isinstance(exc, SystemExit):
            if capture is not None:
                capture.write_log("".join(traceback.format_exception(exc)))
            if on_error is not None:
                on_error(exc)
        raise


def lifecycle(
    store: Store,
    record: RunRecord,
    run: Run,
    capture_output: bool,
    on_error: Callable[[BaseException], None] | None,
) -> Iterator[Run]:
    """Mark the run running, yield it as the current run, and record how the block ended."""
    capture = None
    if capture_output:
        capture = OutputCapture(record.dir / OUTPUT)
        capture.start()
    # One more attempt: the first of a new run, or the next of a restarted one.
    store.set_state(record, start_attempt(record.state))
    outcome = Outcome()
    try:
        with recording(run, capture, on_error, outcome):
            yield run
    finally:
        status, exit_code, error = outcome.status, outcome.exit_code, outcome.error
        try:
            run._close(status)  # flush and close the run's History and its sinks
            rollup_into_summary(store, record)  # TensorBoard scalars join summary.json
        finally:
            if capture is not None:
                capture.stop()
            state = record.state
            state.status = status
            state.exit_code = exit_code
            state.stopped = now_iso()
            state.error = error
            # Other processes may have added to the run: labels or notes, data digests of a
            # background hash, and a script attached to it (its config, data, stages and
            # summary.json): the index row is made from the files as they are now.
            with contextlib.suppress(TetherError):
                fresh = store.load_dir(record.dir)
                record.lock, record.summary = fresh.lock, fresh.summary
            record.attrs = read_attributes(record.dir)
            store.set_state(record, state)
            store.index.close()
