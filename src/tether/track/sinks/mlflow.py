"""The `mlflow` sink: a tether run mirrored as an MLflow run.

- Tracking URI: the sink's `tracking_uri`, else `MLFLOW_TRACKING_URI`, else
  `sqlite:///<runs root>/mlflow.db` (embedded, no server; artifacts beside it in
  `mlartifacts/`). Experiment: the sink's `experiment`, else `MLFLOW_EXPERIMENT_NAME`, else
  the run's name.
- The database and the experiment are made under a file lock (`<db>.lock`) the first time, so
  runs fanned out at once do not race on a fresh SQLite store (`ensure_experiment`).
- The MLflow run carries the tether run id as the tag `tether.run_id`; a run that logs again
  (resumed, re-opened with `tether.open_run`, synced) continues that MLflow run. With
  `new=True` a new MLflow run supersedes it: `tether.status` becomes `deprecated` on the old
  one and `active` on the new one, which names the old one in `tether.supersedes`.
- Params: the flattened config of run.lock, 100 per request; params are immutable in MLflow,
  so only new keys are logged on resume (a changed value is left as it was and listed in
  summary.json under `sinks.mlflow.param_conflicts`).
- Metrics: `log_batch`, 1,000 values per request, timestamps from the rows' `t` (so MLflow
  drops exact repeats and a backfill can be sent twice) and steps from their `step` (or their
  row number).
- At the end: run.lock, config.yaml, output.log, summary.json, report.md and its PNGs (and
  files given to `run.log_artifact`) as artifacts, and the status (FINISHED, FAILED, KILLED).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import posixpath
import re
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ...clock import parse_iso
from ...lock import dump_yaml
from ...store.index import flatten
from ...store.state import BUSY
from .base import Row, Sink, SinkContext

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
MAX_KEY = 250
STATUS = {"completed": "FINISHED", "failed": "FAILED", "terminated": "KILLED", "unknown": "FAILED"}

_ensured: set[tuple[str, str]] = set()
_BAD = re.compile(r"[^/\w.\- :]")


def default_uri(runs_root: Path | None) -> str:
    root = Path(runs_root) if runs_root is not None else Path.cwd()
    return f"sqlite:///{root.absolute() / DB_NAME}"


def resolve_uri(explicit: str | None, runs_root: Path | None) -> str:
    return explicit or os.environ.get("MLFLOW_TRACKING_URI") or default_uri(runs_root)


def sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///") :].split("?", 1)[0])


def mlflow_key(key: str) -> str:
    """A metric or param name MLflow accepts (no odd characters, no `..` or leading `/`)."""
    name = _BAD.sub("_", key)
    parts = [p if p not in (".", "..") else "_" for p in name.split("/") if p]
    name = "/".join(parts) or "_"
    if posixpath.normpath(name) != name:
        name = name.replace(".", "_")
    return name[:MAX_KEY]


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


class MlflowSink(Sink):
    name = "mlflow"

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment: str | None = None,
        artifacts: bool = True,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.artifacts = artifacts
        self.client: Any = None
        self.uri: str | None = None
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.experiment_name: str | None = None
        self.created = False
        self.supersedes: str | None = None
        self.conflicts: list[str] = []
        self._keys: dict[str, str] = {}

    # -- opening ----------------------------------------------------------------------------
    def open(self, ctx: SinkContext) -> int | None:
        # The sink's own setting, the environment's, where this run went before, the default.
        uri = resolve_uri(
            self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or ctx.state.get("uri"),
            ctx.runs_root,
        )
        self.uri = uri
        name = (
            self.experiment
            or os.environ.get("MLFLOW_EXPERIMENT_NAME")
            or ctx.state.get("experiment")
            or ctx.run_name
            or "tether"
        )
        self.experiment_name = name
        self.experiment_id, client = ensure_experiment(uri, name)
        self.client = client
        previous = self._find(ctx)
        held: int | None = 0
        if previous is not None and not ctx.new:
            self.run_id = previous.info.run_id
            same = ctx.state.get("uri") == uri and ctx.state.get("run_id") == self.run_id
            held = int(ctx.state.get("rows") or 0) if same else 0
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
        self._tags(ctx)
        self._params(ctx, None if self.created else previous)
        return held

    def _find(self, ctx: SinkContext) -> Any:
        """The MLflow run of this tether run: the recorded one, else the newest active one
        tagged with its id."""
        client = self.client
        recorded = ctx.state.get("run_id") if ctx.state.get("uri") == self.uri else None
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

    # -- rows -------------------------------------------------------------------------------
    def _key(self, key: str) -> str:
        name = self._keys.get(key)
        if name is None:
            name = self._keys[key] = mlflow_key(key)
        return name

    def write(self, rows: Sequence[Row], first: int) -> None:
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

    # -- the end ----------------------------------------------------------------------------
    def close(self, status: str | None, ctx: SinkContext) -> None:
        if self.client is None or self.run_id is None:
            return
        if self.artifacts:
            self._artifacts(ctx)
        final = status or ctx.status
        if final in BUSY:
            return
        end = ms(ctx.stopped) if ctx.status is not None else None
        self.client.set_terminated(
            self.run_id, status=STATUS.get(final or "completed", "FINISHED"), end_time=end
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

    def info(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.uri:
            out["uri"] = self.uri
        if self.experiment_name:
            out["experiment"] = self.experiment_name
        if self.experiment_id:
            out["experiment_id"] = self.experiment_id
        if self.run_id:
            out["run_id"] = self.run_id
        if self.supersedes:
            out["supersedes"] = self.supersedes
        if self.conflicts:
            out["param_conflicts"] = self.conflicts
        return out
