"""Data digests: blake3 per file, a manifest digest per folder, a persistent stat cache.

`hash_data(paths)` returns one `DataDigest` per path:
- a file's digest is the blake3 of its bytes (what `b3sum FILE` prints);
- a folder's digest is the blake3 of its manifest: the line `tether-manifest-v1`, then one line
  per file below it, `<relative posix path>\\t<blake3 hex>\\t<size>`, sorted by the path's bytes
  (backslash, tab, newline and carriage return in names are written `\\\\`, `\\t`, `\\n`,
  `\\r`). Empty folders add nothing; an empty folder's digest is that of the header alone.
- symlinks are followed: a link to a file counts as that file under the link's name, a link
  to a folder is walked; a link that leads back to one of its own parent folders (a loop), a
  broken link, and fifos, sockets or devices are errors naming the path.

Files are read in 4 MiB chunks (files under 1 MiB in one read) by several threads at once:
blake3 releases the GIL, so on N cores N big files hash in parallel; big files start while the
folders are still being listed. Files whose (device, inode, size,
mtime_ns) match the stat cache (`hashcache.HashCache`) are not read at all. A file modified
less than `RACY_NS` before it was hashed is not cached: a second write inside the file system's
timestamp granularity could leave size and mtime unchanged.

`hash_data_background(run_dir, entries)` does the same in a detached process and fills the
`data` entries of `<run_dir>/run.lock` (status `pending` -> `done`, or `failed` with the reason
in `<run_dir>/datahash.log`), under an fcntl lock so concurrent updates never lose each other.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat as statmod
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3

from ..errors import TetherError

if TYPE_CHECKING:
    import subprocess

    from ..lock import DataRecord, RunLock

ALGO = "blake3"
MANIFEST_HEADER = b"tether-manifest-v1\n"
CHUNK = 1 << 20  # files smaller than this are read in one call
READ_SIZE = 4 << 20  # read size for the others (fewer GIL hand-offs per file)
RACY_NS = 2_000_000_000  # files modified this recently are hashed but not cached
_BATCH_FILES = 64  # small files handed to a worker at once
_BATCH_BYTES = 8 << 20
_EARLY_BYTES = 256 << 10  # files this big hash mostly without the GIL: start them while listing
_RETRIES = 3  # attempts on a file that changes while it is read
_PROGRESS_EVERY_S = 0.1
FLOCK_NAME = ".run.lock.flock"
LOG_NAME = "datahash.log"

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
        from ..lock import DataRecord

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


@dataclass(slots=True)
class _Entry:
    """One file below a path: where to open it, its stat, and where the cache keeps it."""

    rel: str  # posix path relative to the root ('' when the root is the file)
    path: str  # path to open
    dev: int
    ino: int
    size: int
    mtime_ns: int
    dir_key: tuple[int, int]  # (dev, ino) of the folder that holds `name`
    name: str
    digest: bytes | None = None


@dataclass
class _Tree:
    root: str
    is_dir: bool
    entries: list[_Entry] = field(default_factory=list)


# -- walking -----------------------------------------------------------------------------------
def _oserror(path: str, exc: OSError, what: str = "cannot read") -> HashError:
    reason = exc.strerror or exc.__class__.__name__
    return HashError(f"{path}: {what} ({reason})")


def _stat_root(root: str) -> os.stat_result:
    try:
        return os.stat(root)
    except FileNotFoundError:
        if os.path.islink(root):
            raise HashError(f"{root}: broken symlink (its target does not exist)")
        raise HashError(f"{root}: no such file or folder")
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise HashError(f"{root}: symlink loop")
        raise _oserror(root, exc)


def _kind(mode: int) -> str:
    if statmod.S_ISFIFO(mode):
        return "a fifo"
    if statmod.S_ISSOCK(mode):
        return "a socket"
    if statmod.S_ISCHR(mode) or statmod.S_ISBLK(mode):
        return "a device"
    return "not a regular file or folder"


def _scan(root: str, listed: Callable[[list[_Entry]], None]) -> _Tree:
    """List every file below `root` with its stat (one stat per file, no reads).

    `listed` gets the files of each folder as soon as that folder is listed.
    """
    st = _stat_root(root)
    if statmod.S_ISREG(st.st_mode):
        parent = os.path.dirname(os.path.abspath(root))
        try:
            pst = os.stat(parent)
        except OSError as exc:
            raise _oserror(parent, exc)
        name = os.path.basename(os.path.abspath(root))
        entry = _Entry(
            "",
            root,
            st.st_dev,
            st.st_ino,
            st.st_size,
            st.st_mtime_ns,
            (pst.st_dev, pst.st_ino),
            name,
        )
        listed([entry])
        return _Tree(root, False, [entry])
    if not statmod.S_ISDIR(st.st_mode):
        raise HashError(f"{root}: cannot hash {_kind(st.st_mode)}")

    tree = _Tree(root, True)
    entries = tree.entries
    top = (st.st_dev, st.st_ino)
    # Folders still to list: (path, relative prefix, its key, the keys of its ancestors).
    stack: list[tuple[str, str, tuple[int, int], dict[tuple[int, int], str]]] = [
        (root, "", top, {top: root})
    ]
    while stack:
        dpath, prefix, dkey, ancestors = stack.pop()
        before = len(entries)
        try:
            it = os.scandir(dpath)
        except OSError as exc:
            raise _oserror(dpath, exc, "cannot list folder")
        with it:
            for e in it:
                name = e.name
                path = e.path
                try:
                    if e.is_symlink():
                        try:
                            est = os.stat(path)
                        except FileNotFoundError:
                            raise HashError(f"{path}: broken symlink (its target does not exist)")
                    else:
                        est = e.stat(follow_symlinks=False)
                except OSError as exc:
                    if exc.errno == errno.ELOOP:  # a link to a link to itself
                        raise HashError(f"{path}: symlink loop")
                    raise _oserror(path, exc)
                mode = est.st_mode
                if statmod.S_ISREG(mode):
                    entries.append(
                        _Entry(
                            prefix + name,
                            path,
                            est.st_dev,
                            est.st_ino,
                            est.st_size,
                            est.st_mtime_ns,
                            dkey,
                            name,
                        )
                    )
                elif statmod.S_ISDIR(mode):
                    key = (est.st_dev, est.st_ino)
                    if key in ancestors:
                        raise HashError(
                            f"{path}: symlink loop (it leads back to {ancestors[key]})",
                            "remove the link or hash a folder that does not contain it",
                        )
                    stack.append((path, prefix + name + "/", key, {**ancestors, key: path}))
                else:
                    raise HashError(f"{path}: cannot hash {_kind(mode)}")
        if len(entries) > before:
            listed(entries[before:])
    return tree


# -- reading -----------------------------------------------------------------------------------
_local = threading.local()


def _buffer() -> tuple[bytearray, memoryview]:
    buf = getattr(_local, "buf", None)
    if buf is None:
        buf = _local.buf = bytearray(READ_SIZE)
        _local.view = memoryview(buf)
    return buf, _local.view


def _read_file(
    path: str, size: int, counter: _Counter | None = None
) -> tuple[bytes, os.stat_result, int]:
    """Read and hash one file: (digest, its stat after reading, bytes read).

    `size` is the size expected from the listing; files up to one chunk are read in one call.
    Tests replace this function to count reads.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        if size < CHUNK:
            data = os.read(fd, size + 1)
            n = len(data)
            if n > size:  # it grew: read the rest the slow way
                hasher = blake3.blake3(data)
                buf, view = _buffer()
                while k := os.readv(fd, [buf]):
                    hasher.update(view[:k])
                    n += k
                digest = hasher.digest()
            else:
                digest = blake3.blake3(data).digest()
        else:
            hasher = blake3.blake3()
            buf, view = _buffer()
            n = 0
            while k := os.readv(fd, [buf]):
                hasher.update(view[:k])
                n += k
                if counter is not None:
                    counter.add(0, k)
                    if counter.stop.is_set():
                        raise _Stopped
            digest = hasher.digest()
        st = os.fstat(fd)
    finally:
        os.close(fd)
    return digest, st, n


class _Job:
    """One distinct file to read (several entries can share it through links)."""

    __slots__ = ("digest", "entries", "mtime_ns", "path", "size", "st")

    def __init__(self, entry: _Entry) -> None:
        self.path = entry.path
        self.size = entry.size
        self.mtime_ns = entry.mtime_ns
        self.entries = [entry]
        self.digest: bytes | None = None
        self.st: os.stat_result | None = None


class _Stopped(Exception):
    """Raised inside a worker when the call was abandoned (an error elsewhere, Ctrl-C)."""


class _Counter:
    """Progress shared by the workers, and the flag that tells them to stop."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.files = 0
        self.bytes = 0
        self.stop = threading.Event()

    def add(self, files: int, nbytes: int) -> None:
        with self.lock:
            self.files += files
            self.bytes += nbytes


def _hash_job(
    job: _Job, counter: _Counter, attempts: int, seen: os.stat_result | None = None
) -> None:
    """Read one file until it reads consistently: same size and mtime before and after.

    `seen`: the file's stat after a read that found it changed (the new expectation).
    """
    size, mtime = (job.size, job.mtime_ns) if seen is None else (seen.st_size, seen.st_mtime_ns)
    for _attempt in range(attempts):
        if counter.stop.is_set():
            return
        try:
            digest, st, n = _read_file(job.path, size, counter)
        except OSError as exc:
            raise _oserror(job.path, exc)
        counted = n if size >= CHUNK else 0  # big files count their chunks as they go
        if n == st.st_size == size and st.st_mtime_ns == mtime:
            job.digest, job.st = digest, st
            counter.add(1, n - counted)
            return
        counter.add(0, -counted)
        size, mtime = st.st_size, st.st_mtime_ns  # try again against what is there now
        time.sleep(0.05)
    raise HashError(
        f"{job.path}: changed while being hashed", "hash it again once it is no longer written"
    )


def _hash_batch(jobs: Sequence[_Job], counter: _Counter) -> None:
    """Hash `jobs` in turn; small files are counted once per batch (fewer lock round trips)."""
    files = nbytes = 0
    try:
        stop = counter.stop
        for job in jobs:
            if stop.is_set():
                return
            size = job.size
            if size >= CHUNK:
                _hash_job(job, counter, _RETRIES)
                continue
            try:
                digest, st, n = _read_file(job.path, size)
            except OSError as exc:
                raise _oserror(job.path, exc)
            if n == size and st.st_size == size and st.st_mtime_ns == job.mtime_ns:
                job.digest, job.st = digest, st
                files += 1
                nbytes += n
            else:  # it changed since it was listed: the careful way, with retries
                time.sleep(0.05)
                _hash_job(job, counter, _RETRIES - 1, st)
    finally:
        counter.add(files, nbytes)


def _cost(jobs: Sequence[_Job]) -> float:
    """Rough seconds to hash `jobs`: ~3 GB/s of bytes plus ~12 µs a file (open, stat, close)."""
    return sum(j.size for j in jobs) / 3e9 + 12e-6 * len(jobs)


def _batches(jobs: list[_Job]) -> list[list[_Job]]:
    """The work queue: big files alone, small files in batches, the two interleaved.

    Big files hash with the GIL released; small ones mostly hold it (the per-file Python
    work). Alternating them by estimated cost keeps one thread on a big file while another
    works through small ones, instead of all threads fighting over the GIL at the end.
    """
    big = sorted((j for j in jobs if j.size >= _BATCH_BYTES), key=lambda j: j.size, reverse=True)
    small = sorted((j for j in jobs if j.size < _BATCH_BYTES), key=lambda j: j.size, reverse=True)
    small_batches: list[list[_Job]] = []
    batch: list[_Job] = []
    nbytes = 0
    for job in small:
        batch.append(job)
        nbytes += job.size
        if len(batch) >= _BATCH_FILES or nbytes >= _BATCH_BYTES:
            small_batches.append(batch)
            batch, nbytes = [], 0
    if batch:
        small_batches.append(batch)
    out: list[list[_Job]] = []
    i = k = 0
    big_cost = small_cost = 0.0
    while i < len(big) or k < len(small_batches):
        if k >= len(small_batches) or (i < len(big) and big_cost <= small_cost):
            out.append([big[i]])
            big_cost += _cost(out[-1])
            i += 1
        else:
            out.append(small_batches[k])
            small_cost += _cost(out[-1])
            k += 1
    return out


def default_threads() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(n, 32))


# -- the digest of a folder --------------------------------------------------------------------
_ESCAPES = {ord("\\"): "\\\\", ord("\t"): "\\t", ord("\n"): "\\n", ord("\r"): "\\r"}


def manifest(tree_entries: Iterable[_Entry]) -> bytes:
    """The manifest bytes whose blake3 is a folder's digest (see the module docstring)."""
    enc = sys.getfilesystemencoding()
    rows = [(e.rel.encode(enc, "surrogateescape"), e) for e in tree_entries]
    rows.sort(key=itemgetter(0))
    lines = [f"{e.rel}\t{e.digest.hex()}\t{e.size}\n" for _, e in rows]  # type: ignore[union-attr]
    text = "".join(lines)
    if (
        "\\" in text
        or "\r" in text
        or text.count("\t") != 2 * len(lines)
        or (text.count("\n") != len(lines))
    ):
        # Some name holds a character the line format uses: escape names one by one.
        lines = [
            f"{e.rel.translate(_ESCAPES)}\t{e.digest.hex()}\t{e.size}\n"  # type: ignore[union-attr]
            for _, e in rows
        ]
        text = "".join(lines)
    return MANIFEST_HEADER + text.encode(enc, "surrogateescape")


# -- the public function -----------------------------------------------------------------------
def _as_list(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[str]:
    if isinstance(paths, (str, os.PathLike)):
        return [os.fspath(paths)]
    return [os.fspath(p) for p in paths]


class _Workers:
    """Threads that hash batches from a queue the caller may still reorder."""

    def __init__(self, nthreads: int, counter: _Counter) -> None:
        self.nthreads = nthreads
        self.counter = counter
        self.queue: deque[list[_Job]] = deque()
        self.cv = threading.Condition()
        self.closed = False
        self.busy = 0
        self.error: BaseException | None = None
        self.threads: list[threading.Thread] = []

    def put(self, batches: Iterable[list[_Job]]) -> None:
        batches = list(batches)
        if not batches:
            return
        with self.cv:
            self.queue.extend(batches)
            self.cv.notify_all()
        if not self.threads:
            for i in range(self.nthreads):
                t = threading.Thread(target=self._work, name=f"tether-hash-{i}", daemon=True)
                t.start()
                self.threads.append(t)

    def take_queued(self) -> list[list[_Job]]:
        """Remove and return what no worker has started yet."""
        with self.cv:
            items = list(self.queue)
            self.queue.clear()
            return items

    def _work(self) -> None:
        while True:
            with self.cv:
                while not self.queue and not self.closed:
                    self.cv.wait()
                if not self.queue:
                    return
                batch = self.queue.popleft()
                self.busy += 1
            try:
                _hash_batch(batch, self.counter)
            except BaseException as exc:
                with self.cv:
                    if self.error is None and not isinstance(exc, _Stopped):
                        self.error = exc
                    self.counter.stop.set()
                    self.queue.clear()
            finally:
                with self.cv:
                    self.busy -= 1
                    self.cv.notify_all()

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def join(self, tick: Callable[[], None]) -> None:
        """Wait for all queued work; raise the first error of a worker."""
        with self.cv:
            self.closed = True
            self.cv.notify_all()
        while True:
            with self.cv:
                if self.error is not None or (not self.queue and self.busy == 0):
                    break
                self.cv.wait(timeout=_PROGRESS_EVERY_S)
            tick()
        self.stop_all()
        self.check()

    def stop_all(self) -> None:
        with self.cv:
            self.closed = True
            self.queue.clear()
            self.cv.notify_all()
        for t in self.threads:
            t.join()


class _Session:
    """One `hash_data` call: decides per listed folder what the cache knows and what to read.

    Big files (GIL-free work) start hashing while the folders are still being listed; small
    ones wait for the end of the listing, to be interleaved with the big files not yet started.
    """

    def __init__(self, nthreads: int, db: Any, report: _Reporter) -> None:
        self.nthreads = nthreads
        self.db = db
        self.report = report
        self.counter = _Counter()
        self.workers = _Workers(nthreads, self.counter) if nthreads > 1 else None
        self.jobs: dict[tuple[int, int, int, int], _Job] = {}
        self.later: list[_Job] = []
        self.early: list[_Job] = []
        self.early_bytes = 0
        self.files_total = self.bytes_total = 0
        self.cached_files = self.cached_bytes = 0

    def listed(self, entries: list[_Entry]) -> None:
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
            job = self.jobs[key] = _Job(e)
            if self.workers is not None and e.size >= _EARLY_BYTES:
                self.early.append(job)
                self.early_bytes += e.size
                if self.early_bytes >= _BATCH_BYTES:
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
            for batch in _batches(self.later):
                _hash_batch(batch, self.counter)
                self.tick()
            return
        # Everything not started yet, interleaved again: big files among the small ones.
        waiting = [j for batch in self.workers.take_queued() for j in batch]
        self.workers.put(_batches(waiting + self.early + self.later))
        self.early, self.later = [], []
        self.workers.join(self.tick)

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
    from .hashcache import HashCache

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
        trees = [_scan(root, session.listed) for root in roots]
        # 2. Read the rest, several files at once.
        session.run()
        # 3. Give every entry its digest and size as read, and remember them (in the
        #    background while the folder digests are computed).
        todo = list(session.jobs.values())
        updates = _apply(todo, remember=db is not None)
        if db is not None and updates:
            saver = threading.Thread(target=_save, args=(db, updates, trees), daemon=True)
            saver.start()
        results = [_digest_of(t) for t in trees]
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


def _apply(todo: list[_Job], remember: bool) -> dict[tuple[int, int], dict[str, Any]]:
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


def _save(db: Any, updates: dict[tuple[int, int], dict[str, Any]], trees: list[_Tree]) -> None:
    # Folders listed in full: names gone from them are dropped from the cache.
    listings: dict[tuple[int, int], set[str]] = {}
    for t in trees:
        if t.is_dir:
            for e in t.entries:
                if e.dir_key in updates:
                    listings.setdefault(e.dir_key, set()).add(e.name)
    db.store(updates, listings)


def _digest_of(tree: _Tree) -> DataDigest:
    size = sum(e.size for e in tree.entries)
    if not tree.is_dir:
        digest = tree.entries[0].digest
        assert digest is not None
        return DataDigest(tree.root, ALGO, digest.hex(), 1, size)
    text = manifest(tree.entries)
    return DataDigest(tree.root, ALGO, blake3.blake3(text).hexdigest(), len(tree.entries), size)


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


# -- run.lock updates and the background hasher ------------------------------------------------
@contextlib.contextmanager
def locked_run_lock(run_dir: str | os.PathLike[str]) -> Iterator[RunLock]:
    """Read run.lock under an exclusive fcntl lock, yield it, write it back atomically.

    Every read-modify-write of a run.lock after its creation goes through here, so two
    processes updating different entries never lose each other's change.
    """
    import fcntl

    from ..lock import read_lock, write_lock

    folder = Path(run_dir)
    fd = os.open(folder / FLOCK_NAME, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        lock = read_lock(folder)
        yield lock
        write_lock(folder, lock)
    finally:
        os.close(fd)  # closing releases the lock


def _same(record: DataRecord, path: str, key: str | None) -> bool:
    return record.path == path and record.key == key


def hash_data_background(
    run_dir: str | os.PathLike[str],
    entries: Iterable[DataRecord | str | os.PathLike[str]],
    *,
    base: str | os.PathLike[str] | None = None,
    threads: int | None = None,
    cache: bool = True,
) -> subprocess.Popen[bytes]:
    """Hash `entries` in a detached process that fills run.lock when it is done.

    Each entry is a `DataRecord` (its `path` and `key` pick the run.lock entry) or a path (it
    picks every entry with that path, whatever its key). Entries missing from run.lock are
    added. All are marked `pending` now, then `done` with digest, files and bytes (or `failed`,
    the reason in `datahash.log` in the run folder) as the background process finishes each.
    Relative paths are resolved against `base` (default: the current folder). Killing the
    process leaves `pending`, never a broken run.lock. Returns the process; `wait_for_data`
    waits on the run.lock instead.
    """
    import json
    import subprocess

    from ..lock import DataRecord

    folder = Path(run_dir).resolve()
    targets: list[dict[str, Any]] = []
    with locked_run_lock(folder) as lock:
        for item in entries:
            if isinstance(item, DataRecord):
                path, key = item.path, item.key
                found = [r for r in lock.data if _same(r, path, key)]
            else:
                path, key = os.fspath(item), None
                found = [r for r in lock.data if r.path == path]
            if not found:
                found = [DataRecord(path=path, key=key)]
                lock.data.extend(found)
            for rec in found:
                rec.algo, rec.digest, rec.files, rec.bytes = ALGO, None, 0, 0
                rec.status = "pending"
                targets.append({"path": rec.path, "key": rec.key})

    cwd = Path(base).resolve() if base is not None else Path.cwd()
    argv = [
        sys.executable,
        "-m",
        "tether.capture.datahash",
        "--run-dir",
        str(folder),
        "--entries",
        json.dumps(targets),
    ]
    if threads is not None:
        argv += ["--threads", str(threads)]
    if not cache:
        argv.append("--no-cache")
    env = dict(os.environ)
    # The child imports this same tether, even when it was put on sys.path by hand (but a
    # site-packages folder never goes on PYTHONPATH, where it would shadow the stdlib).
    import site

    package_parent = str(Path(__file__).resolve().parents[2])
    sites = {str(Path(p).resolve()) for p in [*site.getsitepackages(), site.getusersitepackages()]}
    if package_parent not in sites:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    with open(folder / LOG_NAME, "ab") as logf:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=logf,
            start_new_session=True,
            close_fds=True,
        )


def wait_for_data(
    run_dir: str | os.PathLike[str], timeout: float | None = None, poll: float = 0.1
) -> RunLock:
    """Wait until no `data` entry of the run.lock is `pending`; returns the run.lock."""
    from ..lock import read_lock

    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        lock = read_lock(Path(run_dir))
        if not any(d.status == "pending" for d in lock.data):
            return lock
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"{run_dir}: data still pending after {timeout} s")
        time.sleep(poll)


def _update_entries(folder: Path, path: str, keys: list[str | None], **values: Any) -> None:
    with locked_run_lock(folder) as lock:
        for rec in lock.data:
            if rec.path == path and rec.key in keys and rec.status == "pending":
                for name, value in values.items():
                    setattr(rec, name, value)


def _background_main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m tether.capture.datahash")
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--entries", required=True, help="JSON list of {path, key}")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-cache", action="store_true")
    args = parser.parse_args(argv)
    folder = Path(args.run_dir)
    keys: dict[str, list[str | None]] = {}
    for item in json.loads(args.entries):
        keys.setdefault(item["path"], []).append(item.get("key"))
    failures = 0
    for path, path_keys in keys.items():
        try:
            (digest,) = hash_data([path], threads=args.threads, cache=not args.no_cache)
        except Exception as exc:
            failures += 1
            if isinstance(exc, TetherError):
                message = f"tether: error: {exc}\n"
            else:
                import traceback

                message = traceback.format_exc()
            with contextlib.suppress(OSError), open(folder / LOG_NAME, "a") as fh:
                fh.write(message)
            _update_entries(folder, path, path_keys, status="failed")
            continue
        _update_entries(
            folder,
            path,
            path_keys,
            algo=digest.algo,
            digest=digest.digest,
            files=digest.files,
            bytes=digest.bytes,
            status="done",
        )
    with contextlib.suppress(OSError):
        log = folder / LOG_NAME
        if log.stat().st_size == 0:
            log.unlink()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(_background_main())
