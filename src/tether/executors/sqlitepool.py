"""The task pool on a local disk: tasks in SQLite (`tasks.db` in the parent run folder).

A claim is atomic (one `BEGIN IMMEDIATE` transaction) and carries a lease: the worker's
heartbeat thread renews it while the task runs. Every claim is also an attempt row (`attempts`),
so "each task completed exactly once" can be checked afterwards. SQLite is safe here because
every process that opens the file runs on this host; on a shared filesystem the pool is files
(filepool.py) instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import TetherError
from ..sqlite_retry import enable_wal, immediate
from .pooltypes import STATUSES, Claim, Outcome, TaskRow, default_lease, json_or_none

POOL_FILE = "tasks.db"

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
  idx INTEGER PRIMARY KEY,
  item TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'pending',
  worker TEXT,
  lease REAL,
  attempts INTEGER NOT NULL DEFAULT 0,
  run TEXT,
  prepared INTEGER NOT NULL DEFAULT 0,
  result TEXT,
  error TEXT,
  started REAL,
  stopped REAL
);
CREATE INDEX IF NOT EXISTS tasks_status ON tasks (status, idx);
CREATE TABLE IF NOT EXISTS attempts (
  idx INTEGER NOT NULL,
  attempt INTEGER NOT NULL,
  worker TEXT NOT NULL,
  run TEXT,
  status TEXT NOT NULL,
  started REAL NOT NULL,
  stopped REAL,
  PRIMARY KEY (idx, attempt)
);
"""


class SqlitePool:
    """The tasks of one batch, in `<parent run folder>/tasks.db`."""

    def __init__(self, path: str | os.PathLike[str], lease_s: float | None = None) -> None:
        self.path = Path(path)
        self.lease_s = lease_s if lease_s is not None else default_lease()
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()

    # -- connection -------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        conn = sqlite3.connect(
            self.path, timeout=60.0, isolation_level=None, check_same_thread=False
        )
        enable_wal(conn)
        self._conn, self._pid = conn, os.getpid()
        self._lock = threading.Lock()
        return conn

    def close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "lease_s": self.lease_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path, self.lease_s = state["path"], state["lease_s"]
        self._conn, self._pid = None, os.getpid()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        with (
            self._lock,
            immediate(conn, f"{self.path}: the task pool", attempts=400, base=0.002, spread=0.01),
        ):
            yield conn

    # -- creation ---------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        folder: str | os.PathLike[str],
        items: Sequence[Any],
        meta: dict[str, Any] | None = None,
        lease_s: float | None = None,
    ) -> SqlitePool:
        path = Path(folder) / POOL_FILE
        if path.exists():
            raise TetherError(f"{path} exists already: this folder holds a batch")
        # Built aside and renamed into place: a reader never sees a pool without its tables.
        # Nothing reads the file while it is built, so it is written in one transaction with
        # no journal and no sync, then fsynced once (~1.5 ms, where a journaled build with a
        # sync per statement took ~6); it is left in WAL mode, so no opener has to switch it.
        tmp = path.with_name(f".{POOL_FILE}.{os.getpid()}.{os.urandom(4).hex()}")
        try:
            cls._build(tmp, items, meta or {})
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        os.replace(tmp, path)
        return cls(path, lease_s)

    @staticmethod
    def _build(tmp: Path, items: Sequence[Any], meta: dict[str, Any]) -> None:
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = OFF")
            conn.execute("PRAGMA synchronous = OFF")
            conn.execute("BEGIN")
            for statement in _DDL.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.executemany(
                "INSERT INTO tasks (idx, item) VALUES (?, ?)",
                [(i, json.dumps(item)) for i, item in enumerate(items)],
            )
            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [(k, json.dumps(v)) for k, v in meta.items()],
            )
            conn.execute("COMMIT")
            conn.execute("PRAGMA journal_mode = WAL")
        finally:
            conn.close()
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @classmethod
    def open(cls, folder: str | os.PathLike[str], lease_s: float | None = None) -> SqlitePool:
        path = Path(folder) / POOL_FILE
        if not path.is_file():
            raise TetherError(f"{folder} holds no task pool ({POOL_FILE}): is it a batch run?")
        return cls(path, lease_s)

    def meta(self) -> dict[str, Any]:
        rows = self._connect().execute("SELECT key, value FROM meta").fetchall()
        return {k: json.loads(v) for k, v in rows}

    def set_meta(self, key: str, value: Any) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value))
            )

    def set_prepared(self, runs: dict[int, str]) -> None:
        """Child runs made ahead (status `queued`) for tasks not yet started."""
        with self._tx() as c:
            c.executemany(
                "UPDATE tasks SET run = ?, prepared = 1 WHERE idx = ? AND status = 'pending'",
                [(run, idx) for idx, run in runs.items()],
            )

    # -- claims -----------------------------------------------------------------------------
    def claim(
        self,
        worker: str,
        finished: tuple[Claim, Outcome] | None = None,
        new_run: str | None = None,
    ) -> Claim | None:
        """Record how the previous task ended (if given) and claim the next one, in one
        transaction. `new_run` is the id the attempt's run gets unless the task has a run made
        ahead (queued) and never started. None when nothing is claimable now (see `wait_hint`).
        """
        claims = self.claim_many(worker, [finished] if finished is not None else [], [new_run])
        return claims[0] if claims else None

    def claim_many(
        self,
        worker: str,
        finished: Sequence[tuple[Claim, Outcome]],
        new_runs: Sequence[str | None],
    ) -> list[Claim]:
        """Record how the `finished` attempts ended and claim up to `len(new_runs)` pending
        tasks (the i-th gets `new_runs[i]` as its run's id, as `claim`), in one transaction; or,
        with none pending, one task whose lease ran out. No new run ids: only the record."""
        now = time.time()
        with self._tx() as c:
            for claim, outcome in finished:
                self._finish(c, claim, outcome, now)
            if not new_runs:
                return []
            rows = c.execute(
                "SELECT idx, item, attempts, run, prepared FROM tasks WHERE status = 'pending' "
                "ORDER BY idx LIMIT ?",
                (len(new_runs),),
            ).fetchall()
            if not rows:
                row = c.execute(
                    "SELECT idx, item, attempts, run, prepared FROM tasks "
                    "WHERE status = 'running' AND lease < ? ORDER BY lease LIMIT 1",
                    (now,),
                ).fetchone()
                if row is None:
                    return []
                # The holder stopped renewing: its attempt is over (and its run with it).
                c.execute(
                    "UPDATE attempts SET status = 'lost', stopped = ? "
                    "WHERE idx = ? AND attempt = ? AND stopped IS NULL",
                    (now, row[0], row[2]),
                )
                rows = [row]
            claims = [
                Claim(
                    idx,
                    json.loads(item),
                    attempts + 1,
                    worker,
                    run if prepared else new,
                    bool(prepared),
                    run,
                )
                for (idx, item, attempts, run, prepared), new in zip(rows, new_runs, strict=False)
            ]
            c.executemany(
                "UPDATE tasks SET status = 'running', worker = ?, lease = ?, attempts = ?, "
                "run = COALESCE(?, run), prepared = 0, started = ?, stopped = NULL, error = NULL "
                "WHERE idx = ?",
                [(worker, now + self.lease_s, k.attempt, k.run, now, k.index) for k in claims],
            )
            c.executemany(
                "INSERT OR REPLACE INTO attempts (idx, attempt, worker, run, status, started) "
                "VALUES (?, ?, ?, ?, 'running', ?)",
                [(k.index, k.attempt, worker, k.run, now) for k in claims],
            )
        return claims

    def unclaim(self, claims: Sequence[Claim]) -> None:
        """Claims never started, handed back as if never made: the task pending again with the
        run it had, and no attempt recorded. A claim no longer this worker's is left alone."""
        if not claims:
            return
        with self._tx() as c:
            for k in claims:
                held = c.execute(
                    "UPDATE tasks SET status = 'pending', worker = NULL, lease = NULL, "
                    "attempts = attempts - 1, run = ?, prepared = ?, started = NULL "
                    "WHERE idx = ? AND worker = ? AND attempts = ? AND status = 'running'",
                    (k.prior_run, int(k.prepared), k.index, k.worker, k.attempt),
                ).rowcount
                if held:
                    c.execute(
                        "DELETE FROM attempts WHERE idx = ? AND attempt = ?", (k.index, k.attempt)
                    )

    def heartbeat(self, claims: Sequence[Claim]) -> list[Claim]:
        """Renew the leases of these claims; the claims this worker no longer holds."""
        if not claims:
            return []
        lost = []
        with self._tx() as c:
            until = time.time() + self.lease_s
            for claim in claims:
                n = c.execute(
                    "UPDATE tasks SET lease = ? WHERE idx = ? AND worker = ? AND attempts = ? "
                    "AND status = 'running'",
                    (until, claim.index, claim.worker, claim.attempt),
                ).rowcount
                if n == 0:
                    lost.append(claim)
        return lost

    def finish(self, claim: Claim, outcome: Outcome) -> bool:
        """Record how an attempt ended; False when the claim was no longer this worker's (its
        lease expired and another worker took the task over: that worker's result counts)."""
        with self._tx() as c:
            return self._finish(c, claim, outcome, time.time())

    def _finish(self, c: sqlite3.Connection, claim: Claim, outcome: Outcome, now: float) -> bool:
        held = c.execute(
            "SELECT 1 FROM tasks WHERE idx = ? AND worker = ? AND attempts = ? "
            "AND status = 'running'",
            (claim.index, claim.worker, claim.attempt),
        ).fetchone()
        attempt_status = outcome.status if held else "lost"
        c.execute(
            "UPDATE attempts SET status = ?, stopped = ?, run = COALESCE(?, run) "
            "WHERE idx = ? AND attempt = ?",
            (attempt_status, now, outcome.run, claim.index, claim.attempt),
        )
        if not held:
            return False
        if outcome.status == "terminated":
            # Interrupted, not done: back in the pool, for this job's requeued self or another,
            # whose attempt continues the same run (`prepared`: the run exists).
            c.execute(
                "UPDATE tasks SET status = 'pending', worker = NULL, lease = NULL, "
                "run = COALESCE(?, run), prepared = (COALESCE(?, run) IS NOT NULL), stopped = ? "
                "WHERE idx = ?",
                (outcome.run, outcome.run, now, claim.index),
            )
        else:
            c.execute(
                "UPDATE tasks SET status = ?, worker = NULL, lease = NULL, prepared = 0, "
                "run = COALESCE(?, run), result = ?, error = ?, stopped = ? WHERE idx = ?",
                (
                    outcome.status,
                    outcome.run,
                    json_or_none(outcome.result),
                    outcome.error,
                    now,
                    claim.index,
                ),
            )
        return True

    # -- reading ----------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATUSES, 0)
        for status, n in self._connect().execute(
            "SELECT status, count(*) FROM tasks GROUP BY status"
        ):
            out[status] = n
        out["total"] = sum(out[s] for s in STATUSES)
        return out

    def unfinished(self) -> int:
        row = (
            self._connect()
            .execute("SELECT count(*) FROM tasks WHERE status IN ('pending', 'running')")
            .fetchone()
        )
        return int(row[0])

    def wait_hint(self) -> float | None:
        """Seconds until the earliest lease of a running task expires (None: none running)."""
        row = (
            self._connect()
            .execute("SELECT min(lease) FROM tasks WHERE status = 'running'")
            .fetchone()
        )
        if row is None or row[0] is None:
            return None
        return max(0.0, float(row[0]) - time.time())

    def rows(self) -> list[TaskRow]:
        out = []
        for (
            idx,
            item,
            status,
            attempts,
            run,
            error,
            result,
            worker,
            lease,
        ) in self._connect().execute(
            "SELECT idx, item, status, attempts, run, error, result, worker, lease FROM tasks "
            "ORDER BY idx"
        ):
            out.append(
                TaskRow(
                    idx,
                    json.loads(item),
                    status,
                    attempts,
                    run,
                    error,
                    json.loads(result) if result is not None else None,
                    worker,
                    lease,
                )
            )
        return out

    def attempts(self) -> list[dict[str, Any]]:
        cur = self._connect().execute(
            "SELECT idx, attempt, worker, run, status, started, stopped FROM attempts "
            "ORDER BY idx, attempt"
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur]

    # -- retry and abort --------------------------------------------------------------------
    def reset_for_retry(self) -> int:
        """Failed tasks, and tasks left running by workers that are gone (lease expired), back
        to pending; the number of tasks to run again (pending ones included)."""
        with self._tx() as c:
            c.execute(
                "UPDATE tasks SET status = 'pending', worker = NULL, lease = NULL, prepared = 0, "
                "error = NULL WHERE status = 'failed' OR (status = 'running' AND lease < ?)",
                (time.time(),),
            )
            row = c.execute("SELECT count(*) FROM tasks WHERE status = 'pending'").fetchone()
        return int(row[0])

    def release_all(self) -> list[str]:
        """The batch is being stopped: every running task back to pending; their runs."""
        with self._tx() as c:
            runs = [
                r[0] for r in c.execute("SELECT run FROM tasks WHERE status = 'running'") if r[0]
            ]
            now = time.time()
            c.execute(
                "UPDATE attempts SET status = 'terminated', stopped = ? WHERE stopped IS NULL",
                (now,),
            )
            c.execute(
                "UPDATE tasks SET status = 'pending', worker = NULL, lease = NULL, "
                "prepared = (run IS NOT NULL) WHERE status = 'running'"
            )
        return runs
