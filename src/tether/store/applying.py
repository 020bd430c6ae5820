"""Applying the change journal to the index: the position an index has reached in the
journal, and the transaction `Index.applying` yields to catch up (store/cache.py)."""

from __future__ import annotations

import sqlite3
from typing import Any, Protocol

from .records import Attributes, RunRecord
from .state import RunState
from .values import metric_values, value_pair

# The journal entry a cache has applied last: (journal id or None, entry number).
Position = tuple[str | None, int]
POSITION_KEY = "journal"


class IndexWrites(Protocol):
    """The writes of store/index.py's Index that a catch-up transaction makes."""

    def _upsert(self, c: sqlite3.Connection, record: RunRecord) -> None: ...

    def _remove(self, c: sqlite3.Connection, run_id: str) -> None: ...

    def _set_position(self, c: sqlite3.Connection, position: Position) -> None: ...


def write_position(c: sqlite3.Connection, position: Position) -> None:
    ident, seq = position
    c.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    c.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
        (POSITION_KEY, f"{ident or ''} {seq}"),
    )


def read_position(conn: sqlite3.Connection) -> Position | None:
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (POSITION_KEY,)).fetchone()
    except sqlite3.OperationalError:  # an index made before the meta table: never synced
        return None
    if row is None:
        return None
    ident, _, seq = str(row[0]).rpartition(" ")
    return (ident or None, int(seq))


class Applying:
    """What `Index.applying` yields: the transaction's reads and writes."""

    def __init__(self, index: IndexWrites, conn: sqlite3.Connection) -> None:
        self._index, self._conn = index, conn

    def position(self) -> Position | None:
        return read_position(self._conn)

    def upsert(self, record: RunRecord) -> None:
        self._index._upsert(self._conn, record)

    def has(self, run_id: str) -> bool:
        return (
            self._conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is not None
        )

    def update_records(
        self, run_id: str, state: RunState, attrs: Attributes, summary: dict[str, Any]
    ) -> None:
        """A run's state, label, tags and metrics, as its folder now has them; what run.lock
        gave the row (name, config, stages, ...) stays: run.lock is not read again. Only what
        differs from the row is written: an entry whose change the row already holds (its
        writer upserted, but another entry stood between it and the position) costs reads of
        pages in cache, not writes scattered over the value indexes of a large index."""
        c = self._conn
        columns = (
            state.status,
            state.started,
            state.stopped,
            state.host,
            state.pid,
            state.proc_start,
            state.exit_code,
            attrs.label,
        )
        row = c.execute(
            "SELECT status, started, stopped, host, pid, proc_start, exit_code, label "
            "FROM runs WHERE id = ?",
            (run_id,),
        ).fetchone()
        if row is None or tuple(row) != columns:
            c.execute(
                "UPDATE runs SET status = ?, started = ?, stopped = ?, host = ?, pid = ?, "
                "proc_start = ?, exit_code = ?, label = ? WHERE id = ?",
                (*columns, run_id),
            )
        tags = sorted(set(attrs.tags))
        held = sorted(r[0] for r in c.execute("SELECT tag FROM tags WHERE run = ?", (run_id,)))
        if held != tags:
            c.execute("DELETE FROM tags WHERE run = ?", (run_id,))
            c.executemany(
                "INSERT OR IGNORE INTO tags (run, tag) VALUES (?, ?)", [(run_id, t) for t in tags]
            )
        # The metrics.* keys of the (run, key) primary key: one range of it.
        metrics = {k: value_pair(v) for k, v in metric_values(summary).items()}
        have = {
            key: (num, txt)
            for key, num, txt in c.execute(
                "SELECT key, num, txt FROM vals WHERE run = ? AND key >= 'metrics.' "
                "AND key < 'metrics/'",
                (run_id,),
            )
        }
        if have != metrics:
            c.execute(
                "DELETE FROM vals WHERE run = ? AND key >= 'metrics.' AND key < 'metrics/'",
                (run_id,),
            )
            c.executemany(
                "INSERT OR REPLACE INTO vals (run, key, num, txt) VALUES (?, ?, ?, ?)",
                [(run_id, k, *pair) for k, pair in metrics.items()],
            )
        if attrs.project:  # adopted: no adoption leaves run.lock's project id in place
            c.execute(
                "INSERT OR REPLACE INTO vals (run, key, num, txt) VALUES (?, 'project', NULL, ?)",
                (run_id, attrs.project),
            )

    def remove(self, run_id: str) -> None:
        self._index._remove(self._conn, run_id)

    def set_position(self, position: Position) -> None:
        self._index._set_position(self._conn, position)
