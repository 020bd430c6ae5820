"""What summary.json remembers of a run's MLflow stores (`sinks.mlflow`).

    "mlflow": {
      "stores": {                                  # one record per tracking store, keyed by
        "sqlite:////runs/mlflow.db": {             # its normalised URI (mlflow_names.store_key)
          "uri": "sqlite:////runs/mlflow.db", "experiment": "train", "experiment_id": "1",
          "run_id": "9f...", "rows": 1201, "params": 154, "status": "ok",
          "ended": "completed", "synced": "2026-12-02T03:10:00.123Z"
        },
        "http://127.0.0.1:5000": {"uri": ..., "status": "failed", "error": "open: ..."}
      },
      "uri": "sqlite:////runs/mlflow.db", "run_id": "9f...", "rows": 1201, "status": "ok", ...
    }

`rows` counts the rows of metrics.jsonl that store holds (in the MLflow run `run_id`), so a
sync to A, then B, then A sends A only what it lacks. `status` is `pending` while the sync
after the run has not finished, `ok`, or `failed` with its `error`; `ended` is the run's status
sent with the MLflow run's end. The keys beside `stores` repeat the record of the run's *home*
store: the one it logs to without an explicit URI (the run's own, or the last plain sync's);
`tether mlflow sync --tracking-uri X` records X under `stores` only. A summary.json written
before `stores` existed reads as its one store.
"""

from __future__ import annotations

from typing import Any

from .mlflow_names import store_key

# The fields of a store's record that the top level repeats for the home store.
MIRROR = (
    "uri",
    "experiment",
    "experiment_id",
    "run_id",
    "rows",
    "params",
    "status",
    "error",
    "ended",
    "synced",
    "supersedes",
    "param_conflicts",
)
PENDING, OK, FAILED = "pending", "ok", "failed"


def stores_of(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The per-store records of a `sinks.mlflow` entry, by normalised URI."""
    stores = state.get("stores")
    if isinstance(stores, dict):
        return {k: dict(v) for k, v in stores.items() if isinstance(v, dict)}
    uri = state.get("uri")
    if isinstance(uri, str) and uri:
        return {store_key(uri): {k: state[k] for k in MIRROR if k in state}}
    return {}


def home_of(state: dict[str, Any]) -> str | None:
    """The normalised URI of the run's home store, if it has one."""
    uri = state.get("uri")
    return store_key(uri) if isinstance(uri, str) and uri else None


def summarise(stores: dict[str, dict[str, Any]], home: str | None) -> dict[str, Any]:
    """The `sinks.mlflow` entry: every store, and the home store's record repeated on top.
    Fields the home store lacks are None (the sink runner drops them)."""
    record = (stores.get(home) if home else None) or {}
    out: dict[str, Any] = {k: record.get(k) for k in MIRROR}
    out["stores"] = stores
    return out


def store_state(summary: dict[str, Any], uri: str) -> dict[str, Any] | None:
    """The record of the store `uri` in a run's summary.json, if any."""
    state = (summary.get("sinks") or {}).get("mlflow")
    if not isinstance(state, dict):
        return None
    return stores_of(state).get(store_key(uri))


def pending_stores(summary: dict[str, Any]) -> list[str]:
    """The URIs of the stores whose sync after the run has not finished."""
    state = (summary.get("sinks") or {}).get("mlflow")
    if not isinstance(state, dict):
        return []
    return [
        str(r.get("uri") or k) for k, r in stores_of(state).items() if r.get("status") == PENDING
    ]
