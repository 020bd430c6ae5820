"""What an SQLite error says of the index file: damage (set it aside and rebuild) or trouble
for now (locked, full, read-only: one line, the file left alone); and setting a damaged file
aside without ever replacing an earlier copy."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from ..errors import disk_full

# The tables an index must have (store/index.py makes them); one missing is damage (rebuilt),
# not an empty store.
TABLES = ("schema_version", "runs", "tags", "vals", "stages")


def is_damage(exc: BaseException) -> bool:
    """Whether an SQLite error means the file is damaged (rebuild it) rather than unusable for
    now (locked, disk full, read-only, cannot open: report it and leave the file alone)."""
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc)
        return "no such table" in text or "no such column" in text
    return isinstance(exc, sqlite3.DatabaseError)


def trouble(path: Path, exc: BaseException | str) -> str:
    """One line for an index that cannot be used now (transient trouble, never damage)."""
    text = str(exc)
    if "full" in text.lower():
        return disk_full(path)
    return f"index {path} cannot be used now ({text})"


def set_aside(path: Path) -> Path:
    """Move a damaged index (and its WAL files) to `<path>.damaged*`, for inspection; where.

    A copy set aside before is never replaced: this one takes the next free name
    (`index.db.damaged.1`, ...), so a second damage before a rebuild succeeded (the debris of
    a killed rebuild, say) cannot destroy the first copy."""
    dest = Path(f"{path}.damaged")
    n = 0
    while any(os.path.lexists(f"{dest}{s}") for s in ("", "-wal", "-shm")):
        n += 1
        dest = Path(f"{path}.damaged.{n}")
    for suffix in ("", "-wal", "-shm"):
        damaged = Path(f"{path}{suffix}")
        if damaged.exists():
            os.replace(damaged, f"{dest}{suffix}")
    return dest


def diagnose(path: Path, *, thorough: bool = False) -> tuple[str, str | None]:
    """The state of the index file, read-only: ("missing" | "empty" | "incomplete" |
    "damaged" | "unavailable" | "ok", detail); "ok" with detail "no rows" when it lists no
    run. "unavailable" (locked, cannot open read-only now) says nothing of the file.
    `thorough` adds `PRAGMA quick_check` (reads every page: for `tether check`)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "missing", None
    except OSError as exc:
        return "unavailable", exc.strerror or str(exc)
    if size == 0:
        wal = Path(f"{path}-wal")
        if not wal.exists() or wal.stat().st_size == 0:
            return "empty", "a 0-byte file"
        return "ok", None  # a new file whose pages are all in its WAL yet
    try:
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error as exc:
        return ("damaged" if is_damage(exc) else "unavailable"), str(exc)
    try:
        if thorough:
            rows = [str(r[0]) for r in conn.execute("PRAGMA quick_check").fetchall()]
            if rows != ["ok"]:
                return "damaged", "; ".join(rows)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        missing = [t for t in TABLES if t not in tables]
        if missing:  # being made by another process, or tables dropped: filled in place
            return "incomplete", "no table " + ", ".join(missing)
        if conn.execute("SELECT 1 FROM runs LIMIT 1").fetchone() is None:
            return "ok", "no rows"
        return "ok", None
    except sqlite3.Error as exc:
        return ("damaged" if is_damage(exc) else "unavailable"), str(exc)
    finally:
        conn.close()
