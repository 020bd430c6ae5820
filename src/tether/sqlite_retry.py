"""SQLite under many processes: the two steps that need retrying when they all start at once.

Switching a fresh file to WAL needs an exclusive lock, and SQLite does not always call the busy
handler for it or for `BEGIN IMMEDIATE`; both are retried here with jittered back-off.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager


def _busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc)
    return "locked" in text or "busy" in text


def _pause(attempt: int, base: float, spread: float) -> None:
    # Jitter from os.urandom: the `random` module's import would cost every process that
    # opens an index, and this runs only when SQLite is busy.
    jitter = int.from_bytes(os.urandom(2), "big") / 65536
    time.sleep(base + jitter * spread * min(attempt + 1, 10))


def enable_wal(conn: sqlite3.Connection) -> None:
    """WAL journal with a long busy timeout; normal sync (WAL keeps commits atomic)."""
    conn.execute("PRAGMA busy_timeout = 60000")
    for attempt in range(200):
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            break
        except sqlite3.OperationalError as exc:
            if not _busy(exc):
                raise
            _pause(attempt, 0.005, 0.02)
    conn.execute("PRAGMA synchronous = NORMAL")


@contextmanager
def immediate(
    conn: sqlite3.Connection,
    what: str,
    *,
    attempts: int = 200,
    base: float = 0.005,
    spread: float = 0.02,
) -> Iterator[sqlite3.Connection]:
    """A write transaction (BEGIN IMMEDIATE ... COMMIT, ROLLBACK on any error)."""
    for attempt in range(attempts):
        try:
            conn.execute("BEGIN IMMEDIATE")
            break
        except sqlite3.OperationalError as exc:
            if not _busy(exc):
                raise
            _pause(attempt, base, spread)
    else:
        raise sqlite3.OperationalError(f"{what} stayed locked")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
