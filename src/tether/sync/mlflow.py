"""`tether mlflow sync [RUNS]`: create or update the MLflow runs of past tether runs; and the
background sync that follows a run logged with the `mlflow` sink (`python -m
tether.sync.mlflow --after RUN_DIR`, started by tether.track.sinks.mlflow_after).

Each finished run is re-opened with `tether.open_run` and an MLflow sink: the MLflow run
tagged with its id is found (or made), the params it lacks are logged (from run.lock, so
redacted values stay redacted), the rows of metrics.jsonl the store lacks are sent
(summary.json remembers, per store, the MLflow run and how many rows it holds), then the
artifacts and the final status. Running it twice changes nothing the second time, so it
backfills runs made while MLflow was missing or its server was down, and completes a
background sync that failed or was cut short.

Stores: the one given (`tracking_uri`, used for this call only: it does not become the run's
home store), else MLFLOW_TRACKING_URI, else the run's home store, else the default. One sync of
a run at a time (the run's sync lock): a run whose sync runs elsewhere is skipped, or waited
for (`wait` seconds).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import TetherError
from ..session.open import open_run
from ..store import Store, open_store
from ..store.state import BUSY
from ..track.sinks.mlflow import MlflowSink
from ..track.sinks.mlflow_after import sync_lock


@dataclass
class SyncResult:
    id: str
    name: str
    action: str  # created | updated | superseded | skipped | failed
    mlflow_run: str | None = None
    experiment: str | None = None
    uri: str | None = None
    rows: int = 0  # metric rows sent this time
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def sync_run(
    store: Store,
    run_id: str,
    *,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    new: bool = False,
    remember: bool | None = None,
    wait: float | None = None,
    locked: bool = False,
) -> SyncResult:
    """Sync one run (see the module docstring). `remember`: make the store the run's home
    (default: unless `tracking_uri` is given). `locked`: the caller holds the run's sync lock
    (the background sync, which was handed it)."""
    record = store.load(run_id)
    if record.status in BUSY:
        return SyncResult(
            record.id, record.name, "skipped", detail=f"{record.status}: sync it when done"
        )
    if locked:
        return _sync(store, record.id, tracking_uri, experiment, new, remember)
    with sync_lock(record.dir, wait) as held:
        if not held.acquired:
            who = f" (pid {held.holder})" if held.holder else ""
            if wait is not None:
                return SyncResult(
                    record.id,
                    record.name,
                    "failed",
                    detail=f"its MLflow sync{who} still runs after {wait:g} s",
                )
            return SyncResult(
                record.id,
                record.name,
                "skipped",
                detail=f"an MLflow sync of it runs{who}; `tether mlflow sync --wait` waits for it",
            )
        return _sync(store, record.id, tracking_uri, experiment, new, remember)


def _sync(
    store: Store,
    run_id: str,
    tracking_uri: str | None,
    experiment: str | None,
    new: bool,
    remember: bool | None,
) -> SyncResult:
    record = store.load(run_id)  # as the sync before this one (if any) left it
    sink = MlflowSink(
        tracking_uri=tracking_uri,
        experiment=experiment,
        live=True,
        remember=tracking_uri is None if remember is None else remember,
    )
    try:
        with open_run(record, store=store, new=new, mlflow=False, sinks=[sink]):
            pass
    except TetherError as exc:
        return SyncResult(record.id, record.name, "failed", detail=str(exc))
    result = SyncResult(
        record.id,
        record.name,
        "updated",
        mlflow_run=sink.run_id,
        experiment=sink.experiment_name,
        uri=sink.uri,
        rows=sink.sent,
    )
    if sink.error:
        result.action, result.detail = "failed", sink.error
    elif sink.supersedes:
        result.action, result.detail = "superseded", f"supersedes {sink.supersedes}"
    elif sink.created:
        result.action = "created"
    return result


def sync_runs(
    store: Store,
    run_ids: Iterable[str],
    *,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    new: bool = False,
    wait: float | None = None,
) -> list[SyncResult]:
    return [
        sync_run(store, rid, tracking_uri=tracking_uri, experiment=experiment, new=new, wait=wait)
        for rid in run_ids
    ]


# -- the background sync after a run ------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """`python -m tether.sync.mlflow --after RUN_DIR --runs-root ROOT --tracking-uri URI
    --experiment NAME [--lock-fd N]`: sync the finished run in RUN_DIR into its home store.
    The result is in the run's summary.json; the exit status says whether it worked."""
    parser = argparse.ArgumentParser(prog="python -m tether.sync.mlflow")
    parser.add_argument("--after", required=True, metavar="RUN_DIR")
    parser.add_argument("--runs-root", required=True)
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--experiment", required=True)
    # The run's sync lock, taken by the run's process and handed over: held until this exits.
    parser.add_argument("--lock-fd", type=int, default=None)
    parser.add_argument("--wait", type=float, default=3600.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.pop("TETHER_SINKS", None)  # MLflow only: the run's other sinks had their turn
    try:
        store = open_store(args.runs_root)
        record = store.load_dir(Path(args.after))
        result = sync_run(
            store,
            record.id,
            tracking_uri=args.tracking_uri,
            experiment=args.experiment,
            remember=True,
            wait=None if args.lock_fd is not None else args.wait,
            locked=args.lock_fd is not None,
        )
    except (TetherError, OSError) as exc:
        print(f"tether: MLflow sync of {args.after}: {exc}", file=sys.stderr)
        return 1
    if result.action == "failed":
        print(f"tether: MLflow sync of {args.after}: {result.detail}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
