"""`tether mlflow sync [RUNS]`: create or update the MLflow runs of past tether runs.

Each finished run is re-opened with `tether.open_run(..., mlflow=True)`: the MLflow run tagged
with its id is found (or made), the params it lacks are logged, the rows of metrics.jsonl it
lacks are sent (summary.json remembers how many each store holds; MLflow drops exact repeats
anyway), then the artifacts and the final status. Running it twice changes nothing the second
time, so it backfills runs made while MLflow was missing or its server was down.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import TetherError
from ..session.open import open_run
from ..store import Store
from ..store.state import BUSY


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


def _state(summary: dict[str, Any]) -> dict[str, Any]:
    state = (summary.get("sinks") or {}).get("mlflow")
    return dict(state) if isinstance(state, dict) else {}


def sync_run(
    store: Store,
    run_id: str,
    *,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    new: bool = False,
) -> SyncResult:

    record = store.load(run_id)
    status = record.status
    if status in BUSY:
        return SyncResult(record.id, record.name, "skipped", detail=f"{status}: sync it when done")
    before = _state(record.summary)
    try:
        with open_run(
            record,
            store=store,
            new=new,
            mlflow=True,
            tracking_uri=tracking_uri,
            experiment=experiment,
        ) as handle:
            pass
    except TetherError as exc:
        return SyncResult(record.id, record.name, "failed", detail=str(exc))
    after = _state(handle.record.summary)
    result = SyncResult(
        record.id,
        record.name,
        "updated",
        mlflow_run=after.get("run_id"),
        experiment=after.get("experiment"),
        uri=after.get("uri"),
    )
    if after.get("status") == "failed":
        result.action, result.detail = "failed", str(after.get("error") or "")
        return result
    same = before.get("uri") == after.get("uri") and before.get("run_id") == after.get("run_id")
    result.rows = int(after.get("rows") or 0) - (int(before.get("rows") or 0) if same else 0)
    if after.get("supersedes") and after.get("supersedes") != before.get("supersedes"):
        result.action = "superseded"
        result.detail = f"supersedes {after['supersedes']}"
    elif not same:
        result.action = "created"  # no MLflow run recorded for this store before
    return result


def sync_runs(
    store: Store,
    run_ids: Iterable[str],
    *,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    new: bool = False,
) -> list[SyncResult]:
    return [
        sync_run(store, rid, tracking_uri=tracking_uri, experiment=experiment, new=new)
        for rid in run_ids
    ]
