"""Reading files and hashing them with blake3, several threads at once.

Files are read in 4 MiB chunks (files under 1 MiB in one read): blake3 releases the GIL, so on
N cores N big files hash in parallel. A file that changes while it is read (size or mtime
differ before and after) is read again, a few times, then is an error.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence

import blake3

from .records import HashError
from .walk import Entry, oserror

CHUNK = 1 << 20  # files smaller than this are read in one call
READ_SIZE = 4 << 20  # read size for the others (fewer GIL hand-offs per file)
_BATCH_FILES = 64  # small files handed to a worker at once
BATCH_BYTES = 8 << 20
_RETRIES = 3  # attempts on a file that changes while it is read


_local = threading.local()


def _buffer() -> tuple[bytearray, memoryview]:
    buf = getattr(_local, "buf", None)
    if buf is None:
        buf = _local.buf = bytearray(READ_SIZE)
        _local.view = memoryview(buf)
    return buf, _local.view


def _read_file(
    path: str, size: int, counter: Counter | None = None
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
                        raise Stopped
            digest = hasher.digest()
        st = os.fstat(fd)
    finally:
        os.close(fd)
    return digest, st, n


class Job:
    """One distinct file to read (several entries can share it through links)."""

    __slots__ = ("digest", "entries", "mtime_ns", "path", "size", "st")

    def __init__(self, entry: Entry) -> None:
        self.path = entry.path
        self.size = entry.size
        self.mtime_ns = entry.mtime_ns
        self.entries = [entry]
        self.digest: bytes | None = None
        self.st: os.stat_result | None = None


class Stopped(Exception):
    """Raised inside a worker when the call was abandoned (an error elsewhere, Ctrl-C)."""


class Counter:
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
    job: Job, counter: Counter, attempts: int, seen: os.stat_result | None = None
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
            raise oserror(job.path, exc)
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


def hash_batch(jobs: Sequence[Job], counter: Counter) -> None:
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
                raise oserror(job.path, exc)
            if n == size and st.st_size == size and st.st_mtime_ns == job.mtime_ns:
                job.digest, job.st = digest, st
                files += 1
                nbytes += n
            else:  # it changed since it was listed: the careful way, with retries
                time.sleep(0.05)
                _hash_job(job, counter, _RETRIES - 1, st)
    finally:
        counter.add(files, nbytes)


def _cost(jobs: Sequence[Job]) -> float:
    """Rough seconds to hash `jobs`: ~3 GB/s of bytes plus ~12 µs a file (open, stat, close)."""
    return sum(j.size for j in jobs) / 3e9 + 12e-6 * len(jobs)


def batches(jobs: list[Job]) -> list[list[Job]]:
    """The work queue: big files alone, small files in batches, the two interleaved.

    Big files hash with the GIL released; small ones mostly hold it (the per-file Python
    work). Alternating them by estimated cost keeps one thread on a big file while another
    works through small ones, instead of all threads fighting over the GIL at the end.
    """
    big = sorted((j for j in jobs if j.size >= BATCH_BYTES), key=lambda j: j.size, reverse=True)
    small = sorted((j for j in jobs if j.size < BATCH_BYTES), key=lambda j: j.size, reverse=True)
    small_batches: list[list[Job]] = []
    batch: list[Job] = []
    nbytes = 0
    for job in small:
        batch.append(job)
        nbytes += job.size
        if len(batch) >= _BATCH_FILES or nbytes >= BATCH_BYTES:
            small_batches.append(batch)
            batch, nbytes = [], 0
    if batch:
        small_batches.append(batch)
    out: list[list[Job]] = []
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


class Workers:
    """Threads that hash batches from a queue the caller may still reorder."""

    def __init__(self, nthreads: int, counter: Counter) -> None:
        self.nthreads = nthreads
        self.counter = counter
        self.queue: deque[list[Job]] = deque()
        self.cv = threading.Condition()
        self.closed = False
        self.busy = 0
        self.error: BaseException | None = None
        self.threads: list[threading.Thread] = []

    def put(self, batches: Iterable[list[Job]]) -> None:
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

    def take_queued(self) -> list[list[Job]]:
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
                hash_batch(batch, self.counter)
            except BaseException as exc:
                with self.cv:
                    if self.error is None and not isinstance(exc, Stopped):
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

    def join(self, tick: Callable[[], None], every: float) -> None:
        """Wait for all queued work, calling `tick` at least every `every` seconds; raise the
        first error of a worker."""
        with self.cv:
            self.closed = True
            self.cv.notify_all()
        while True:
            with self.cv:
                if self.error is not None or (not self.queue and self.busy == 0):
                    break
                self.cv.wait(timeout=every)
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
