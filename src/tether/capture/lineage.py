"""Previous stages: find the upstream run a run consumes, and walk lineage both ways."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import RunNotFound, TetherError
from ..lock import LOCK_FILE, StageRecord
from ..store import RunRecord, Store


def find_upstream(store: Store, ref: str) -> RunRecord:
    """An upstream run by folder path, id (or prefix), or name (its latest completed run)."""
    path = Path(ref).expanduser()
    if (path / LOCK_FILE).is_file():
        record = store.load_dir(path.resolve())
    else:
        named = store.index.rows(
            where_sql="runs.name = ? AND runs.status = 'completed'", params=[ref], limit=1
        )
        try:
            rows = named or store.resolve(ref)
        except RunNotFound:
            raise RunNotFound(
                f"upstream run {ref!r} not found in {store.root}",
                "give a run id, a run folder, or the name of a completed run",
            )
        record = store.load(rows[0].id)
    if record.status != "completed":
        raise TetherError(
            f"upstream run {record.id[:13]} ({record.name}) is {record.status}, not completed",
            "finish or re-run it first",
        )
    return record


def stage_record(name: str, upstream: RunRecord) -> StageRecord:
    return StageRecord(name=name, run=upstream.id, lock_digest=upstream.lock.digest())


@dataclass
class LineageNode:
    """One run in a lineage tree, with the runs that consumed it (or that it consumed)."""

    id: str
    name: str
    status: str
    stage: str | None = None
    children: list[LineageNode] = field(default_factory=list)
    missing: bool = False


def upstream_tree(
    store: Store, record: RunRecord, stage: str | None = None, seen: frozenset[str] = frozenset()
) -> LineageNode:
    node = LineageNode(record.id, record.name, record.status, stage)
    if record.id in seen:
        return node  # a cycle cannot be made by tether, but a hand-edited lock could
    for st in record.lock.stages:
        try:
            parent = store.load(st.run)
        except TetherError:
            node.children.append(LineageNode(st.run, "?", "missing", st.name, missing=True))
            continue
        node.children.append(upstream_tree(store, parent, st.name, seen | {record.id}))
    return node


def downstream_tree(
    store: Store, record: RunRecord, seen: frozenset[str] = frozenset()
) -> LineageNode:
    node = LineageNode(record.id, record.name, record.status)
    if record.id in seen:
        return node
    for run_id, stage in store.index.consumers(record.id):
        try:
            child = store.load(run_id)
        except TetherError:
            continue
        sub = downstream_tree(store, child, seen | {record.id})
        sub.stage = stage
        node.children.append(sub)
    return node
