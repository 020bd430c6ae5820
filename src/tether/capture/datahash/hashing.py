"""`hash_data`: the digest of each path, with the stat cache and a pool of readers.

Files whose (device, inode, size, mtime_ns) match the stat cache (`cache.HashCache`) are not
read at all. Big files start hashing while the folders are still being listed. A file modified
less than `RACY_NS` before it was hashed is not cached: a second write inside the file
system's timestamp granularity could leave size and mtime unchanged.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from typing import Any

from .cache import HashCache
from .manifest import digest_of
from .reader import BATCH_BYTES, Counter, Job, Workers, batches, default_threads, hash_batch
from .records import DataDigest, HashProgress, HashStats, ProgressFn
from .walk import Entry, Tree, scan

RACY_NS = 2_000_000_000  # files modified this recently are hashed but not cached
_EARLY_BYTES = 256 << 10  # files this big hash mostly without the GIL: start them while listing
_PROGRESS_EVERY_S = 0.1


def _as_list(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[str]:
    if isinstance(paths, (str, os.PathLike)):
        return [os.fspath(paths)]
    return [os.fspath(p) for p in paths]


class _Session:
    """One `hash_data` call: decides per listed folder what the cache knows and what to read.

    Big files (GIL-free work) start hashing while the folders are still being listed; small
    ones wait for the end of the listing, to be interleaved with the big files not yet started.
    """

    def __init__(self, nthreads: int, db: Any, report: _Reporter) -> None:
        self.nthreads = nthreads
        self.db = db
        self.report = report
        self.counter = Counter()
        self.workers = Workers(nthreads, self.counter) if nthreads > 1 else None
        self.jobs: dict[tuple[int, int, int, int], Job] = {}
        self.later: list[Job] = []
        self.early: list[Job] = []
        self.early_bytes = 0
        self.files_total = self.bytes_total = 0
        self.cached_files = self.cached_bytes = 0

    def listed(self, entries: list[Entry]) -> None:
        self.files_total += len(entries)
        records = None
        if self.db is not None:
            records = self.db.lookup([entries[0].dir_key]).get(entries[0].dir_key)
        for e in entries:
            self.bytes_total += e.size
            if records is not None:
                rec = records.get(e.name)
                if rec is not None and rec[:4] == (e.dev, e.ino, e.size, e.mtime_ns):
                    e.digest = rec[4]
                    self.cached_files += 1
                    self.cached_bytes += e.size
                    continue
            key = (e.dev, e.ino, e.size, e.mtime_ns)
            job = self.jobs.get(key)
            if job is not None:
                job.entries.append(e)
                continue
            job = self.jobs[key] = Job(e)
            if self.workers is not None and e.size >= _EARLY_BYTES:
                self.early.append(job)
                self.early_bytes += e.size
                if self.early_bytes >= BATCH_BYTES:
                    self.workers.put([self.early])
                    self.early, self.early_bytes = [], 0
            else:
                self.later.append(job)
        if self.workers is not None:
            self.workers.check()
        self.report.maybe("scan", 0, self.files_total, 0, 0)

    def tick(self) -> None:
        c = self.counter
        self.report.maybe(
            "hash",
            self.cached_files + c.files,
            self.files_total,
            self.cached_bytes + c.bytes,
            self.bytes_total,
        )

    def run(self) -> None:
        """Hash what is left once everything is listed."""
        self.tick()
        if self.workers is None:
            for batch in batches(self.later):
                hash_batch(batch, self.counter)
                self.tick()
            return
        # Everything not started yet, interleaved again: big files among the small ones.
        waiting = [j for batch in self.workers.take_queued() for j in batch]
        self.workers.put(batches(waiting + self.early + self.later))
        self.early, self.later = [], []
        self.workers.join(self.tick, _PROGRESS_EVERY_S)

    def abort(self) -> None:
        self.counter.stop.set()
        if self.workers is not None:
            self.workers.stop_all()


def hash_data(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    threads: int | None = None,
    cache: bool | str | os.PathLike[str] = True,
    progress: ProgressFn | None = None,
    stats: HashStats | None = None,
) -> list[DataDigest]:
    """Digest each path (file or folder), in order.

    threads: files read at once (default: the CPUs this process may use).
    cache: True for the default stat cache, a path for another SQLite file, False for none.
    progress: called with a `HashProgress` from this thread while working.
    stats: filled with counters (files read, files from the cache, ...).
    Raises `HashError` naming the path for a missing or unreadable path, a symlink loop, a
    special file, or a file that keeps changing while it is read.
    """
    started = time.perf_counter()
    roots = _as_list(paths)
    nthreads = default_threads() if threads is None else max(1, int(threads))
    st = stats if stats is not None else HashStats()
    report = _Reporter(progress)
    db: HashCache | None = None
    if cache is not False:
        db = HashCache(None if cache is True else cache)
        st.cache_error = db.error
        if not db.enabled:
            db = None
    session = _Session(nthreads, db, report)
    saver: threading.Thread | None = None
    try:
        # 1. List everything, take what the cache knows, start on big files at once.
        trees = [scan(root, session.listed) for root in roots]
        # 2. Read the rest, several files at once.
        session.run()
        # 3. Give every entry its digest and size as read, and remember them (in the
        #    background while the folder digests are computed).
        todo = list(session.jobs.values())
        updates = _apply(todo, remember=db is not None)
        if db is not None and updates:
            saver = threading.Thread(target=_save, args=(db, updates, trees), daemon=True)
            saver.start()
        results = [digest_of(t) for t in trees]
    except BaseException:
        session.abort()
        raise
    finally:
        if saver is not None:
            saver.join()
        if db is not None:
            db.close()
            st.cache_error = st.cache_error or db.error
    st.files = session.files_total
    st.files_cached = session.cached_files
    st.files_read = len(todo)
    st.bytes_read = session.counter.bytes
    report.final(session.files_total, session.bytes_total)
    st.seconds = time.perf_counter() - started
    return results


def _apply(todo: list[Job], remember: bool) -> dict[tuple[int, int], dict[str, Any]]:
    """Copy each job's digest and size to its entries; the cache rows to write."""
    updates: dict[tuple[int, int], dict[str, Any]] = {}
    fresh_before = time.time_ns() - RACY_NS if remember else -1
    for job in todo:
        jst = job.st
        digest = job.digest
        assert digest is not None and jst is not None
        for e in job.entries:
            e.digest = digest
            e.size = jst.st_size
            if jst.st_mtime_ns < fresh_before:
                folder = updates.get(e.dir_key)
                if folder is None:
                    folder = updates[e.dir_key] = {}
                folder[e.name] = (jst.st_dev, jst.st_ino, jst.st_size, jst.st_mtime_ns, digest)
    return updates


def _save(db: Any, updates: dict[tuple[int, int], dict[str, Any]], trees: list[Tree]) -> None:
    # Folders listed in full: names gone from them are dropped from the cache.
    listings: dict[tuple[int, int], set[str]] = {}
    for t in trees:
        if t.is_dir:
            for e in t.entries:
                if e.dir_key in updates:
                    listings.setdefault(e.dir_key, set()).add(e.name)
    db.store(updates, listings)


class _Reporter:
    def __init__(self, fn: ProgressFn | None) -> None:
        self.fn = fn
        self.last = 0.0

    def maybe(self, phase: str, fd: int, ft: int, bd: int, bt: int) -> None:
        if self.fn is None:
            return
        now = time.monotonic()
        if now - self.last < _PROGRESS_EVERY_S:
            return
        self.last = now
        self.fn(HashProgress(phase, fd, ft, bd, bt))

    def final(self, files: int, nbytes: int) -> None:
        if self.fn is not None:
            self.fn(HashProgress("done", files, files, nbytes, nbytes))
