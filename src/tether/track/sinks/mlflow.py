"""The `mlflow` sink: a tether run mirrored as an MLflow run.

- When: after the run, by default. A run that tether records in this process sends nothing
  while it runs and never imports MLflow: at its end a background process syncs the finished
  run from its files (tether.track.sinks.mlflow_after), so MLflow costs the run a process
  start, not MLflow's import and store set-up. `live=True` (or `TETHER_MLFLOW_LIVE=1`) sends
  rows as they are flushed instead; so does the sink of a finished run (`open_run`, `tether
  mlflow sync`) and of a process attached to a run another process records.
- Tracking URI: the sink's `tracking_uri`, else `MLFLOW_TRACKING_URI`, else the run's home
  store (mlflow_state), else `sqlite:///<runs root>/mlflow.db` (embedded, no server;
  artifacts beside it in `mlartifacts/`). Experiment: the sink's `experiment`, else
  `MLFLOW_EXPERIMENT_NAME`, else the one recorded for that store, else the run's name.
  `remember=False` (an explicit `tether mlflow sync --tracking-uri`) records that store's state
  without making it the home store.
- The database and the experiment are made under a file lock (`<db>.lock`) the first time, so
  runs fanned out at once do not race on a fresh SQLite store (`ensure_experiment`).
- The MLflow run carries the tether run id as the tag `tether.run_id`; a run that logs again
  (resumed, re-opened with `tether.open_run`, synced) continues that MLflow run. With
  `new=True` a new MLflow run supersedes it: `tether.status` becomes `deprecated` on the old
  one and `active` on the new one, which names the old one in `tether.supersedes`.
- Params: the flattened config of run.lock, 100 per request; params are immutable in MLflow,
  so only new keys are logged on resume (a changed value is left as it was and listed in the
  store's record under `param_conflicts`).
- Metrics: `log_batch`, 1,000 values per request, timestamps from the rows' `t` and steps from
  their `step` (or their row number); each store's record counts the rows it holds, so only
  the rest are sent. Keys are mapped to MLflow names reversibly (mlflow_names).
- At the end: run.lock, config.yaml, output.log, summary.json, report.md and its PNGs (and
  files given to `run.log_artifact`) as artifacts, and the status (FINISHED, FAILED, KILLED).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ...clock import now_iso, parse_iso
from ...lock import dump_yaml
from ...store.state import BUSY
from ...store.values import flatten
from .base import Row, Sink, SinkContext
from .mlflow_after import start_sync
from .mlflow_names import mlflow_key, original_key, store_key
from .mlflow_state import FAILED, OK, PENDING, home_of, stores_of, summarise

__all__ = ["MlflowSink", "ensure_experiment", "mlflow_key", "original_key", "store_key"]

TAG_RUN_ID = "tether.run_id"
TAG_STATUS = "tether.status"
TAG_SUPERSEDES = "tether.supersedes"
TAG_SUPERSEDED_BY = "tether.superseded_by"
ACTIVE, DEPRECATED = "active", "deprecated"
DB_NAME = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
MAX_METRICS = 1000  # per log_batch request (MLflow's REST limit)
MAX_PARAMS = 100
MAX_PARAM_VALUE = 6000
STATUS = {"completed": "FINISHED", "failed": "FAILED", "terminated": "KILLED", "unknown": "FAILED"}
LIVE_ENV = "TETHER_MLFLOW_LIVE"
# What a sink that sends after the run tells History it holds: everything, so no row is read
# back from metrics.jsonl for it now (the background sync reads the file).
HOLDS_ALL = 1 << 62
CHUNK_ROWS = 5000  # rows read from metrics.jsonl at a time when a run is sent at its close

_ensured: set[tuple[str, str]] = set()


def default_uri(runs_root: Path | None) -> str:
    root = Path(runs_root) if runs_root is not None else Path.cwd()
    return f"sqlite:///{root.absolute() / DB_NAME}"


def resolve_uri(explicit: str | None, runs_root: Path | None) -> str:
    return explicit or os.environ.get("MLFLOW_TRACKING_URI") or default_uri(runs_root)


def sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///") :].split("?", 1)[0])


def ms(iso: str | None) -> int | None:
    """Milliseconds since the epoch of a tether time (UTC ISO-8601)."""
    when = parse_iso(iso)
    return None if when is None else int(when.timestamp() * 1000)


def flat_params(config: dict[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in flatten(config).items():
        text = json.dumps(value, default=str) if isinstance(value, (list, dict)) else str(value)
        if len(text) > MAX_PARAM_VALUE:
            text = text[: MAX_PARAM_VALUE - 3] + "..."
        out[mlflow_key(key)] = text
    return out


def _quiet_http() -> None:
    # tether retries with its own backoff: MLflow's default (7 retries, ~4 minutes) would hold
    # every flush that long when the server is gone. Users' own settings win.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """One process at a time creates a SQLite store and its experiments."""
    db = sqlite_path(uri)
    if db is None:
        yield
        return
    import fcntl  # noqa: PLC0415 (POSIX only)

    db.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{db}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        quiet = [logging.getLogger(n) for n in ("alembic", "mlflow.store.db.utils")]
        levels = [q.level for q in quiet]
        for q in quiet:
            q.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for q, level in zip(quiet, levels, strict=True):
                q.setLevel(level)
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_experiment(uri: str, name: str) -> tuple[str, Any]:
    """Create the store (a SQLite file, the first time) and the experiment `name` if needed,
    once per process, under a file lock; return the experiment id.

    Call it once before starting many runs at once on a fresh store (MLflow's schema migration
    races otherwise); the sink calls it too. Returns (experiment id, MlflowClient).
    """
    _quiet_http()
    from mlflow.tracking import MlflowClient

    if (uri, name) in _ensured:
        client = MlflowClient(tracking_uri=uri)
        found = client.get_experiment_by_name(name)
        if found is not None and found.lifecycle_stage == "active":
            return str(found.experiment_id), client
    with _store_lock(uri):
        client = MlflowClient(tracking_uri=uri)  # opening a SQLite store migrates its schema
        found = client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                client.restore_experiment(found.experiment_id)
            _ensured.add((uri, name))
            return str(found.experiment_id), client
        location = None
        db = sqlite_path(uri)
        if db is not None:
            safe = re.sub(r"[^\w.-]", "_", name) or "experiment"
            location = (db.parent / ARTIFACTS_DIR / safe).absolute().as_uri()
        experiment_id = client.create_experiment(name, artifact_location=location)
        _ensured.add((uri, name))
        return str(experiment_id), client


def _one_line(what: str, exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:500]
    if isinstance(exc, ImportError):
        text += " (install it: pip install 'tether[mlflow]')"
    return f"{what}: {text}"


class MlflowSink(Sink):
    name = "mlflow"

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment: str | None = None,
        artifacts: bool = True,
        live: bool | None = None,
        remember: bool = True,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.artifacts = artifacts
        self.live = live
        self.remember = remember
        self.after = False  # send after the run, from a background process
        self.client: Any = None
        self.uri: str | None = None
        self.key: str | None = None  # store_key(uri)
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.experiment_name: str | None = None
        self.created = False
        self.supersedes: str | None = None
        self.conflicts: list[str] = []
        self.rows = 0  # rows of metrics.jsonl the store holds
        self.sent = 0  # rows sent by this sink
        self.params = 0
        self.error: str | None = None
        self.ended_as: str | None = None
        self.synced: str | None = None
        self.started: int | None = None  # pid of the background sync
        self._stores: dict[str, dict[str, Any]] | None = None  # summary.json's, at open
        self._home: str | None = None
        self._keys: dict[str, str] = {}

    def _guard(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Call fn, remembering its error for this store's record (the runner retries)."""
        try:
            out = fn(*args)
        except Exception as exc:
            self.error = _one_line(what, exc)
            raise
        self.error = None
        return out

    # -- opening ----------------------------------------------------------------------------
    def open(self, ctx: SinkContext) -> int | None:
        self._stores = stores_of(ctx.state)
        self._home = home_of(ctx.state)
        # The sink's own setting, the environment's, the run's home store, the default.
        self.uri = resolve_uri(
            self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or ctx.state.get("uri"),
            ctx.runs_root,
        )
        self.key = store_key(self.uri)
        record = self._stores.get(self.key) or {}
        # What the store holds until this sink knows better (kept if opening fails).
        self.run_id = record.get("run_id")
        self.experiment_id = record.get("experiment_id")
        self.rows = int(record.get("rows") or 0)
        self.params = int(record.get("params") or 0)
        self.experiment_name = (
            self.experiment
            or os.environ.get("MLFLOW_EXPERIMENT_NAME")
            or record.get("experiment")
            or ctx.run_name
            or "tether"
        )
        live = self.live if self.live is not None else os.environ.get(LIVE_ENV) == "1"
        # A running run (not a finished one re-opened) waits: at its end it is synced in the
        # background (`ended`), or, where this process does not record its end, at `close`.
        self.after = ctx.status is None and not live and ctx.run_dir is not None
        if self.after:
            return int(self._guard("open", self._open_after))
        return self._guard("open", self._open_live, ctx, record)

    def _open_after(self) -> int:
        # Checked now, without importing it: a missing MLflow is one line in the run's log.
        if importlib.util.find_spec("mlflow") is None:
            raise ModuleNotFoundError("No module named 'mlflow'")
        return HOLDS_ALL

    def _open_live(self, ctx: SinkContext, record: dict[str, Any]) -> int:
        assert self.uri is not None and self.experiment_name is not None
        self.experiment_id, client = ensure_experiment(self.uri, self.experiment_name)
        self.client = client
        previous = self._find(ctx, record)
        self.run_id, held = None, 0
        if previous is not None and not ctx.new:
            self.run_id = previous.info.run_id
            if record.get("run_id") == self.run_id:
                held = int(record.get("rows") or 0)
            if ctx.status is None and previous.info.status != "RUNNING":
                client.update_run(self.run_id, status="RUNNING")  # the run resumes
        else:
            self._create(ctx)
            assert self.run_id is not None
            if previous is not None:
                old = previous.info.run_id
                client.set_tag(old, TAG_STATUS, DEPRECATED)
                client.set_tag(old, TAG_SUPERSEDED_BY, self.run_id)
                client.set_tag(self.run_id, TAG_SUPERSEDES, old)
                self.supersedes = old
        assert self.run_id is not None
        self.rows = held
        self._tags(ctx)
        self._params(ctx, None if self.created else previous)
        return held

    def _find(self, ctx: SinkContext, record: dict[str, Any]) -> Any:
        """The MLflow run of this tether run: the one recorded for this store, else the newest
        active one tagged with its id."""
        client = self.client
        recorded = record.get("run_id")
        if recorded:
            try:
                run = client.get_run(recorded)
            except Exception:
                run = None
            if (
                run is not None
                and run.info.lifecycle_stage == "active"
                and run.data.tags.get(TAG_STATUS) != DEPRECATED
            ):
                return run
        if not ctx.run_id:
            return None
        found = client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{TAG_RUN_ID}` = '{ctx.run_id}'",
            order_by=["attributes.start_time DESC"],
            max_results=50,
        )
        for run in found:
            if run.data.tags.get(TAG_STATUS) != DEPRECATED:
                return run
        return None

    def _create(self, ctx: SinkContext) -> None:
        tags = {TAG_STATUS: ACTIVE}
        if ctx.run_id:
            tags[TAG_RUN_ID] = ctx.run_id
        short = (ctx.run_id or "")[:13]
        run_name = f"{ctx.run_name or 'run'}-{short}" if short else (ctx.run_name or None)
        start = ms(ctx.started) or int(time.time() * 1000)
        run = self.client.create_run(
            self.experiment_id, start_time=start, tags=tags, run_name=run_name
        )
        self.run_id = run.info.run_id
        self.created = True

    def _tags(self, ctx: SinkContext) -> None:
        from mlflow.entities import RunTag

        tags = {}
        if ctx.run_name:
            tags["tether.name"] = ctx.run_name
        if ctx.run_dir is not None:
            tags["tether.dir"] = str(ctx.run_dir)
        if ctx.source_commit:
            tags["mlflow.source.git.commit"] = ctx.source_commit
        if ctx.label:
            tags["tether.label"] = ctx.label
        if ctx.tags:
            tags["tether.tags"] = ", ".join(ctx.tags)
        if tags:
            self.client.log_batch(
                self.run_id, tags=[RunTag(k, str(v)[:8000]) for k, v in tags.items()]
            )

    def _params(self, ctx: SinkContext, existing_run: Any) -> None:
        from mlflow.entities import Param

        wanted = flat_params(ctx.config)
        have: dict[str, str] = {}
        if existing_run is not None:
            have = dict(existing_run.data.params)
        elif not self.created:
            have = dict(self.client.get_run(self.run_id).data.params)
        new = {k: v for k, v in wanted.items() if k not in have}
        self.conflicts = sorted(k for k, v in wanted.items() if k in have and have[k] != v)
        if self.conflicts:
            logging.getLogger("tether.mlflow").warning(
                "MLflow params are immutable: %s kept their first values",
                ", ".join(self.conflicts[:10]),
            )
        items = [Param(k, v) for k, v in new.items()]
        for i in range(0, len(items), MAX_PARAMS):
            self.client.log_batch(self.run_id, params=items[i : i + MAX_PARAMS])
        self.params = len(have) + len(new)

    # -- rows -------------------------------------------------------------------------------
    def _key(self, key: str) -> str:
        name = self._keys.get(key)
        if name is None:
            name = self._keys[key] = mlflow_key(key)
        return name

    def write(self, rows: Sequence[Row], first: int) -> None:
        if self.after:
            return  # the background sync reads them from metrics.jsonl
        self._guard("write", self._write, rows, first)

    def _write(self, rows: Sequence[Row], first: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = []
        for i, row in enumerate(rows):
            step = int(row.get("step", first + i))
            t = row.get("t")
            stamp = round(t * 1000) if isinstance(t, (int, float)) else now
            for key, value in row.items():
                if key == "step" or key == "t":
                    continue
                metrics.append(Metric(self._key(key), float(value), stamp, step))
        for i in range(0, len(metrics), MAX_METRICS):
            self.client.log_batch(self.run_id, metrics=metrics[i : i + MAX_METRICS])
        self.rows = max(self.rows, first + len(rows))
        self.sent += len(rows)

    # -- the end ----------------------------------------------------------------------------
    def close(self, status: str | None, ctx: SinkContext) -> None:
        if self.after:
            if ctx.after_end:
                return  # `ended` starts the background sync once the record is complete
            # This process does not record the run's end (a batch task's run, a process
            # attached to a run): it sends the run now, as the background sync would.
            self.after = False
            self._guard("close", self._catch_up, status, ctx)
            return
        if self.client is None or self.run_id is None:
            return
        self._guard("close", self._close, status, ctx)

    def _catch_up(self, status: str | None, ctx: SinkContext) -> None:
        assert self._stores is not None and self.key is not None
        start = self._open_live(ctx, self._stores.get(self.key) or {})
        chunk: list[Row] = []
        for row in ctx.rows(start) if ctx.rows is not None else ():
            chunk.append(row)
            if len(chunk) >= CHUNK_ROWS:
                self._write(chunk, start)
                start, chunk = start + len(chunk), []
        if chunk:
            self._write(chunk, start)
        self._close(status, ctx)

    def _close(self, status: str | None, ctx: SinkContext) -> None:
        if self.artifacts:
            self._artifacts(ctx)
        final = status or ctx.status
        if final in BUSY:
            return
        end = ms(ctx.stopped) if ctx.status is not None else None
        self.client.set_terminated(
            self.run_id, status=STATUS.get(final or "completed", "FINISHED"), end_time=end
        )
        self.ended_as, self.synced = final or "completed", now_iso()

    def ended(self, ctx: SinkContext) -> None:
        """The run's record is complete: start its sync in the background."""
        if not self.after or ctx.run_dir is None or ctx.runs_root is None:
            return
        assert self.uri is not None and self.experiment_name is not None
        self.started = self._guard(
            "start", start_sync, ctx.run_dir, ctx.runs_root, self.uri, self.experiment_name
        )

    def _artifacts(self, ctx: SinkContext) -> None:
        client, run_id = self.client, self.run_id
        if ctx.config:
            with tempfile.TemporaryDirectory(prefix="tether-mlflow-") as tmp:
                path = Path(tmp) / "config.yaml"
                path.write_text(dump_yaml(ctx.config), encoding="utf-8")
                client.log_artifact(run_id, str(path), "tether")
        run_dir = ctx.run_dir
        for path in ctx.artifact_files():
            if path.is_dir():
                client.log_artifacts(run_id, str(path), f"artifacts/{path.name}")
                continue
            folder = "tether"
            if run_dir is not None and path.parent == run_dir / "plots":
                folder = "tether/plots"
            elif path in ctx.extra_artifacts:
                folder = "artifacts"
            client.log_artifact(run_id, str(path), folder)

    # -- what summary.json remembers --------------------------------------------------------
    def record(self) -> dict[str, Any]:
        """This store's record (mlflow_state), as it stands."""
        assert self._stores is not None and self.key is not None
        out = dict(self._stores.get(self.key) or {})
        out["uri"] = self.uri
        for key, value in (
            ("experiment", self.experiment_name),
            ("experiment_id", self.experiment_id),
            ("run_id", self.run_id),
            ("supersedes", self.supersedes),
            ("ended", self.ended_as),
            ("synced", self.synced),
        ):
            if value:
                out[key] = value
        out["rows"], out["params"] = self.rows, self.params
        if self.conflicts:
            out["param_conflicts"] = self.conflicts
        if self.error:
            out["status"], out["error"] = FAILED, self.error
        else:
            out.pop("error", None)
            out["status"] = PENDING if self.after else OK
        if self.after:  # what an earlier sync sent the run's end with is not this end
            out.pop("ended", None)
            out.pop("synced", None)
        return out

    def info(self) -> dict[str, Any]:
        if self._stores is None or self.key is None:
            return {}  # not opened: summary.json keeps what it had
        stores = dict(self._stores)
        stores[self.key] = self.record()
        home = self.key if self.remember else self._home
        out = summarise(stores, home)
        # The runner's own counts are of this call's store: only the home store's go on top.
        out["retries"] = None
        return out
