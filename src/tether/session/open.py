"""`with tether.open_run(RUN) as run:`: add metrics, plots and artifacts to a finished run.

Computation and diagnostics stay apart: the run that trained a model is done; a later script
evaluates it and records what it found in the same run, without recomputing it:

    with tether.open_run("1") as run:                  # the newest run; ids, names, folders too
        run.log_metrics({"diag/calibration": ece})     # appended to metrics.jsonl + summary
        run.history.report()                           # report.md and its PNGs
        run.log_artifact("confusion.png")              # kept in the run folder (artifacts/)

The run's status and run.lock stay as they were. When the run has an MLflow entry (or with
`mlflow=True`), the new metrics, the rows MLflow lacks and the artifacts go there too: into the
same MLflow run by default (`new=False`, updated in place), or, with `new=True`, into a new
MLflow run that supersedes it (`tether.status` = `active` on the new one, `deprecated` on the
old one, `tether.supersedes` naming the old one). `tether mlflow sync` goes through here.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..context import enter, leave
from ..errors import TetherError
from ..store import RunRecord, Store, open_store
from ..store.state import BUSY
from ..track.sinks.mlflow import MlflowSink
from .attach import attached_run
from .manifest import write_manifest
from .run import Run


def _resolve(run: Any, store: Store | None, runs_dir: Any) -> tuple[Store, RunRecord]:
    if isinstance(run, Run):
        return run.store, run.store.load_dir(Path(run.dir), lock=run.record.lock)
    if isinstance(run, RunRecord):
        store = store or open_store(runs_dir)
        return store, store.load_dir(Path(run.dir), lock=run.lock)
    store = store or open_store(runs_dir)
    if isinstance(run, os.PathLike) or (isinstance(run, str) and os.sep in run):
        folder = Path(run)
        if (folder / "run.lock").is_file():
            return store, store.load_dir(folder.resolve())
    if not isinstance(run, str):
        raise TetherError(f"open_run takes a run id, name, index or folder, not {run!r}")
    return store, store.resolve_one(run)


def _config(record: RunRecord) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.create(record.lock.config or {})


@contextlib.contextmanager
def open_run(
    run: Any = None,
    *,
    runs_dir: str | os.PathLike[str] | None = None,
    new: bool = False,
    mlflow: bool | None = None,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    sinks: Sequence[Any] = (),
    store: Store | None = None,
) -> Iterator[Run]:
    """Re-open a finished run to add metrics and artifacts; see the module docstring.

    `run`: an index from `tether runs` (`"1"`), an id or name prefix, a run folder, a Run or a
    RunRecord. `mlflow`: None logs to MLflow when the run already has an MLflow entry, True
    always, False never. `sinks`: more sinks for this session (names or Sink objects).

    Without `run`, in a process tether started for a run (`TETHER_RUN_DIR` set: an operation's
    exec, a rank of `tether launch`), it opens that run, which is still running: its metrics
    and artifacts join the run, whose status stays its owner's (tether.session.attach).
    """
    attached = attached_run() if run is None else None
    if run is None and attached is None:
        raise TetherError(
            "open_run() needs a RUN (an index, id, name or folder)",
            "without one it opens the run a process was started for (TETHER_RUN_DIR)",
        )
    store, record = _resolve(attached or run, store, runs_dir)
    status: str | None = record.status
    if status in BUSY and attached is None:
        raise TetherError(
            f"run {record.id[:13]} ({record.name}) is {status}",
            "open_run adds to finished runs; while a run runs, log from inside it",
        )
    stages = {st.name: store.run_dir(st.run) for st in record.lock.stages}
    handle = Run(store, record, _config(record), stages)
    if attached is not None:
        handle.attached, handle.rank_dir = True, attached.rank_dir
        status = None  # still running: its owner records how it ends
    core = handle.history._core
    core.status = status
    core.new_sinks = new
    recorded = record.summary.get("sinks") or {}
    if mlflow or (mlflow is None and "mlflow" in recorded):
        handle.add_sink(MlflowSink(tracking_uri=tracking_uri, experiment=experiment))
    for spec in sinks:
        handle.add_sink(spec)
    token = enter(handle)
    try:
        yield handle
    finally:
        leave(token)
        handle._close(status)
        if attached is None:  # an attached process's owner writes it as the run ends
            with contextlib.suppress(TetherError, OSError):
                write_manifest(record.dir, record.id)
