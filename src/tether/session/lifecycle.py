"""How a created run lives and ends in this process: state.json moving running ->
completed/failed/terminated, output teed into output.log, and the index row kept in step."""

from __future__ import annotations

import contextlib
import os
import traceback
from collections.abc import Callable, Iterator

from ..capture.output import OutputCapture
from ..clock import now_iso
from ..context import running
from ..lock import read_lock
from ..store import RunRecord, Store
from ..store.attrs import read_attributes
from ..store.layout import OUTPUT
from ..store.state import RunState, hostname, proc_start_time
from ..track.tensorboard import rollup_into_summary
from .exits import Terminated, signals_raise_terminated
from .run import Run


def announce(record: RunRecord) -> None:
    """Tell a parent process (tether reproduce, batches) which run this is."""
    target = os.environ.get("TETHER_RUN_ID_FILE")
    if target:
        with contextlib.suppress(OSError), open(target, "a", encoding="utf-8") as fh:
            fh.write(record.id + "\n")


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
        with running(run), signals_raise_terminated():
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
            # Labels or notes may have come from another process; run.lock only changes when a
            # background hash fills in its data digests.
            if any(d.status == "pending" for d in record.lock.data):
                record.lock = read_lock(record.dir)
            record.attrs = read_attributes(record.dir)
            store.set_state(record, state)
            store.index.close()
