"""`hash_data`: the digest of each path, with the stat cache and blake3's own threads.

A folder whose listing (every file's name, device, inode, size and mtime_ns, in listing order)
is exactly the one the stat cache (`cache.HashCache`) holds takes its manifest lines from the
cache: no per-file work past the stat. In other folders, files whose stat matches their cache
record are not read.

Two Python threads at most, divided by how much of a file's work holds the GIL:
- files of 1 MiB and more (`reader.MMAP_MIN`) go, one by one, to a worker thread as soon as
  they are listed; blake3 maps and hashes each on its own threads with the GIL released;
- files of 8 KiB to 1 MiB go to the same worker in batches (reading and hashing them is
  mostly GIL-free: measured on the mixed tree, 0.114 s against 0.128 s with the caller alone);
- smaller files are read by the calling thread once the listing is done, as their cost is
  mostly Python work: a second thread on 20k x 1 KiB files took 0.31 s of CPU against 0.21 s
  (the GIL handed back and forth), so they are never shared.
`threads=1` keeps everything in the calling thread and blake3 single-threaded.

A file modified less than `RACY_NS` before it was hashed is read the careful way and not
cached: a second write inside the file system's timestamp granularity could leave size and
mtime unchanged.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from operator import itemgetter
from typing import Any

from .cache import FileRecord, FolderWrite, HashCache, signature
from .compose import compose, folder_lines
from .manifest import digest_of
from .reader import MMAP_MIN, BigWorker, Counter, _blake3, default_threads, hash_batch
from .records import ALGO, DataDigest, HashProgress, HashStats, ProgressFn
from .walk import DirKey, Entry, Folder, Tree, scan

RACY_NS = 2_000_000_000  # files modified this recently are hashed but not cached
_SMALL_BATCH = 256  # small files read between two progress reports
_SHARE_MIN = 8 << 10  # files this big go to the worker thread (see the module docstring)
_MEDIUM_BATCH = 32  # such files handed to the worker at once
_PROGRESS_EVERY_S = 0.1
_size = itemgetter(3)
_mtime = itemgetter(4)


def _as_list(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[str]:
    if isinstance(paths, (str, os.PathLike)):
        return [os.fspath(paths)]
    return [os.fspath(p) for p in paths]


class _Session:
    """One `hash_data` call: decides per listed folder what the cache knows and what to read."""

    def __init__(self, nthreads: int, db: Any, report: _Reporter) -> None:
        self.nthreads = nthreads
        self.db = db
        self.report = report
        self.hot_after = time.time_ns() - RACY_NS
        self.counter = Counter()
        self.big = BigWorker(self.counter, self.hot_after, nthreads) if nthreads > 1 else None
        self.jobs: dict[tuple[int, int, int, int], Entry] = {}
        self.small: list[Entry] = []
        self.medium: list[Entry] = []  # files read mostly without the GIL, for the worker
        self.missed: list[Folder] = []  # folders the cache did not answer as a whole
        self.single: list[Entry] = []  # files given as roots
        self.files_total = self.bytes_total = 0
        self.cached_files = self.cached_bytes = 0

    def listed(self, folder: Folder) -> None:
        stats = folder.stats
        n = len(stats)
        self.files_total += n
        row = None
        if self.db is not None:
            row = self.db.rows([folder.key]).get(folder.key)
        if row is not None and signature(stats) == row.signature:
            # Unchanged since its lines were stored: nothing to do per file.
            folder.lines = row.lines
            folder.keys = row.keys if folder.subdirs else None
            folder.size = sum(map(_size, stats))
            folder.count = n
            self.bytes_total += folder.size
            self.cached_files += n
            self.cached_bytes += folder.size
        else:
            self.missed.append(folder)
            self._want_all(folder, row.records if row is not None else None)
            if self.big is not None:
                self.big.check()
        self.report.maybe("scan", 0, self.files_total, 0, 0)

    def listed_file(self, entry: Entry) -> None:
        self.files_total += 1
        self.single.append(entry)
        records = None
        if self.db is not None:
            row = self.db.rows([entry.dir_key]).get(entry.dir_key)
            records = row.records if row is not None else None
        self._want(entry, records)

    def _want_all(self, folder: Folder, records: dict[str, FileRecord] | None) -> None:
        """`_want` for each file of a folder, in one loop (the cold path's per-file work)."""
        stats = folder.stats
        self.bytes_total += sum(map(_size, stats))
        jobs, small, big, medium = self.jobs, self.small, self.big, self.medium
        for s, e in zip(stats, folder.make_entries(), strict=True):
            key = s[1:]
            if records is not None:
                rec = records.get(s[0])
                if rec is not None and rec[:4] == key:
                    e.digest = rec[4]
                    self.cached_files += 1
                    self.cached_bytes += s[3]
                    continue
            job = jobs.get(key)
            if job is not None:  # the same file under another name: read once
                if job.links is None:
                    job.links = []
                job.links.append(e)
            else:
                jobs[key] = e
                if big is not None and s[3] >= _SHARE_MIN:
                    if s[3] >= MMAP_MIN:
                        big.put([e])  # GIL-free work: start it while the listing goes on
                    else:
                        medium.append(e)
                        if len(medium) >= _MEDIUM_BATCH:
                            big.put(medium)
                            medium = self.medium = []
                else:
                    small.append(e)

    def _want(self, e: Entry, records: dict[str, FileRecord] | None) -> None:
        self.bytes_total += e.size
        key = (e.dev, e.ino, e.size, e.mtime_ns)
        if records is not None:
            rec = records.get(e.name)
            if rec is not None and rec[:4] == key:
                e.digest = rec[4]
                self.cached_files += 1
                self.cached_bytes += e.size
                return
        job = self.jobs.get(key)
        if job is not None:  # the same file under another name: read once
            if job.links is None:
                job.links = []
            job.links.append(e)
            return
        self.jobs[key] = e
        if self.big is not None and e.size >= MMAP_MIN:
            self.big.put([e])  # GIL-free work: start it while the listing goes on
        else:
            self.small.append(e)

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
        """Hash what is left once everything is listed: small files here, big ones on the
        big-file thread (already started)."""
        self.tick()
        small, self.small = self.small, []
        if self.big is not None and self.medium:
            self.big.put(self.medium)
            self.medium = []
        for i in range(0, len(small), _SMALL_BATCH):
            hash_batch(small[i : i + _SMALL_BATCH], self.counter, self.hot_after, self.nthreads)
            self.tick()
            if self.big is not None:
                self.big.check()
        if self.big is not None:
            while (batch := self.big.take()) is not None:  # help with what is left
                hash_batch(batch, self.counter, self.hot_after, self.nthreads)
                self.tick()
            self.big.join(self.tick, _PROGRESS_EVERY_S)

    def abort(self) -> None:
        self.counter.stop.set()
        if self.big is not None:
            self.big.stop_all()


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
        trees = [scan(root, session.listed_file, session.listed) for root in roots]
        # 2. Read the rest.
        session.run()
        # 3. Give every entry its digest, the folders their lines, and remember them (in the
        #    background while the folder digests are computed).
        changed = _apply(session.jobs.values(), session.counter.changed)
        updates = _writes(session, changed, remember=db is not None)
        if db is not None and updates:
            saver = threading.Thread(target=db.store, args=(updates,), daemon=True)
            saver.start()
        results = [_digest(t) for t in trees]
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
    st.files_read = len(session.jobs)
    st.bytes_read = session.counter.bytes
    report.final(session.files_total, session.bytes_total)
    st.seconds = time.perf_counter() - started
    return results


def _apply(jobs: Iterable[Entry], changed: list[Entry]) -> set[DirKey]:
    """Give the other names of each file its digest and stat as read; the folders holding a
    file whose stat as read differs from its listing."""
    for job in jobs:
        if job.links is not None:
            for e in job.links:
                e.digest = job.digest
                e.size, e.mtime_ns, e.dev, e.ino = job.size, job.mtime_ns, job.dev, job.ino
    dirs = {job.dir_key for job in changed}
    dirs.update(e.dir_key for job in changed for e in job.links or ())
    return dirs


def _writes(session: _Session, changed: set[DirKey], remember: bool) -> dict[DirKey, FolderWrite]:
    """Set the lines of the folders the cache did not answer; what the cache should learn."""
    fresh_before = time.time_ns() - RACY_NS
    updates: dict[DirKey, FolderWrite] = {}
    for folder in session.missed:
        entries = folder.entries or []
        folder.lines, keys = folder_lines(entries, want_keys=bool(folder.subdirs) or remember)
        folder.keys = keys if folder.subdirs else None
        stats = folder.stats
        if folder.key in changed:  # some file was read again after the listing
            stats = [(e.name, e.dev, e.ino, e.size, e.mtime_ns) for e in entries]
        folder.size = sum(map(_size, stats))
        folder.count = len(entries)
        if not remember or folder.key in updates:
            continue
        names = [s[0] for s in stats]
        if not stats or max(map(_mtime, stats)) < fresh_before:
            updates[folder.key] = FolderWrite(
                {},
                names=names,
                sig=signature(stats),
                lines=folder.lines,
                keys=keys,
                digests=b"".join([e.digest for e in entries]),  # type: ignore[misc]
            )
        else:  # some file may still be written: cache the others, file by file
            fresh: dict[str, FileRecord] = {
                s[0]: (s[1], s[2], s[3], s[4], e.digest)  # type: ignore[misc]
                for s, e in zip(stats, entries, strict=True)
                if s[4] < fresh_before
            }
            updates[folder.key] = FolderWrite(fresh, names=names)
    if remember:
        for e in session.single:
            assert e.digest is not None
            if e.mtime_ns >= fresh_before:
                continue
            rec: FileRecord = (e.dev, e.ino, e.size, e.mtime_ns, e.digest)
            if e.dir_key not in updates:  # else its folder was listed in full: written above
                updates[e.dir_key] = FolderWrite({e.name: rec})
    return updates


def _digest(tree: Tree) -> DataDigest:
    if not tree.is_dir:
        return digest_of(tree)
    assert tree.top is not None
    text = compose(tree.top)
    files = sum(f.count for f in tree.folders)
    size = sum(f.size for f in tree.folders)
    return DataDigest(tree.root, ALGO, _blake3()(text).hexdigest(), files, size)


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
