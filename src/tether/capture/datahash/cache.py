"""The persistent stat cache behind `hash_data`: unchanged files are never read twice.

One SQLite file, `$TETHER_CACHE_DIR/hashes.db` (default `$XDG_CACHE_HOME/tether/hashes.db`,
else `~/.cache/tether/hashes.db`). A file's digest is valid while its (device, inode, size,
mtime_ns) are unchanged. The rows are grouped by the folder that holds the file: one row per
folder, keyed by the folder's (device, inode), whose value holds
- the records: each name's (device, inode, size, mtime_ns, digest), for folders seen in part
  or changed since;
- the folder's signature, the exact list of stat tuples its listing gave, with the folder's
  own manifest lines and sorted name bytes (see `compose`): a re-check whose listing gives the
  same list takes the lines as they are, with no work per file (issue 19: the manifest was
  rebuilt and sorted on every call).
Re-checking an unchanged folder of 250 files is then one indexed read and one bytes comparison.

A second table, `trees`, keeps for each folder hashed as a root (by its device and inode) the
digest of the whole tree with its fingerprint: the blake3 of every folder's path and signature
in listing order (`hashing.fingerprint`). A re-check whose listing gives the same fingerprint
takes that digest and reads no folder row at all (issue 19: reading and checking 100k files'
rows was a fifth of a re-check). An older tether ignores the table.

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
import struct
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ...mounts import default_cache_dir  # TETHER_CACHE_DIR, else the XDG cache folder

log = logging.getLogger(__name__)

DB_NAME = "hashes.db"
SCHEMA = 2  # 2: the value holds a folder signature and its manifest lines
BUSY_TIMEOUT_S = 15.0
_MARSHAL_VERSION = 4  # readable by every Python tether supports

# One cached file: (device, inode, size, mtime_ns, 32-byte digest).
FileRecord = tuple[int, int, int, int, bytes]
DirKey = tuple[int, int]

# CAST: a value someone rewrote as TEXT still comes back as bytes (and fails its checksum).
_SELECT = "SELECT CAST(entries AS BLOB), CAST(checksum AS BLOB) FROM dirs WHERE dev = ? AND ino = ?"
_SELECT_TREE = (
    "SELECT CAST(value AS BLOB), CAST(checksum AS BLOB) FROM trees WHERE dev = ? AND ino = ?"
)
_TREE = struct.Struct("<32s32sQQ")  # fingerprint, digest, files, bytes
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


_HEAD = struct.Struct("<IIII")  # lengths of: signature, lines, name bytes, digests
_DIGEST = 32


def signature(stats: list[tuple[str, int, int, int, int]]) -> bytes:
    """The bytes a folder's listing is compared by (one C call, not a loop per file).

    Version 2: later versions write back-references for objects used more than once, so equal
    lists built differently could give different bytes (a needless miss).
    """
    return marshal.dumps(stats, 2)


def unpack(sig: bytes) -> list[tuple[str, int, int, int, int]]:
    """The stat tuples a signature was made of (equal to them, names included)."""
    value: list[tuple[str, int, int, int, int]] = marshal.loads(sig)
    return value


@dataclass(frozen=True, slots=True)
class FolderRow:
    """One folder's cached value, decoded only as far as it is used.

    Layout: the four lengths, the signature (the listing's stat tuples), the folder's
    manifest lines, its sorted name bytes joined by NUL, the digests of the signature's files
    (32 bytes each, in its order), then marshalled records of files outside the signature.
    """

    blob: bytes

    def _part(self, i: int) -> bytes:
        lens = _HEAD.unpack_from(self.blob)
        start = _HEAD.size + sum(lens[:i])
        return self.blob[start : start + lens[i]]

    @property
    def signature(self) -> bytes:
        return self._part(0)

    @property
    def lines(self) -> bytes:
        return self._part(1)

    @property
    def keys(self) -> list[bytes]:
        raw = self._part(2)
        return raw.split(b"\0") if raw else []

    @property
    def extra(self) -> dict[str, FileRecord]:
        """The records kept outside the signature."""
        try:
            value = marshal.loads(self.blob[_HEAD.size + sum(_HEAD.unpack_from(self.blob)) :])
        except (EOFError, ValueError, TypeError):
            return {}
        return value if isinstance(value, dict) else {}

    @property
    def records(self) -> dict[str, FileRecord]:
        """Every file's record: those of the signature, then the others."""
        found: dict[str, FileRecord] = {}
        sig, digests = self._part(0), self._part(3)
        if sig:
            try:
                stats = marshal.loads(sig)
            except (EOFError, ValueError, TypeError):
                stats = []
            if len(digests) == _DIGEST * len(stats):
                for i, (name, dev, ino, size, mtime) in enumerate(stats):
                    found[name] = (dev, ino, size, mtime, digests[i * _DIGEST : (i + 1) * _DIGEST])
        found.update(self.extra)
        return found


@dataclass(frozen=True, slots=True)
class TreeRow:
    """What a tree's row holds: the fingerprint of its listing and the digest it had then."""

    fingerprint: bytes
    digest: bytes
    files: int
    bytes: int


@dataclass
class FolderWrite:
    """What one call learnt about a folder.

    records: fresh records to merge; names: every name the folder holds, when it was listed in
    full (names gone are dropped); sig/lines/keys/digests: its signature, lines, name bytes and
    digests in signature order, when every file in it can be cached (the folder is then written
    whole; None merges the records with what is stored).
    """

    records: Mapping[str, FileRecord]
    names: Iterable[str] | None = None
    sig: bytes | None = None
    lines: bytes = b""
    keys: Sequence[bytes] = ()
    digests: bytes = b""


def _encode(
    records: Mapping[str, FileRecord],
    sig: bytes = b"",
    lines: bytes = b"",
    keys: bytes = b"",
    digests: bytes = b"",
) -> bytes:
    return b"".join(
        (
            _HEAD.pack(len(sig), len(lines), len(keys), len(digests)),
            sig,
            lines,
            keys,
            digests,
            marshal.dumps(dict(records), _MARSHAL_VERSION),
        )
    )


def _row(blob: bytes, check: bytes) -> FolderRow | None:
    """The folder's value, or None when it is damaged or not what we wrote."""
    if len(blob) < _HEAD.size or _checksum(blob) != check:
        return None
    if _HEAD.size + sum(_HEAD.unpack_from(blob)) > len(blob):
        return None
    return FolderRow(blob)


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
                db.execute("DROP TABLE IF EXISTS trees")
            db.execute(
                "CREATE TABLE IF NOT EXISTS dirs ("
                " dev INTEGER NOT NULL, ino INTEGER NOT NULL,"
                " entries BLOB NOT NULL, checksum BLOB NOT NULL, written INTEGER NOT NULL,"
                " PRIMARY KEY (dev, ino)) WITHOUT ROWID"
            )
            db.execute(
                "CREATE TABLE IF NOT EXISTS trees ("
                " dev INTEGER NOT NULL, ino INTEGER NOT NULL,"
                " value BLOB NOT NULL, checksum BLOB NOT NULL, written INTEGER NOT NULL,"
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
        return {key: row.records for key, row in self.rows(dirs).items()}

    def rows(self, dirs: Iterable[DirKey]) -> dict[DirKey, FolderRow]:
        """The cached value of each folder that has one (missing or damaged ones left out)."""
        found: dict[DirKey, FolderRow] = {}
        if self._db is None:
            return found
        query = _SELECT
        try:
            execute = self._db.execute
            for key in dirs:
                row = execute(query, (_signed(key[0]), _signed(key[1]))).fetchone()
                if row is None:
                    continue
                value = _row(row[0], row[1])
                if value is not None:
                    found[key] = value
        except sqlite3.Error as exc:
            self._failed(exc)
            return {}
        return found

    def tree(self, key: DirKey) -> TreeRow | None:
        """The cached tree whose root is the folder `key`, or None (missing or damaged)."""
        if self._db is None:
            return None
        try:
            row = self._db.execute(_SELECT_TREE, (_signed(key[0]), _signed(key[1]))).fetchone()
        except sqlite3.Error as exc:
            self._failed(exc)
            return None
        if row is None or len(row[0]) != _TREE.size or _checksum(row[0]) != row[1]:
            return None
        return TreeRow(*_TREE.unpack(row[0]))

    def store(
        self, updates: Mapping[DirKey, FolderWrite], trees: Mapping[DirKey, TreeRow] | None = None
    ) -> bool:
        """Merge what was learnt into the folders' rows, and write the trees' rows; True when it
        was written.

        A folder listed in full drops the names no longer there, so a row never outgrows its
        folder.
        """
        if self._db is None or not (updates or trees):
            return False
        now = int(time.time())
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                for key, write in updates.items():
                    dev, ino = _signed(key[0]), _signed(key[1])
                    old = None
                    if write.sig is None:  # merged with what is there
                        row = db.execute(_SELECT, (dev, ino)).fetchone()
                        old = _row(row[0], row[1]) if row is not None else None
                    if write.sig is not None:
                        keys = b"\0".join(write.keys)
                        blob = _encode({}, write.sig, write.lines, keys, write.digests)
                    elif write.names is not None:
                        merged = old.records if old is not None else {}
                        merged.update(write.records)
                        keep = set(write.names)
                        blob = _encode({n: r for n, r in merged.items() if n in keep})
                    elif old is not None:
                        # Records from a partial look: the stored signature still holds.
                        extra = old.extra
                        extra.update(write.records)
                        blob = _encode(extra, *(old._part(i) for i in range(4)))
                    else:
                        blob = _encode(write.records)
                    db.execute(
                        "INSERT OR REPLACE INTO dirs (dev, ino, entries, checksum, written)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (dev, ino, blob, _checksum(blob), now),
                    )
                for key, tree in (trees or {}).items():
                    value = _TREE.pack(tree.fingerprint, tree.digest, tree.files, tree.bytes)
                    db.execute(
                        "INSERT OR REPLACE INTO trees (dev, ino, value, checksum, written)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (_signed(key[0]), _signed(key[1]), value, _checksum(value), now),
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
            self._db.execute("DELETE FROM trees")
        except sqlite3.Error as exc:
            self._failed(exc)


def _damaged(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return any(
        word in text
        for word in ("not a database", "malformed", "file is encrypted", "disk image", "corrupt")
    ) or not isinstance(exc, sqlite3.OperationalError)
