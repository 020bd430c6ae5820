"""The SQLite index over run folders: a cache for fast listing and filtering.

Deleting it loses nothing: `Index.rebuild` recreates it exactly from the run folders. Config and
metric values live in one key/value table (`vals`) indexed on (run, key) and (key, num), so a
filter on any key is an indexed EXISTS sub-query however many runs there are.

The index has the runs root's change journal (store/journal.py): a writer announces a change
with `intend` before it writes the run's records and then upserts with `announced=True`; an
`upsert` or `remove` not announced first appends its entry after. Every read first applies the
entries it has not applied yet (store/cache.py), so a writer killed between its records and
its upsert leaves no lag, and the caches of other hosts on a shared filesystem learn of the
change. Changes learned from the journal go in through `applying`, which writes no entry. The
`meta` table keeps the journal's id and the number of the last entry applied.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..fsio import follow_umask
from ..sqlite_retry import enable_wal, immediate
from .applying import Applying, Position, read_position, write_position
from .index_health import is_damage
from .journal import COALESCE_S, Journal
from .records import IndexRow, RunRecord
from .state import sql_status
from .values import record_values, value_pair

SCHEMA_VERSION = 3
# Versions that become this one in place, by these statements (no rebuild from the folders).
_UPGRADES = {2: ("CREATE INDEX IF NOT EXISTS runs_status ON runs (status)",)}

_DDL = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  status TEXT NOT NULL,
  created TEXT NOT NULL,
  started TEXT,
  stopped TEXT,
  host TEXT,
  pid INTEGER,
  proc_start INTEGER,
  exit_code INTEGER,
  label TEXT,
  parent TEXT,
  dir TEXT NOT NULL,
  lock_digest TEXT
);
CREATE INDEX IF NOT EXISTS runs_created ON runs (created);
CREATE INDEX IF NOT EXISTS runs_name ON runs (name);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started);
CREATE TABLE IF NOT EXISTS tags (
  run TEXT NOT NULL,
  tag TEXT NOT NULL,
  PRIMARY KEY (run, tag)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tags_tag ON tags (tag);
CREATE TABLE IF NOT EXISTS vals (
  run TEXT NOT NULL,
  key TEXT NOT NULL,
  num REAL,
  txt TEXT,
  PRIMARY KEY (run, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS vals_key_num ON vals (key, num);
CREATE TABLE IF NOT EXISTS stages (
  run TEXT NOT NULL,
  upstream TEXT NOT NULL,
  name TEXT NOT NULL,
  PRIMARY KEY (run, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS stages_upstream ON stages (upstream);
CREATE INDEX IF NOT EXISTS runs_digest ON runs (lock_digest);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_RUN_TABLES = (("runs", "id"), ("tags", "run"), ("vals", "run"), ("stages", "run"))

_COLUMNS = (
    "id, name, status, created, started, stopped, host, pid, proc_start, exit_code, label, "
    "parent, dir"
)


@lru_cache(maxsize=256)
def _pattern(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except (re.error, RecursionError, OverflowError, ValueError):
        return None


def _regexp(pattern: object, value: object) -> int:
    """SQLite's `value REGEXP pattern` (a search, as `~` in --where): compiled once per pattern."""
    if value is None or not isinstance(pattern, str):
        return 0
    compiled = _pattern(pattern)
    if compiled is None:
        return 0
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # config.epochs ~ "^10$" matches the number 10
    return 1 if compiled.search(value if isinstance(value, str) else str(value)) else 0


class Index:
    def __init__(self, path: Path, journal: Journal | None = None) -> None:
        self.path = path
        self.journal = journal  # the runs root's change journal: changes are announced there
        self._conn: sqlite3.Connection | None = None
        self.was_reset = False  # an index of another schema was dropped on open
        self._hint: int | None = None  # a journal entry known to exist (finds the end sooner)
        # Journal entries this process announced for its own writes: `_intended` by run until
        # the run's row is written, then `_covered` until the position passes them (_advance).
        self._intended: dict[str, list[int]] = {}
        self._covered: set[int] = set()
        self._ident: str | None = None
        self._compact_to = 0  # a position that passed a shard boundary, to compact after

    # -- connection -------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new_file = not self.path.exists()
        conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        if new_file:
            # SQLite creates the file 0644 whatever the umask (and its -wal/-shm files with
            # the database's mode): the umask decides, as for the run folders' files.
            follow_umask(self.path)
        conn.row_factory = sqlite3.Row
        conn.create_function("regexp", 2, _regexp, deterministic=True)
        conn.create_function("tether_status", 4, sql_status)  # `status` in --where (fields.py)
        enable_wal(conn)
        self._conn = conn
        self._ensure_schema()
        return conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with immediate(self._connect(), f"{self.path}: database") as conn:
            yield conn

    def _ensure_schema(self) -> None:
        conn = self._conn
        assert conn is not None
        row = None
        try:
            row = conn.execute("SELECT version FROM schema_version").fetchone()
        except sqlite3.OperationalError:
            pass
        if row is not None and row[0] == SCHEMA_VERSION:
            return
        if row is not None and row[0] in _UPGRADES:
            try:
                self._upgrade()
                return
            except sqlite3.OperationalError as exc:
                if not is_damage(exc):
                    return  # read-only or busy now: usable as it is, upgraded by a later writer
                raise
        with self._tx() as c:
            row = None
            try:
                row = c.execute("SELECT version FROM schema_version").fetchone()
            except sqlite3.OperationalError:
                pass
            if row is not None and row[0] == SCHEMA_VERSION:
                return
            if row is not None:
                # An index from another tether version: it is only a cache, so start afresh.
                for table in ("runs", "tags", "vals", "stages", "meta", "schema_version"):
                    c.execute(f"DROP TABLE IF EXISTS {table}")
                self.was_reset = True
            for statement in _DDL.split(";"):
                if statement.strip():
                    c.execute(statement)
            c.execute("DELETE FROM schema_version")
            c.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))

    def _upgrade(self) -> None:
        """An index of an older version that differs only by indexes: add them in place (a
        table index, e.g. on `status` for the in-flight runs `tether runs` checks)."""
        with self._tx() as c:
            row = c.execute("SELECT version FROM schema_version").fetchone()
            if row is None or row[0] not in _UPGRADES:
                return  # another process upgraded it meanwhile
            for statement in _UPGRADES[row[0]]:
                c.execute(statement)
            c.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- writes -----------------------------------------------------------------------------
    def intend(self, run_id: str, kind: str) -> None:
        """Announce, before writing them, that run `run_id`'s records are about to change
        (`kind`: created, state, attrs, summary, ...): a writer killed before its upsert then
        leaves an entry the next read applies from the folder. Raises OSError when the journal
        cannot be written (the records could not be either)."""
        seq = self._announce(run_id, kind)
        if seq is not None:
            self._intended.setdefault(run_id, []).append(seq)

    def upsert(self, record: RunRecord, kind: str = "update", *, announced: bool = False) -> None:
        """Index one run's current files; `kind` is what the journal entry says changed, added
        after the row unless the writer announced it before its records (`intend`)."""
        with self._tx() as c:
            self._upsert(c, record)
            failed = self._cover(c, [record.id], None if announced else kind)
        self._compact()
        if failed is not None:
            raise failed

    def upsert_many(
        self, records: Iterable[RunRecord], kind: str = "update", *, announced: bool = False
    ) -> None:
        """Several runs in one transaction (a batch worker's runs)."""
        with self._tx() as c:
            done = []
            for record in records:
                self._upsert(c, record)
                done.append(record.id)
            failed = self._cover(c, done, None if announced else kind)
        self._compact()
        if failed is not None:
            raise failed

    def _cover(self, c: sqlite3.Connection, run_ids: list[str], kind: str | None) -> OSError | None:
        """Inside the transaction that wrote these runs' rows: their journal entries (announced
        now when `kind` is given, else those `intend` announced) are applied by that very
        write, so the position moves past them when nothing of another writer lies between.
        Then the next read of this index finds nothing pending: no run folder is read again
        and yaml is not loaded to list the run just made. A writer killed before the commit
        leaves its entries unapplied, for the next read. Returns the OSError of an entry that
        could not be written (raised after the commit, as before: the rows stay)."""
        if self.journal is None:
            return None
        for run_id in run_ids:
            if kind is None:
                self._covered.update(self._intended.pop(run_id, ()))
                continue
            try:
                seq = self._announce(run_id, kind)
            except OSError as exc:
                return exc
            if seq is not None:
                self._covered.add(seq)
        if self._covered:
            self._advance(c)
        return None

    def _advance(self, c: sqlite3.Connection) -> None:
        """Move the position over the entries this process covered, from where it is: only
        across a run of consecutive numbers, so another writer's entry stops it."""
        if self._ident is None:
            self._ident = self.journal.ident() if self.journal is not None else None
        position = read_position(c) or (None, 0)
        if position[0] is None and position[1] == 0 and self._ident is not None:
            position = (self._ident, 0)  # never synced: adopt the journal from its start
        if position[0] != self._ident or self._ident is None:
            return
        seq = position[1]
        while seq + 1 in self._covered:
            seq += 1
        self._covered = {n for n in self._covered if n > seq}
        if seq != position[1]:
            self._set_position(c, (self._ident, seq))
            if self.journal is not None and self.journal.shard(seq) != self.journal.shard(
                position[1]
            ):
                self._compact_to = seq  # after the commit (catch_up's rule: older shards may go)

    def _compact(self) -> None:
        if self._compact_to and self.journal is not None:
            applied, self._compact_to = self._compact_to, 0
            self.journal.compact(applied)

    def _announce(self, run_id: str, kind: str) -> int | None:
        if self.journal is None:
            return None
        applied = None
        if self._hint is None or kind in COALESCE_S:
            # A coalesced kind needs what this host applied; either way a known entry.
            try:
                position = self.position()
            except sqlite3.Error:  # a damaged index must not stop the announcement
                position = None
            applied = position[1] if position and position[0] is not None else 0
            if self._hint is None:
                self._hint = applied
        seq = self.journal.append(run_id, kind, hint=self._hint, applied=applied)
        if seq is not None:
            self._hint = seq
        return seq

    def _upsert(self, c: sqlite3.Connection, record: RunRecord) -> None:
        st = record.state
        c.execute(
            f"INSERT OR REPLACE INTO runs ({_COLUMNS}, lock_digest) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.id,
                record.lock.name,
                st.status,
                record.lock.created,
                st.started,
                st.stopped,
                st.host,
                st.pid,
                st.proc_start,
                st.exit_code,
                record.attrs.label,
                record.lock.parent,
                str(record.dir),
                record.lock.digest(),
            ),
        )
        c.execute("DELETE FROM stages WHERE run = ?", (record.id,))
        c.executemany(
            "INSERT OR REPLACE INTO stages (run, upstream, name) VALUES (?, ?, ?)",
            [(record.id, st.run, st.name) for st in record.lock.stages],
        )
        c.execute("DELETE FROM tags WHERE run = ?", (record.id,))
        c.executemany(
            "INSERT OR IGNORE INTO tags (run, tag) VALUES (?, ?)",
            [(record.id, t) for t in record.attrs.tags],
        )
        c.execute("DELETE FROM vals WHERE run = ?", (record.id,))
        c.executemany(
            "INSERT INTO vals (run, key, num, txt) VALUES (?, ?, ?, ?)",
            [(record.id, k, *value_pair(v)) for k, v in record_values(record).items()],
        )

    def remove(self, run_id: str, *, announced: bool = False) -> None:
        with self._tx() as c:
            self._remove(c, run_id)
            failed = self._cover(c, [run_id], None if announced else "removed")
        self._compact()
        if failed is not None:
            raise failed

    def _remove(self, c: sqlite3.Connection, run_id: str) -> None:
        for table, col in _RUN_TABLES:
            c.execute(f"DELETE FROM {table} WHERE {col} = ?", (run_id,))

    def rebuild(self, records: Iterable[RunRecord], position: Position | None = None) -> int:
        """Replace every row by these runs, in one transaction (killed midway: the old rows
        stay); `position`: the journal entry they include."""
        count = 0
        with self._tx() as c:
            for table, _col in _RUN_TABLES:
                c.execute(f"DELETE FROM {table}")
            for record in records:
                self._upsert(c, record)
                count += 1
            if position is not None:
                self._set_position(c, position)
        return count

    def rebuild_file(self, records: Iterable[RunRecord], position: Position | None = None) -> int:
        """Build a new file from these runs beside the old one and rename it into place: an
        interrupted rebuild (Ctrl-C, SIGKILL) leaves the old file (missing, damaged, set
        aside) as it was, and a later command rebuilds again. The way to heal a file that
        cannot hold a transaction; a healthy one is rebuilt in place (`rebuild`), so writers
        waiting on it lose nothing."""
        self.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_name(f".{self.path.name}.rebuild-{os.getpid()}")
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{temp}{suffix}").unlink(missing_ok=True)
        fresh = Index(temp)
        try:
            count = fresh.rebuild(records, position)
            conn = fresh._connect()
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.execute("PRAGMA journal_mode = DELETE")  # one self-contained file to rename
        finally:
            fresh.close()
        for suffix in ("-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        os.replace(temp, self.path)
        return count

    # -- the journal position (a cache on a shared filesystem) ------------------------------
    def position(self) -> Position | None:
        """The journal entry this cache has applied last; None: never brought up to date."""
        return read_position(self._connect())

    def _set_position(self, c: sqlite3.Connection, position: Position) -> None:
        write_position(c, position)

    @contextmanager
    def applying(self) -> Iterator[Applying]:
        """A write transaction for changes learned from the journal (no new entries): apply
        them, and the position, together; one at a time per host (SQLite's write lock), so two
        processes catching up never write an older state of a run over a newer one."""
        with self._tx() as c:
            yield Applying(self, c)

    # -- reads ------------------------------------------------------------------------------
    def ids(self) -> list[str]:
        return [r[0] for r in self._connect().execute("SELECT id FROM runs ORDER BY id")]

    def probe(self) -> None:
        self._connect().execute("SELECT 1 FROM runs LIMIT 1").fetchall()

    def count(self) -> int:
        return int(self._connect().execute("SELECT count(*) FROM runs").fetchone()[0])

    def rows(
        self,
        *,
        limit: int | None = None,
        where_sql: str = "",
        params: Iterable[Any] = (),
        order_sql: str = "runs.created DESC, runs.id DESC",
    ) -> list[IndexRow]:
        conn = self._connect()
        sql = f"SELECT {_COLUMNS} FROM runs"
        if where_sql:
            sql += f" WHERE {where_sql}"
        sql += f" ORDER BY {order_sql}"
        args = list(params)
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        found = conn.execute(sql, args).fetchall()
        out = [_row(r) for r in found]
        if not out:
            return out
        by_id = {r.id: r for r in out}
        marks = ",".join("?" * len(by_id))
        for run, tag in conn.execute(
            f"SELECT run, tag FROM tags WHERE run IN ({marks}) ORDER BY tag", list(by_id)
        ):
            by_id[run].tags.append(tag)
        for run, key, num in conn.execute(
            f"SELECT run, key, num FROM vals WHERE run IN ({marks}) "
            "AND key LIKE 'metrics.%.last' AND num IS NOT NULL",
            list(by_id),
        ):
            by_id[run].metrics[key[len("metrics.") : -len(".last")]] = num
        return out

    def ids_with_prefix(self, prefix: str) -> list[tuple[str, str]]:
        conn = self._connect()
        upper = prefix + "\uffff"
        return [
            (r[0], r[1])
            for r in conn.execute(
                "SELECT id, name FROM runs WHERE id >= ? AND id < ? ORDER BY created DESC",
                (prefix, upper),
            )
        ]

    def consumers(self, run_id: str) -> list[tuple[str, str]]:
        """Runs that recorded `run_id` as a previous stage, with the stage name."""
        return [
            (r[0], r[1])
            for r in self._connect().execute(
                "SELECT stages.run, stages.name FROM stages JOIN runs ON runs.id = stages.run "
                "WHERE stages.upstream = ? ORDER BY runs.created",
                (run_id,),
            )
        ]

    def completed_twin(self, digest: str, exclude: str | None = None) -> str | None:
        """The newest completed run with this lock digest (for --needed)."""
        row = (
            self._connect()
            .execute(
                "SELECT id FROM runs WHERE lock_digest = ? AND status = 'completed' AND id != ? "
                "ORDER BY created DESC LIMIT 1",
                (digest, exclude or ""),
            )
            .fetchone()
        )
        return row[0] if row else None

    def values(self, run_id: str) -> dict[str, Any]:
        conn = self._connect()
        return {
            key: (num if num is not None else txt)
            for key, num, txt in conn.execute(
                "SELECT key, num, txt FROM vals WHERE run = ? ORDER BY key", (run_id,)
            )
        }


def _row(r: sqlite3.Row) -> IndexRow:
    return IndexRow(
        id=r["id"],
        name=r["name"],
        status=r["status"],
        created=r["created"],
        started=r["started"],
        stopped=r["stopped"],
        host=r["host"],
        pid=r["pid"],
        label=r["label"],
        parent=r["parent"],
        dir=r["dir"],
        proc_start=r["proc_start"],
        exit_code=r["exit_code"],
    )
