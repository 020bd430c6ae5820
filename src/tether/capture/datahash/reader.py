"""Reading files and hashing them with blake3: one pass per file, the fewest system calls.

`hash_files` reads files of one listed folder, by index into its stats: the folder is opened
once and each file opened by name relative to it (no path walk per file), read and hashed in
one loop with no call or object per file (issue 19: on 100k x 1 KiB files that per-file
Python work was as much as the system calls). A file that needs care (recently modified,
changed since the listing, unreadable) leaves that loop for `hash_batch`, the reference
path, one `Entry` each; so do all files while `_read_file` is replaced (tests wrap it to
count and fail reads).

- Small files (under `MMAP_MIN`): open, one read of the listed size + 1 byte, close; the size
  and mtime are the listing's (no fstat): a file that grew reads more than listed, and one
  rewritten after the listing has a new mtime the next time (the cache keys on the listing's).
- Big files: blake3 maps the file and hashes it on its own threads (`update_mmap`, the GIL
  released for the whole file), so one big file uses every core; one stat afterwards checks
  that it did not change meanwhile.
- Files modified less than `hashing.RACY_NS` ago (maybe still being written: a mapped file
  truncated under the reader would kill the process) and files found changed are read the
  careful way: chunks into one buffer, fstat after, compared with the expectation, read again
  a few times, then an error.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from .records import HashError
from .walk import Entry, Folder, oserror

CHUNK = 1 << 20  # files from this size on are mapped and hashed on blake3's threads
MMAP_MIN = CHUNK
SPLIT_MIN = 16 << 20  # files from this size on are hashed on several of blake3's threads
READ_SIZE = 4 << 20  # read size of the careful path (fewer GIL hand-offs per file)
_RETRIES = 3  # attempts on a file that changes while it is read
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
_open, _read, _close = os.open, os.read, os.close  # module globals: fewer lookups per file

_local = threading.local()


def _buffer() -> tuple[bytearray, memoryview]:
    buf = getattr(_local, "buf", None)
    if buf is None:
        buf = _local.buf = bytearray(READ_SIZE)
        _local.view = memoryview(buf)
    return buf, _local.view


_b3: Any = None


def _blake3() -> Any:
    global _b3
    if _b3 is None:
        import blake3  # noqa: PLC0415 (heavy: a compiled extension, only when hashing)

        _b3 = blake3.blake3
    return _b3


def _read_file(
    path: str,
    size: int,
    counter: Counter | None = None,
    careful: bool = False,
    threads: int = 1,
    small: Any = None,
) -> tuple[bytes, os.stat_result | None, int]:
    """Read and hash one file: (digest, its stat after reading or None, bytes read).

    `size` is the size expected from the listing. Quick small reads return no stat; a quick
    big read returns the stat taken after hashing (its size stands for the bytes read).
    `small`: a hasher to reuse for a small file (a new blake3 object costs more than hashing
    a few KiB). Tests replace this function to count reads.
    """
    b3 = _b3 or _blake3()
    if not careful:
        if size < MMAP_MIN:
            fd = _open(path, _OPEN_FLAGS)
            try:
                data = _read(fd, size + 1)
            finally:
                _close(fd)
            if small is None:
                return b3(data).digest(), None, len(data)
            small.reset()
            small.update(data)
            return small.digest(), None, len(data)
        hasher = b3(max_threads=max(1, threads))
        hasher.update_mmap(path)
        st = os.stat(path)
        return hasher.digest(), st, st.st_size
    fd = os.open(path, _OPEN_FLAGS)
    try:
        hasher = b3()
        buf, view = _buffer()
        n = 0
        while k := os.readv(fd, [buf]):
            hasher.update(view[:k])
            n += k
            if counter is not None:
                counter.add(0, k)
                if counter.stop.is_set():
                    raise Stopped
        digest = hasher.digest()
        st = os.fstat(fd)
    finally:
        os.close(fd)
    return digest, st, n


_reference_read = _read_file  # `hash_files` leaves its fast loop while this is replaced

Job = Entry  # the first entry of a file (see `Entry.links`)


class Stopped(Exception):
    """Raised inside a worker when the call was abandoned (an error elsewhere, Ctrl-C)."""


class Counter:
    """Progress shared by the workers, and the flag that tells them to stop."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.files = 0
        self.bytes = 0
        self.stop = threading.Event()
        self.changed: list[Job] = []  # files whose stat as read differs from the listing

    def add(self, files: int, nbytes: int) -> None:
        with self.lock:
            self.files += files
            self.bytes += nbytes


def _hash_job(job: Job, counter: Counter, attempts: int, seen: os.stat_result | None) -> None:
    """Read one file the careful way until it reads consistently: same size and mtime before
    and after. `seen`: the file's stat when a quick read found it changed (the new
    expectation), None to expect the listing's."""
    size, mtime = (job.size, job.mtime_ns) if seen is None else (seen.st_size, seen.st_mtime_ns)
    for _attempt in range(attempts):
        if counter.stop.is_set():
            return
        try:
            digest, st, n = _read_file(job.path, size, counter, True)
        except OSError as exc:
            raise oserror(job.path, exc)
        assert st is not None
        if n == st.st_size == size and st.st_mtime_ns == mtime:
            if (n, mtime, st.st_dev, st.st_ino) != (job.size, job.mtime_ns, job.dev, job.ino):
                job.size, job.mtime_ns, job.dev, job.ino = n, mtime, st.st_dev, st.st_ino
                with counter.lock:
                    counter.changed.append(job)
            job.digest = digest
            counter.add(1, 0)  # its bytes were counted chunk by chunk
            return
        counter.add(0, -n)
        size, mtime = st.st_size, st.st_mtime_ns  # try again against what is there now
        time.sleep(0.05)
    raise HashError(
        f"{job.path}: changed while being hashed", "hash it again once it is no longer written"
    )


def _changed(job: Job) -> os.stat_result | None:
    try:
        return os.stat(job.path)
    except OSError as exc:
        raise oserror(job.path, exc)


def hash_batch(jobs: Sequence[Job], counter: Counter, hot_after: int, threads: int = 1) -> None:
    """Hash `jobs` in turn, counted once per batch (fewer lock round trips).

    Files modified at or after `hot_after` (ns) are read the careful way; `threads`: blake3's
    threads for a big file.
    """
    files = nbytes = 0
    read = _read_file
    small = (_b3 or _blake3())()
    try:
        stop = counter.stop
        for job in jobs:
            if stop.is_set():
                return
            size = job.size
            if job.mtime_ns >= hot_after:
                _hash_job(job, counter, _RETRIES, None)
                continue
            try:
                digest, st, n = read(job.path, size, None, False, threads, small)
            except OSError:
                # Gone, unreadable, or not mappable: the careful read names the reason.
                _hash_job(job, counter, _RETRIES, None)
                continue
            if n == size and (st is None or st.st_mtime_ns == job.mtime_ns):
                job.digest = digest
                files += 1
                nbytes += n
            else:  # it changed since it was listed: the careful way, with retries
                time.sleep(0.05)
                _hash_job(job, counter, _RETRIES - 1, st if st is not None else _changed(job))
    finally:
        counter.add(files, nbytes)


def hash_files(
    folder: Folder, todo: Sequence[int], counter: Counter, hot_after: int, threads: int = 1
) -> None:
    """Hash the files of `folder` at the indices `todo` into `folder.digests`.

    Small files: open by name in the folder, one read of the listed size + 1, close, hash
    with one reused hasher. Big ones: mapped and hashed on `threads` of blake3's, then one
    stat. Anything else (see the module docstring) goes through `hash_batch`, and its stat
    as read replaces the listing's.
    """
    if counter.stop.is_set():
        return
    stats, digests = folder.stats, folder.digests
    assert digests is not None
    if _read_file is not _reference_read or folder.partial is not None:
        _careful(folder, list(todo), counter, hot_after, threads)
        return
    b3 = _b3 or _blake3()
    hasher = b3()
    reset, update, digest = hasher.reset, hasher.update, hasher.digest
    careful: list[int] = []
    files = nbytes = 0
    try:
        dfd = _open(folder.path, _DIR_FLAGS)
    except OSError:
        careful = list(todo)
    else:
        try:
            for i in todo:
                name, _dev, _ino, size, mtime = stats[i]
                if mtime >= hot_after:
                    careful.append(i)
                    continue
                if size >= MMAP_MIN:
                    path = folder.file_path(i)
                    try:
                        big = b3(max_threads=threads if size >= SPLIT_MIN else 1)
                        big.update_mmap(path)
                        st = os.stat(path)
                    except OSError:
                        careful.append(i)
                        continue
                    if st.st_size != size or st.st_mtime_ns != mtime:
                        careful.append(i)
                        continue
                    digests[i] = big.digest()
                else:
                    try:
                        fd = _open(name, _OPEN_FLAGS, dir_fd=dfd)
                    except OSError:
                        careful.append(i)
                        continue
                    try:
                        data = _read(fd, size + 1)
                    except OSError:
                        careful.append(i)
                        continue
                    finally:
                        _close(fd)
                    if len(data) != size:  # it changed since the listing
                        careful.append(i)
                        continue
                    reset()
                    update(data)
                    digests[i] = digest()
                files += 1
                nbytes += size
        finally:
            _close(dfd)
            counter.add(files, nbytes)
    if careful:
        _careful(folder, careful, counter, hot_after, threads)


def _careful(
    folder: Folder, todo: list[int], counter: Counter, hot_after: int, threads: int
) -> None:
    """`hash_batch` on the files at `todo`, their digests and stats as read put back."""
    stats, digests = folder.stats, folder.digests
    assert digests is not None
    key = folder.key
    jobs = []
    for i in todo:
        name, dev, ino, size, mtime = stats[i]
        jobs.append(Entry("", folder.file_path(i), dev, ino, size, mtime, key, name))
    hash_batch(jobs, counter, hot_after, threads)
    for i, job in zip(todo, jobs, strict=True):
        if job.digest is None:  # abandoned (stop set)
            continue
        digests[i] = job.digest
        new = (job.name, job.dev, job.ino, job.size, job.mtime_ns)
        if new != stats[i]:
            stats[i] = new
            folder.changed = True


def default_threads() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(n, 32))


class BigWorker:
    """One thread that hashes big files in turn while the caller lists folders and reads small
    files: each big file is hashed on blake3's own threads with the GIL released, so it never
    competes with the caller for the GIL, only for cores. Its work comes as (folder, indices)
    batches for `hash_files`."""

    def __init__(self, counter: Counter, hot_after: int, threads: int) -> None:
        self.counter = counter
        self.hot_after = hot_after
        self.threads = threads
        self.queue: deque[tuple[Folder, list[int]]] = deque()
        self.cv = threading.Condition()
        self.closed = False
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None

    def put(self, folder: Folder, todo: list[int]) -> None:
        with self.cv:
            self.queue.append((folder, todo))
            self.cv.notify()
        if self.thread is None:
            self.thread = threading.Thread(target=self._work, name="tether-hash-big", daemon=True)
            self.thread.start()

    def _work(self) -> None:
        while True:
            with self.cv:
                while not self.queue and not self.closed:
                    self.cv.wait()
                if not self.queue:
                    return
                folder, todo = self.queue.popleft()
            try:
                hash_files(folder, todo, self.counter, self.hot_after, self.threads)
            except BaseException as exc:
                with self.cv:
                    if self.error is None and not isinstance(exc, Stopped):
                        self.error = exc
                    self.counter.stop.set()
                    self.queue.clear()

    def take(self) -> tuple[Folder, list[int]] | None:
        """A batch no thread has started, for the caller to hash itself; None when none."""
        with self.cv:
            return self.queue.popleft() if self.queue else None

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def join(self, tick: Callable[[], None], every: float) -> None:
        """Wait for the queue to drain, calling `tick` every `every` seconds; raise the
        worker's error."""
        with self.cv:
            self.closed = True
            self.cv.notify_all()
        if self.thread is not None:
            while self.thread.is_alive():
                self.thread.join(every)
                tick()
        self.check()

    def stop_all(self) -> None:
        with self.cv:
            self.closed = True
            self.queue.clear()
            self.cv.notify_all()
        if self.thread is not None:
            self.thread.join()
