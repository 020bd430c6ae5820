"""What hashing returns and reports: digests, progress, counters, and its one error."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ...errors import TetherError
from ...lock import DataRecord

ALGO = "blake3"

ProgressFn = Callable[["HashProgress"], None]


class HashError(TetherError):
    """A path cannot be hashed: missing, unreadable, a symlink loop, changing while read."""


@dataclass
class DataDigest:
    """The digest of one path given to `hash_data`."""

    path: str
    algo: str = ALGO
    digest: str = ""
    files: int = 0
    bytes: int = 0

    def to_record(self, key: str | None = None) -> DataRecord:
        """The run.lock `data` entry for this digest (status `done`)."""
        return DataRecord(
            path=self.path,
            key=key,
            algo=self.algo,
            digest=self.digest,
            files=self.files,
            bytes=self.bytes,
            status="done",
        )


@dataclass
class HashProgress:
    """What `progress` callbacks receive, from the calling thread, at most ~10 times a second.

    phase: `scan` (listing folders; totals still growing), `hash` (reading files), `done`.
    """

    phase: str
    files_done: int = 0
    files_total: int = 0
    bytes_done: int = 0
    bytes_total: int = 0


@dataclass
class HashStats:
    """Counters of one `hash_data` call (pass `stats=HashStats()` to get them)."""

    files: int = 0  # files below the paths (a file reached twice counts twice)
    files_read: int = 0  # files actually read and hashed
    files_cached: int = 0  # files whose digest came from the stat cache
    bytes_read: int = 0
    seconds: float = 0.0
    cache_error: str | None = None  # why the cache was off, if it was
