"""`hash_data`: the digest of each path, with the stat cache and blake3's own threads.

A folder whose listing (every file's name, device, inode, size and mtime_ns, in listing order)
is exactly the one the stat cache (`cache.HashCache`) holds takes its manifest lines from the
cache: no per-file work past the stat. In other folders, files whose stat matches their cache
record are not read.

Two Python threads at most, divided by how much of a file's work holds the GIL (issue 19,
measured on 2 cores in CPU seconds, which a busy machine does not blur):
- files of 256 KiB and more (`_SHARE_MIN`) go to a worker thread as soon as they are listed
  (1 MiB and more, `reader.MMAP_MIN`, one by one; smaller ones in batches); reading and
  hashing them is mostly GIL-free, and blake3 maps and hashes each file of 16 MiB and more
  (`reader.SPLIT_MIN`) on its own threads, so one big file uses every core;
- smaller files are read by the calling thread once the listing is done, with no call or
  object per file (`reader.hash_files`): their cost is mostly system calls, each of which
  drops and retakes the GIL, so a second thread on them only hands the GIL back and forth.
  On the mixed tree, sharing the 16 KiB files took 0.52 s of CPU and 0.39 s against 0.38 s
  and 0.24 s with the caller alone; 64 KiB files shared gain 7% of wall time for 34% more
  CPU, hence the 256 KiB line.
The caller, once done with its own files, takes batches the worker has not started.
`threads=1` keeps everything in the calling thread and blake3 single-threaded.

A file modified less than `RACY_NS` before it was hashed is read the careful way and not
cached: a second write inside the file system's timestamp granularity could leave size and
mtime unchanged.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from operator import itemgetter
from typing import Any

from .cache import FileRecord, FolderWrite, HashCache, TreeRow, signature, unpack
from .compose import compose, fingerprint, folder_lines
from .reader import MMAP_MIN, BigWorker, Counter, _blake3, default_threads, hash_files
from .records import ALGO, DataDigest, HashProgress, HashStats, ProgressFn
from .saver import Saver
from .walk import DirKey, Folder, Tree, scan

RACY_NS = 2_000_000_000  # files modified this recently are hashed but not cached
_SMALL_BATCH = 512  # small files read between two progress reports
_SHARE_MIN = 256 << 10  # files this big go to the worker thread (see the module docstring)
_MEDIUM_BATCH = 32  # such files handed to the worker at once
_PROGRESS_EVERY_S = 0.1
_size = itemgetter(3)
_mtime = itemgetter(4)


def _as_list(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[str]:
    if isinstance(paths, (str, os.PathLike)):
        return [os.fspath(paths)]
    return [os.fspath(p) for p in paths]


class _Session:
    """One `hash_data` call: decides per listed folder what the cache knows and what to read.

    A file is referred to by (folder, index into its stats) from the listing to the manifest:
    its digest goes to `folder.digests[index]`, no object per file.
    """

    def __init__(self, nthreads: int, db: Any, report: _Reporter) -> None:
        self.nthreads = nthreads
        self.db = db
        self.saver = Saver(db) if db is not None else None
        self.written: set[DirKey] = set()  # folders whose row is written (or was not to be)
        self.report = report
        self.hot_after = time.time_ns() - RACY_NS
        self.counter = Counter()
        self.big = BigWorker(self.counter, self.hot_after, nthreads) if nthreads > 1 else None
        # The other names of files already met (hard links, links, a folder reached twice),
        # each with its first (folder, index): read once. `jobs`: the first (folder, index)
        # of each file that may have other names, by (device, inode, size, mtime_ns); `seen`:
        # the first listing of each folder.
        self.jobs: dict[tuple[int, int, int, int], tuple[Folder, int]] = {}
        self.seen: dict[DirKey, Folder] = {}
        self.links: list[tuple[Folder, int, Folder, int]] = []
        self.missed: list[Folder] = []  # folders the cache did not answer as a whole
        self.singles: list[Folder] = []  # files given as roots
        self.files_total = self.bytes_total = 0
        self.cached_files = self.cached_bytes = 0
        # The root being listed, when the cache has a row for its whole tree: its folders
        # wait for the tree's fingerprint (`listed_tree`).
        self.tree_row: TreeRow | None = None
        self.deferred: list[Folder] | None = None

    def listed(self, folder: Folder) -> None:
        stats = folder.stats
        n = len(stats)
        folder.size = size = sum(map(_size, stats))
        folder.count = n
        self.files_total += n
        self.bytes_total += size
        if not folder.prefix:  # a root: is the whole tree in the cache?
            row = self.db.tree(folder.key) if self.db is not None else None
            self.tree_row, self.deferred = row, ([] if row is not None else None)
        if self.deferred is not None:
            # Decided once the tree is listed: by its fingerprint if it matches, else as below.
            # Until then only the signature holds the stats: memory of the next folder's
            # listing reused, no page faults (8% of a 100k-file re-check, issue 19).
            folder.sig = signature(stats)
            folder.stats, folder.packed = [], True
            self.deferred.append(folder)
        else:
            self._decide(folder)
        self.report.maybe("scan", 0, self.files_total, 0, 0)

    def listed_tree(self, tree: Tree) -> None:
        """A root folder and everything below it was listed."""
        folders, self.deferred = self.deferred, None
        if folders is None:
            return
        row = self.tree_row
        if row is not None and fingerprint(folders) == row.fingerprint:
            tree.digest = DataDigest(tree.root, ALGO, row.digest.hex(), row.files, row.bytes)
            self.cached_files += sum(f.count for f in folders)
            self.cached_bytes += sum(f.size for f in folders)
            return
        for folder in folders:
            self._decide(folder)

    def _decide(self, folder: Folder) -> None:
        row = None
        if self.db is not None:
            row = self.db.rows([folder.key]).get(folder.key)
        if not folder.sig:
            folder.sig = signature(folder.stats)
        if row is not None and folder.sig == row.signature:
            # Unchanged since its lines were stored: nothing to do per file.
            folder.lines = row.lines
            folder.keys = row.keys if folder.subdirs else None
            folder.whole = True
            folder.stats, folder.packed = [], True
            self.cached_files += folder.count
            self.cached_bytes += folder.size
        else:
            if folder.packed:
                folder.stats, folder.packed = unpack(folder.sig), False
            self.missed.append(folder)
            self._plan(folder, row.records if row is not None else None)
            if self.big is not None:
                self.big.check()

    def listed_file(self, single: Folder) -> None:
        self.files_total += 1
        self.bytes_total += single.stats[0][3]
        self.singles.append(single)
        records = None
        if self.db is not None:
            row = self.db.rows([single.key]).get(single.key)
            records = row.records if row is not None else None
        self._plan(single, records)

    def _plan(self, folder: Folder, records: dict[str, FileRecord] | None) -> None:
        """Per file of a folder the cache did not answer: its digest from its cache record,
        from another name of it, or to be read (files that mostly hash without the GIL go to
        the worker thread at once, the others wait for the caller in `folder.todo`)."""
        stats = folder.stats
        n = len(stats)
        digests: list[bytes | None] = [None] * n
        folder.digests = digests
        named = self._other_names(folder)
        share = self.big is not None and max(map(_size, stats), default=0) >= _SHARE_MIN
        if records is None and not share and not named:
            folder.todo = list(range(n))  # the common cold case: every file read here
            return
        todo: list[int] = []
        folder.todo = todo
        medium: list[int] = []
        i = -1
        for s in stats:
            i += 1
            if named and i in named:
                continue
            if records is not None:
                rec = records.get(s[0])
                if rec is not None and rec[:4] == s[1:]:
                    digests[i] = rec[4]
                    self.cached_files += 1
                    self.cached_bytes += s[3]
                    continue
            if share and s[3] >= _SHARE_MIN:
                if s[3] >= MMAP_MIN:
                    self.big.put(folder, [i])  # type: ignore[union-attr]  # GIL-free: start now
                else:
                    medium.append(i)
                    if len(medium) >= _MEDIUM_BATCH:
                        self.big.put(folder, medium)  # type: ignore[union-attr]
                        medium = []
            else:
                todo.append(i)
        if medium:
            self.big.put(folder, medium)  # type: ignore[union-attr]

    def _other_names(self, folder: Folder) -> set[int]:
        """The indices of the folder's files that are another name of a file met before in
        this call (read once, through the first): those of a folder listed twice, and hard
        links and links to files (`folder.linked`). A file is otherwise met only once, so the
        others are not looked up (issue 19: a lookup per file cost 5% of a cold hash)."""
        stats = folder.stats
        named: set[int] = set()
        links = self.links
        if folder.partial is None:
            first = self.seen.setdefault(folder.key, folder)
            if first is not folder:  # reached again (a link to a folder, nested roots)
                where = {s[0]: j for j, s in enumerate(first.stats)}
                for i, s in enumerate(stats):
                    j = where.get(s[0])
                    if j is not None and first.stats[j] == s:
                        links.append((folder, i, first, j))
                        named.add(i)
            maybe: Iterable[int] = folder.linked or ()
        else:
            maybe = range(len(stats))
        jobs = self.jobs
        for i in maybe:
            if i in named:
                continue
            first_i = jobs.setdefault(stats[i][1:], (folder, i))
            if first_i[0] is not folder or first_i[1] != i:
                links.append((folder, i, *first_i))
                named.add(i)
        return named

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
        for folder in [*self.missed, *self.singles]:
            todo = folder.todo or []
            folder.todo = None
            for i in range(0, len(todo), _SMALL_BATCH):
                hash_files(
                    folder, todo[i : i + _SMALL_BATCH], self.counter, self.hot_after, self.nthreads
                )
                self.tick()
                if self.big is not None:
                    self.big.check()
            if folder.partial is None and None not in folder.digests:  # type: ignore[operator]
                self.finish(folder)  # its lines now, its row written while the next are read
        if self.big is not None:
            while (batch := self.big.take()) is not None:  # help with what is left
                hash_files(*batch, self.counter, self.hot_after, self.nthreads)
                self.tick()
            self.big.join(self.tick, _PROGRESS_EVERY_S)
        for folder, i, first, j in self.links:  # the other names get the first's digest
            assert first.digests is not None and folder.digests is not None
            folder.digests[i] = first.digests[j]
            if first.changed:  # and its stat as read
                new = (folder.stats[i][0], *first.stats[j][1:])
                if new != folder.stats[i]:
                    folder.stats[i] = new
                    folder.changed = True

    def finish(self, folder: Folder) -> None:
        """A folder the cache did not answer has all its digests: its lines, and its row to
        the saver (once, for a folder listed twice)."""
        stats = folder.stats  # the stat as read where it changed since the listing
        digests: list[bytes] = folder.digests  # type: ignore[assignment]
        remember = self.saver is not None
        folder.lines, keys = folder_lines(
            stats, digests, want_keys=bool(folder.subdirs) or remember
        )
        folder.keys = keys if folder.subdirs else None
        folder.size = sum(map(_size, stats))
        folder.count = len(stats)
        if folder.changed or not folder.sig:
            folder.sig = signature(stats)
        folder.todo = []  # done: `todo` None marks a folder not finished yet
        if not remember or folder.key in self.written:
            return
        self.written.add(folder.key)
        names = [s[0] for s in stats]
        fresh_before = time.time_ns() - RACY_NS
        if not stats or max(map(_mtime, stats)) < fresh_before:
            folder.whole = True
            write = FolderWrite(
                {},
                names=names,
                sig=folder.sig,
                lines=folder.lines,
                keys=keys,
                digests=b"".join(digests),
            )
        else:  # some file may still be written: cache the others, file by file
            fresh: dict[str, FileRecord] = {
                s[0]: (s[1], s[2], s[3], s[4], d)
                for s, d in zip(stats, digests, strict=True)
                if s[4] < fresh_before
            }
            write = FolderWrite(fresh, names=names)
        self.saver.put({folder.key: write})  # type: ignore[union-attr]

    def finish_all(self) -> None:
        """Finish the folders left (those with links, or files on the worker) and the files
        given as roots; write the rows."""
        for folder in self.missed:
            if folder.todo is None:
                self.finish(folder)
        if self.saver is None:
            return
        fresh_before = time.time_ns() - RACY_NS
        for single in self.singles:
            name, dev, ino, size, mtime = single.stats[0]
            digest = single.digests[0]  # type: ignore[index]
            assert digest is not None
            # Its folder's row, if written above, already holds it.
            if mtime < fresh_before and single.key not in self.written:
                self.written.add(single.key)
                self.saver.put({single.key: FolderWrite({name: (dev, ino, size, mtime, digest)})})

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
    try:
        # 1. List everything, take what the cache knows, start on big files at once.
        trees = []
        for root in roots:
            tree = scan(root, session.listed_file, session.listed)
            if tree.is_dir:
                session.listed_tree(tree)
            trees.append(tree)
        # 2. Read the rest, each folder's lines and row as soon as it is done.
        session.run()
        session.finish_all()
        # 3. The digests (while the last rows are written), then the whole trees' rows.
        results = [_digest(t) for t in trees]
        if session.saver is not None:
            session.saver.close()
            known = _trees(trees, results)
            if known:
                session.db.store({}, known)
    except BaseException:
        session.abort()
        raise
    finally:
        if session.saver is not None:
            session.saver.close()
        if db is not None:
            db.close()
            st.cache_error = st.cache_error or db.error
    st.files = session.files_total
    st.files_cached = session.cached_files
    st.files_read = session.files_total - session.cached_files - len(session.links)
    st.bytes_read = session.counter.bytes
    report.final(session.files_total, session.bytes_total)
    st.seconds = time.perf_counter() - started
    return results


def _trees(trees: list[Tree], results: list[DataDigest]) -> dict[DirKey, TreeRow]:
    """The tree rows to write: trees whose every folder the cache holds whole (none with a
    file still maybe written) and whose row did not answer this call."""
    rows: dict[DirKey, TreeRow] = {}
    for tree, d in zip(trees, results, strict=True):
        if not tree.is_dir or tree.digest is not None:
            continue
        if all(f.whole for f in tree.folders):
            fp = fingerprint(tree.folders)
            rows[tree.top.key] = TreeRow(fp, bytes.fromhex(d.digest), d.files, d.bytes)
    return rows


def _digest(tree: Tree) -> DataDigest:
    if tree.digest is not None:
        return tree.digest
    top = tree.top
    if not tree.is_dir:
        digest = top.digests[0]  # type: ignore[index]
        assert digest is not None
        return DataDigest(tree.root, ALGO, digest.hex(), 1, top.stats[0][3])
    text = compose(top)
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
