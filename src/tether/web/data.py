"""What the view's API answers, as plain data: the same store calls as the CLI (`tether runs`,
`show`, `compare`, `label`/`tag`/`note`), with no web framework in sight."""

from __future__ import annotations

from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..capture.lineage import LineageNode, upstream_tree
from ..errors import TetherError
from ..lock import LOCK_FILE
from ..store import Store
from ..store.fields import FIELDS, Field, parse_field
from ..store.layout import METRICS, OUTPUT
from ..store.ranks import read_ranks
from ..store.records import IndexRow, RunRecord
from ..store.select import count, known_keys, short_ids_of, values_of
from ..store.sorting import parse_columns
from ..store.values import flatten
from ..track.metrics_file import RESERVED, is_number, read_rows, step_of
from .downsample import keep
from .seriescache import cached

MAX_PAGE = 1000  # runs one page holds at most
DEFAULT_PAGE = 100
DEFAULT_POINTS = 2000  # the point budget of a series when the page asks none
MAX_POINTS = 100_000
DEFAULT_COLUMNS = ("name", "status", "started", "label")
MAX_DEFAULT_METRICS = 6


class BadRequest(TetherError):
    """A parameter of a request that cannot be used (answered 400)."""


def _int(value: str | None, name: str, default: int, low: int, high: int) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise BadRequest(f"{name}={value!r}: expected a whole number") from None
    if not low <= number <= high:
        raise BadRequest(f"{name}={number}: expected {low} to {high}")
    return number


def row_json(row: IndexRow, short: str) -> dict[str, Any]:
    return {
        "id": row.id,
        "short_id": short,
        "name": row.name,
        "status": row.effective_status(),
        "created": row.created,
        "started": row.started,
        "stopped": row.stopped,
        "host": row.host,
        "exit_code": row.exit_code,
        "label": row.label,
        "tags": row.tags,
        "parent": row.parent,
        "metrics": row.metrics,
    }


def runs_page(
    store: Store,
    where: str | None = None,
    sort: str | None = None,
    columns: str | None = None,
    limit: str | None = None,
    offset: str | None = None,
) -> dict[str, Any]:
    """One page of `tether runs --where --sort --columns`: the rows, the total that match, and
    the columns (the chosen ones, or name, status, started, label and the page's metrics)."""
    size = _int(limit, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
    start = _int(offset, "offset", 0, 0, 10**9)
    where = where or None
    sort = sort or None
    chosen = parse_columns(columns) if columns else None
    # The store pages from the start (the index-driven plan wants a limit): skip `start` rows.
    rows = store.query(where=where, sort=sort, limit=start + size)[start:]
    total = count(store.index, where) if store.root.is_dir() else 0
    ids = [r.id for r in rows]
    shorts = short_ids_of(store.index, ids) if ids else {}
    fields = chosen if chosen is not None else _default_fields(rows)
    keys = [f.key for f in fields if f.kind == "val"]
    found = values_of(store.index, ids, keys) if ids else {}
    items = []
    for r in rows:
        item = row_json(r, shorts.get(r.id, r.id[:13]))
        item["columns"] = {
            f.name: found[r.id].get(f.key) if f.kind == "val" else _plain(item, f.name)
            for f in fields
        }
        items.append(item)
    return {
        "total": total,
        "offset": start,
        "limit": size,
        "columns": [{"name": f.name, "kind": f.kind} for f in fields],
        "runs": items,
    }


def column_keys(store: Store) -> dict[str, Any]:
    """What the table's column picker offers: the plain fields of every run, and each key some
    run of the index has (`config.*`, `flags.*`, `data.*`, `metrics.K` for the last value and
    `metrics.K.min` / `.max`), from the index alone (one indexed step per key)."""
    keys: list[str] = []
    if store.root.is_dir():
        for key in known_keys(store.index):
            if key.startswith("metrics."):
                base, _, stat = key.rpartition(".")
                if stat == "last":
                    keys.append(base)  # `metrics.loss` is the last value, as in --columns
                elif stat in ("min", "max"):
                    keys.append(key)
            else:
                keys.append(key)
    plain = [f for f in FIELDS if "<" not in f and f not in ("id", "project")]
    return {"plain": plain, "keys": keys}


def _default_fields(rows: list[IndexRow]) -> list[Field]:
    fields = [parse_field(n) for n in DEFAULT_COLUMNS]
    counts: dict[str, int] = {}
    for r in rows:
        for key in r.metrics:
            counts[key] = counts.get(key, 0) + 1
    ranked = sorted(counts, key=lambda k: (-counts[k], k))[:MAX_DEFAULT_METRICS]
    # Made directly, not parsed: a metric named `acc.min` is a key, not a statistic.
    return fields + [Field(f"metrics.{k}", "val", key=f"metrics.{k}.last") for k in ranked]


def _plain(item: dict[str, Any], name: str) -> Any:
    if name == "op":
        return item["name"]
    if name == "tag":
        return item["tags"]
    if name == "source.commit":
        return None  # a vals-less column the index row does not hold
    return item.get(name)


def run_detail(store: Store, record: RunRecord) -> dict[str, Any]:
    """What `tether show --json` holds, and the run's command and sources for the page."""
    shorts = short_ids_of(store.index, [record.id])
    state = record.state.to_dict()
    state["status"] = record.status
    return {
        "id": record.id,
        "short_id": shorts.get(record.id, record.id[:13]),
        "name": record.name,
        "dir": str(record.dir),
        "created": record.lock.created,
        "parent": record.lock.parent,
        "command": record.lock.command,
        "state": state,
        "attrs": asdict(record.attrs),
        "summary": record.summary,
        "metrics": record.metrics(),
        "config": record.lock.config,
        "config_flat": flatten(record.lock.config),
        "flags": record.lock.flags,
        "sources": [asdict(s) for s in record.lock.sources],
        "data": [asdict(d) for d in record.lock.data],
        "stages": [asdict(s) for s in record.lock.stages],
        "env": record.lock.env,
        "ranks": [r.to_dict() for r in read_ranks(record.dir)],
        "lineage": _node(upstream_tree(store, record)),
        "files": {"lock": LOCK_FILE, "output": OUTPUT},
    }


def _node(node: LineageNode) -> dict[str, Any]:
    return {
        "id": node.id,
        "name": None if node.missing else node.name,
        "status": node.status,
        "stage": node.stage,
        "missing": node.missing,
        "children": [_node(c) for c in node.children],
    }


def metrics(
    run_dir: Path,
    keys: str | None = None,
    since: str | None = None,
    points: str | None = None,
) -> dict[str, Any]:
    """The run's metric series from metrics.jsonl, row `since` on, each cut to `points`
    (min, max and last of each bucket kept). `next` is the row to ask from next time."""
    start = _int(since, "since", 0, 0, 10**12)
    budget = _int(points, "points", DEFAULT_POINTS, 3, MAX_POINTS)
    wanted = frozenset(k.strip() for k in keys.split(",") if k.strip()) if keys else None
    path = run_dir / METRICS
    try:
        info = path.stat()
    except OSError:
        return {"since": start, "next": start, "series": {}}
    version = (info.st_size, info.st_mtime_ns, info.st_ino)
    # A file that did not change gives the same answer: charts drawn again (back, forward,
    # compare after the run page) cost no parse. A growing file has a new size: a new key.
    # A finished file's answer is also kept on this host's cache disk, for the next server.
    return cached(
        path,
        info,
        (sorted(wanted) if wanted else None, start, budget),
        lambda: _series(path, version, wanted, start, budget),
    )


@lru_cache(maxsize=256)
def _series(
    path: Path,
    version: tuple[int, int, int],
    wanted: frozenset[str] | None,
    start: int,
    budget: int,
) -> dict[str, Any]:
    xs: dict[str, list[float]] = {}
    ys: dict[str, list[float]] = {}
    ts: dict[str, list[float | None]] = {}
    rows = 0
    for row in read_rows(path, start):
        position = start + rows
        rows += 1
        step = step_of(row)
        t = row.get("t")
        when = float(t) if is_number(t) else None
        for key, value in row.items():
            if key in RESERVED or not is_number(value) or (wanted and key not in wanted):
                continue
            xs.setdefault(key, []).append(float(step if step is not None else position))
            ys.setdefault(key, []).append(float(value))
            ts.setdefault(key, []).append(when)
    series = {}
    for key in xs:
        kept = keep(ys[key], budget)
        times = [ts[key][i] for i in kept]
        series[key] = {
            "x": [xs[key][i] for i in kept],
            "y": [ys[key][i] for i in kept],
            # Wall-clock seconds of each point (the rows' `t`), for charts by time; None when
            # the rows have none.
            "t": times if any(w is not None for w in times) else None,
            "count": len(xs[key]),
            "downsampled": len(kept) < len(xs[key]),
        }
    return {"since": start, "next": start + rows, "series": series}


def compare(store: Store, records: list[RunRecord], every: bool = False) -> dict[str, Any]:
    """`tether compare`: each run's config (only the keys whose values differ across the runs,
    unless `every`) and final metrics."""
    shorts = short_ids_of(store.index, [r.id for r in records])
    configs = [
        {k: v for k, v in flatten(r.lock.config).items() if k != "save_dir"} for r in records
    ]
    keys: list[str] = []
    for cfg in configs:
        keys += [k for k in cfg if k not in keys]
    missing = object()
    differing = [k for k in keys if len({repr(c.get(k, missing)) for c in configs}) > 1]
    shown = keys if every else differing
    metric_keys: list[str] = []
    for r in records:
        metric_keys += [k for k in r.metrics() if k not in metric_keys]
    return {
        "keys": shown,
        "differing": differing,
        "metric_keys": metric_keys,
        "runs": [
            {
                "id": r.id,
                "short_id": shorts.get(r.id, r.id[:13]),
                "name": r.name,
                "status": r.status,
                "label": r.attrs.label,
                "config": {k: cfg[k] for k in shown if k in cfg},
                "metrics": r.metrics(),
            }
            for r, cfg in zip(records, configs, strict=True)
        ],
    }


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"{what}: expected a string, found {type(value).__name__}")
    return value


def set_label(store: Store, record: RunRecord, body: dict[str, Any]) -> dict[str, Any]:
    """`{"label": "best"}` sets the label, `{"label": null}` clears it (`tether label`)."""
    if "label" not in body:
        raise BadRequest('expected {"label": TEXT} or {"label": null}')
    value = body["label"]
    if value is not None:
        value = _text(value, "label").strip()
        if not value:
            raise BadRequest('label is empty; send {"label": null} to clear it')
    if value is not None or record.attrs.label is not None:
        store.add_attr(record, "label", value)
    return asdict(record.attrs)


def set_tags(store: Store, record: RunRecord, body: dict[str, Any]) -> dict[str, Any]:
    """`{"add": [...], "remove": [...]}` (`tether tag RUN +a -b`)."""
    add = body.get("add") or []
    remove = body.get("remove") or []
    if not isinstance(add, list) or not isinstance(remove, list) or not (add or remove):
        raise BadRequest('expected {"add": [TAG, ...], "remove": [TAG, ...]}')
    for t in (*add, *remove):
        t = _text(t, "tag")
        if not t.strip():
            raise BadRequest("a tag is empty")
        if t != t.strip() or "," in t:
            raise BadRequest(f"tag {t!r}: no commas, and no spaces at either end")
    for t in add:
        if t not in record.attrs.tags:
            store.add_attr(record, "tag", t)
    for t in remove:
        if t in record.attrs.tags:
            store.add_attr(record, "untag", t)
    return asdict(record.attrs)


def add_note(store: Store, record: RunRecord, body: dict[str, Any]) -> dict[str, Any]:
    """`{"text": "..."}` adds a note (`tether note RUN TEXT`)."""
    text = _text(body.get("text"), "text").strip()
    if not text:
        raise BadRequest("the note is empty")
    store.add_attr(record, "note", text)
    return asdict(record.attrs)
