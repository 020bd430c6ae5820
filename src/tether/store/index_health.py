"""What an SQLite error says of the index file: damage (set it aside and rebuild) or trouble
for now (locked, full, read-only: one line, the file left alone); and setting a damaged file
aside without ever replacing an earlier copy."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from ..errors import disk_full


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
