"""The persistent stat cache behind `hash_data`: unchanged files are never read twice.

One SQLite file, `$TETHER_CACHE_DIR/hashes.db` (default `$XDG_CACHE_HOME/tether/hashes.db`,
else `~/.cache/tether/hashes.db`). A file's digest is valid while its (device, inode, size,
mtime_ns) are unchanged. The rows are grouped by the folder that holds the file: one row per
folder, keyed by the folder's (device, inode), whose value maps each name to
(device, inode, size, mtime_ns, digest). Re-checking an unchanged folder of 250 files is then one
indexed read instead of 250: on a two-core machine a row per file cost ~8 µs per lookup and ~4 µs
per insert, as much as hashing a 16 KiB file.

Safety:
- WAL journal and a busy timeout, writes in short `BEGIN IMMEDIATE` transactions that merge with
  what other processes wrote meanwhile, so concurrent `tether` processes share the file.
- Each value carries a checksum; a damaged value is a miss, never a wrong digest. So writes
  are not fsynced (`synchronous = OFF`): a crash can lose or damage rows, never mislead.
- A file SQLite cannot read (not a database, malformed) is deleted and recreated. Any other
  failure (read-only folder, lock held too long) turns the cache off for this call. The cache
  never makes hashing fail.
"""

from __future__ import annotations

import contextlib
import logging
import marshal
import os
import sqlite3
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from ...mounts import default_cache_dir  # TETHER_CACHE_DIR, else the XDG cache folder

log = logging.getLogger(__name__)

DB_NAME = "hashes.db"
SCHEMA = 1
BUSY_TIMEOUT_S = 15.0
_MARSHAL_VERSION = 4  # readable by every Python tether supports

# One cached file: (device, inode, size, mtime_ns, 32-byte digest).
FileRecord = tuple[int, int, int, int, bytes]
DirKey = tuple[int, int]

# CAST: a value someone rewrote as TEXT still comes back as bytes (and fails its checksum).
_SELECT = "SELECT CAST(entries AS BLOB), CAST(checksum AS BLOB) FROM dirs WHERE dev = ? AND ino = ?"
_U64 = 1 << 64
_I64_MAX = (1 << 63) - 1


def default_cache_path() -> Path:
    return default_cache_dir() / DB_NAME


def _signed(n: int) -> int:
    """SQLite integers are signed 64-bit; some file systems use inode numbers above 2**63."""
    return n - _U64 if n > _I64_MAX else n


def _checksum(blob: bytes) -> bytes:
    import blake3

    return blake3.blake3(blob).digest(length=16)


def _encode(entries: Mapping[str, FileRecord]) -> bytes:
    return marshal.dumps(dict(entries), _MARSHAL_VERSION)


def _decode(blob: bytes, check: bytes) -> dict[str, FileRecord] | None:
    """The folder's records, or None when the value is damaged or not what we wrote."""
    if _checksum(blob) != check:
        return None
    try:
        value = marshal.loads(blob)
    except (EOFError, ValueError, TypeError):
        return None
    if not isinstance(value, dict):
        return None
    return value


class HashCache:
    """Digests of files by folder; see the module docstring. Use from one thread at a time."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self.error: str | None = None  # why the cache is off, when it is
        self._db: sqlite3.Connection | None = None
        self._open()

    # -- opening, and replacing a damaged file ---------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # check_same_thread off: hash_data saves from a helper thread, never two at once.
        db = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()
            if mode is None or str(mode[0]).lower() != "wal":
                log.debug("hash cache %s: journal mode %s", self.path, mode)
            # No fsync: a row lost or torn by a crash is a miss (checksum) or a damaged file
            # (replaced); a surviving row is still checked against the file's stat.
            db.execute("PRAGMA synchronous = OFF")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA):
                db.execute("DROP TABLE IF EXISTS dirs")
            db.execute(
                "CREATE TABLE IF NOT EXISTS dirs ("
                " dev INTEGER NOT NULL, ino INTEGER NOT NULL,"
                " entries BLOB NOT NULL, checksum BLOB NOT NULL, written INTEGER NOT NULL,"
                " PRIMARY KEY (dev, ino)) WITHOUT ROWID"
            )
            if version != SCHEMA:
                db.execute(f"PRAGMA user_version = {SCHEMA}")
            # Reading one row proves the file is a database we can use.
            db.execute("SELECT 1 FROM dirs LIMIT 1").fetchall()
        except BaseException:
            db.close()
            raise
        return db

    def _open(self) -> None:
        try:
            self._db = self._connect()
            return
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and not _damaged(exc):
                self._off(exc)
                return
            first = exc
        except OSError as exc:
            self._off(exc)
            return
        log.warning("hash cache %s is damaged (%s); starting a new one", self.path, first)
        self._remove_files()
        try:
            self._db = self._connect()
        except (sqlite3.Error, OSError) as exc:
            self._off(exc)

    def _remove_files(self) -> None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                os.unlink(f"{self.path}{suffix}")

    def _off(self, exc: BaseException) -> None:
        self.error = f"{exc.__class__.__name__}: {exc}"
        log.warning("hash cache %s is off for this call (%s)", self.path, self.error)
        self.close()

    def _failed(self, exc: sqlite3.Error) -> None:
        """A query failed: replace a damaged file, otherwise stop using the cache."""
        if isinstance(exc, sqlite3.DatabaseError) and _damaged(exc):
            log.warning("hash cache %s is damaged (%s); starting a new one", self.path, exc)
            self.close()
            self._remove_files()
            try:
                self._db = self._connect()
                return
            except (sqlite3.Error, OSError) as again:
                exc = again if isinstance(again, sqlite3.Error) else exc
        self._off(exc)

    @property
    def enabled(self) -> bool:
        return self._db is not None

    def close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None

    def __enter__(self) -> HashCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading and writing -----------------------------------------------------------------
    def lookup(self, dirs: Iterable[DirKey]) -> dict[DirKey, dict[str, FileRecord]]:
        """The cached records of each folder that has some (missing folders are left out)."""
        found: dict[DirKey, dict[str, FileRecord]] = {}
        if self._db is None:
            return found
        query = _SELECT
        try:
            execute = self._db.execute
            for key in dirs:
                row = execute(query, (_signed(key[0]), _signed(key[1]))).fetchone()
                if row is None:
                    continue
                entries = _decode(row[0], row[1])
                if entries is not None:
                    found[key] = entries
        except sqlite3.Error as exc:
            self._failed(exc)
            return {}
        return found

    def store(
        self,
        updates: Mapping[DirKey, Mapping[str, FileRecord]],
        listings: Mapping[DirKey, Iterable[str]] | None = None,
    ) -> bool:
        """Merge fresh records into their folders' rows; True when they were written.

        `listings` gives, for folders that were listed in full, every name they hold: names
        no longer there are dropped, so a row never outgrows its folder.
        """
        if self._db is None or not updates:
            return False
        listings = listings or {}
        now = int(time.time())
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                for key, fresh in updates.items():
                    dev, ino = _signed(key[0]), _signed(key[1])
                    row = db.execute(_SELECT, (dev, ino)).fetchone()
                    merged = (_decode(row[0], row[1]) or {}) if row is not None else {}
                    merged.update(fresh)
                    names = listings.get(key)
                    if names is not None:
                        keep = set(names)
                        merged = {n: r for n, r in merged.items() if n in keep}
                    blob = _encode(merged)
                    db.execute(
                        "INSERT OR REPLACE INTO dirs (dev, ino, entries, checksum, written)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (dev, ino, blob, _checksum(blob), now),
                    )
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc).lower():
                # Another process held the file longer than the busy timeout: skip this write.
                log.warning("hash cache %s busy; digests not saved this time", self.path)
                return False
            self._failed(exc)
            return False
        return True

    def clear(self) -> None:
        if self._db is None:
            return
        try:
            self._db.execute("DELETE FROM dirs")
        except sqlite3.Error as exc:
            self._failed(exc)


def _damaged(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return any(
        word in text
        for word in ("not a database", "malformed", "file is encrypted", "disk image", "corrupt")
    ) or not isinstance(exc, sqlite3.OperationalError)
