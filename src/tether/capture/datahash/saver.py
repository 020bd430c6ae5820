"""Writing what a `hash_data` call learnt to the stat cache, folder by folder, on a thread.

The caller hands over each folder's row as soon as its files are hashed (`Saver.put`); the
thread writes what has piled up in one transaction at a time, so the writing (mostly SQLite
and the checksums, with the GIL released) runs on a second core while the caller reads the
next folders. Issue 19: on 100k x 1 KiB files, writing the rows at the end cost 0.07 s of
the call's 0.73 s, after all the reading.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from .cache import DirKey, FolderWrite

BATCH = 32  # folders a transaction waits for (a transaction per folder cost 0.1 ms each)


class Saver:
    """A queue of folder rows to write, and the thread that writes them (started on the
    first `put`). `db` is a `cache.HashCache`, used from this thread only until `close`."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.queue: list[Mapping[DirKey, FolderWrite]] = []
        self.cv = threading.Condition()
        self.closed = False
        self.thread: threading.Thread | None = None

    def put(self, updates: Mapping[DirKey, FolderWrite]) -> None:
        if not updates:
            return
        with self.cv:
            self.queue.append(updates)
            if len(self.queue) >= BATCH:
                self.cv.notify()
        if self.thread is None:
            self.thread = threading.Thread(target=self._work, name="tether-hash-save", daemon=True)
            self.thread.start()

    def _work(self) -> None:
        while True:
            with self.cv:
                while len(self.queue) < BATCH and not self.closed:
                    self.cv.wait()
                if not self.queue:
                    return
                batch: dict[DirKey, FolderWrite] = {}
                for updates in self.queue:
                    batch.update(updates)
                self.queue.clear()
            self.db.store(batch)  # never raises: a failed write turns the cache off

    def close(self) -> None:
        """Write what is queued and wait for it."""
        with self.cv:
            self.closed = True
            self.cv.notify_all()
        if self.thread is not None:
            self.thread.join()
