"""The run manifest's format: `manifest.json` in a run folder, read, written and compared.

The manifest lists every file of the run folder when the run ended (and after each later write
through tether, such as `open_run`): its path, size, mtime and blake3 digest, links with their
target, and the digests of run.lock (`lock`: the file's bytes; `lock_digest`: the run's
identity, `RunLock.digest()`, what a downstream stage records). Building it, which hashes, is
`tether.session.manifest`'s job; this module owns the format, so that purge (below the hasher)
can read it too.

A big file not hashed yet when the manifest was written (a checkpoint hashed in the background)
is an entry with `"blake3": null, "pending": true`, and the manifest's `pending` counts them;
the background hasher fills them in (`fill`), rewriting the manifest atomically. Consumers
treat a pending entry as known by size and mtime only.

Records tether itself rewrites after a run ends (state.json, output.log, metrics.jsonl,
summary.json, attrs/, the marker, the lock's flock file, the background hasher's log) are
listed without a digest, and a file tether makes in a run folder (`tether_made`) is never taken
for one a user added.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import StoreError
from ..fsio import atomic_write_json
from ..lock import FLOCK_NAME, read_lock
from ..patterns import LazyPattern
from .layout import ATTRS, LOCK, MANIFEST, MARKER, METRICS, OUTPUT, STATE, SUMMARY

ALGO = "blake3"  # the digest of tether.capture.datahash
VERSION = 1
# Written by tether in a run folder, by their owners: the final state's reserve
# (session.lifecycle.RESERVE) and the background hasher's log (capture.datahash.background).
RESERVE = ".tether-reserve"
HASH_LOG = "datahash.log"
# Listed with size and mtime only: tether rewrites them after the run ends.
UNHASHED = frozenset({STATE, OUTPUT, METRICS, SUMMARY, MARKER, FLOCK_NAME, HASH_LOG})
# Every name tether writes at the top of a run folder outside the run's own outputs.
RECORDS = UNHASHED | {LOCK, MANIFEST, RESERVE}
_TEMP = LazyPattern(r"(^|/)\.[^/]+\.\d+\.[0-9a-f]{12}\.tmp$")  # tether.fsio's atomic-write temps


def unhashed(rel: str) -> bool:
    return rel in UNHASHED or rel.startswith(ATTRS + "/")


def transient(rel: str) -> bool:
    """Whether tether may remove `rel` on its own (so its absence is no drift)."""
    return rel in (RESERVE, HASH_LOG, FLOCK_NAME) or _TEMP.search(rel) is not None


def tether_made(rel: str) -> bool:
    """Whether the run-folder path `rel` is one of tether's records (or a temp of one)."""
    return rel in RECORDS or rel.startswith(ATTRS + "/") or _TEMP.search(rel) is not None


@dataclass
class FileEntry:
    """One file (or link) of a run folder as the manifest records it."""

    path: str  # posix, relative to the run folder
    size: int | None = None
    mtime_ns: int | None = None
    hashed: bool = True  # False for records tether rewrites (no digest kept)
    digest: str | None = None
    pending: bool = False  # a big file the background hasher has not finished yet
    error: str | None = None  # why it has no digest (unreadable, changed before it was hashed)
    link: str | None = None  # a symlink's target (never followed)

    def to_dict(self) -> dict[str, Any]:
        if self.link is not None:
            return {"path": self.path, "link": self.link}
        out: dict[str, Any] = {"path": self.path, "size": self.size, "mtime_ns": self.mtime_ns}
        if self.hashed:
            out[ALGO] = self.digest
        if self.pending:
            out["pending"] = True
        if self.error:
            out["error"] = self.error
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> FileEntry:
        path = str(raw["path"])
        if "link" in raw:
            return cls(path, hashed=False, link=str(raw["link"]))
        return cls(
            path,
            size=_int(raw.get("size")),
            mtime_ns=_int(raw.get("mtime_ns")),
            hashed=ALGO in raw,
            digest=raw.get(ALGO) if isinstance(raw.get(ALGO), str) else None,
            pending=raw.get("pending") is True,
            error=str(raw["error"]) if raw.get("error") else None,
        )

    def same_stat(self, other: FileEntry) -> bool:
        return (self.link, self.size, self.mtime_ns) == (other.link, other.size, other.mtime_ns)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass
class Manifest:
    """A run folder's file list with digests, written at run end (`tether check --run` verifies
    it)."""

    run: str
    files: list[FileEntry] = field(default_factory=list)
    written: str | None = None
    lock: str | None = None  # blake3 of run.lock's bytes
    lock_digest: str | None = None  # RunLock.digest(): the run's identity
    version: int = VERSION

    @property
    def pending(self) -> list[FileEntry]:
        return [f for f in self.files if f.pending]

    def by_path(self) -> dict[str, FileEntry]:
        return {f.path: f for f in self.files}

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "run": self.run,
            "written": self.written,
            "algo": ALGO,
            "lock": self.lock,
            "lock_digest": self.lock_digest,
            "pending": len(self.pending),
            "files": [f.to_dict() for f in self.files],
        }


def read_manifest(run_dir: Path) -> Manifest | None:
    """The manifest of a run folder; None when it has none. A manifest that is not one
    raises StoreError naming the file."""
    path = Path(run_dir) / MANIFEST
    try:
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"{path} cannot be read ({exc.strerror})")
    except (ValueError, RecursionError):
        raise StoreError(f"{path} is not valid JSON", "`tether check --run` lists the folder anew")
    try:
        if not isinstance(raw, dict) or not isinstance(raw.get("files"), list):
            raise TypeError
        version = raw.get("version", VERSION)
        if not isinstance(version, int) or version > VERSION:
            raise StoreError(
                f"{path}: manifest version {version!r} is not one this tether reads ({VERSION})",
                "upgrade tether",
            )
        files = [FileEntry.from_dict(f) for f in raw["files"]]
    except (TypeError, KeyError, AttributeError):
        raise StoreError(f"{path} is not a run manifest (expected a mapping with 'files')")
    return Manifest(
        run=str(raw.get("run") or ""),
        files=files,
        written=raw.get("written"),
        lock=raw.get("lock") if isinstance(raw.get("lock"), str) else None,
        lock_digest=raw.get("lock_digest") if isinstance(raw.get("lock_digest"), str) else None,
        version=version,
    )


def scan(run_dir: Path) -> list[FileEntry]:
    """Every file and link of the run folder (the manifest itself left out), sorted, with
    size and mtime; links are listed, never followed."""
    out: list[FileEntry] = []
    for folder, dirs, names in os.walk(run_dir):  # links to folders are not followed
        dirs.sort()
        linked = [d for d in dirs if os.path.islink(os.path.join(folder, d))]
        for name in sorted(names + linked):
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, run_dir).replace(os.sep, "/")
            if rel == MANIFEST:
                continue
            try:
                st = os.lstat(path)
            except OSError:
                continue  # gone since the listing
            if stat.S_ISLNK(st.st_mode):
                with contextlib.suppress(OSError):
                    out.append(FileEntry(rel, hashed=False, link=os.readlink(path)))
                continue
            if stat.S_ISREG(st.st_mode):
                out.append(FileEntry(rel, st.st_size, st.st_mtime_ns, hashed=not unhashed(rel)))
    return out


@contextlib.contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """Exclusive while a manifest is read, changed and written back: the run's end, open_run
    and the background hasher never lose each other's update. The file locked is the run's
    marker, which every run folder has and nothing rewrites after the folder is made (no lock
    file of its own in every folder); a folder without one (made by an older tether) locks
    run.lock's flock file (`tether.lock.FLOCK_NAME`)."""
    import fcntl  # noqa: PLC0415 (POSIX only: where the lock is taken)

    folder = Path(run_dir)
    try:
        # read-write: an exclusive lock over NFS is a write lock, which needs it
        fd = os.open(folder / MARKER, os.O_RDWR | os.O_CLOEXEC)
    except PermissionError:
        fd = os.open(folder / MARKER, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        fd = os.open(folder / FLOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def write_manifest_file(run_dir: Path, manifest: Manifest) -> None:
    # Atomic, not fsynced: the manifest is derived from the folder (a damaged one is listed
    # anew), and the run's end waits for no more than its final state.json's two fsyncs.
    atomic_write_json(Path(run_dir) / MANIFEST, manifest.to_dict(), durable=False)


def lock_digests(run_dir: Path) -> tuple[str | None, str | None]:
    """(blake3 of run.lock's bytes, the run's identity digest), None where unreadable."""
    import blake3  # banned at module level (TID253): only when a manifest is made

    try:
        data = (Path(run_dir) / LOCK).read_bytes()
    except OSError:
        return None, None
    try:
        identity: str | None = read_lock(Path(run_dir)).digest()
    except StoreError:
        identity = None
    return blake3.blake3(data).hexdigest(), identity


def fill(run_dir: Path, digests: dict[str, tuple[int, int, str | None, str | None]]) -> int:
    """Complete pending entries with what the background hasher found: `digests` maps a path
    to (size, mtime_ns) as hashed and (digest, error). An entry whose file changed since the
    manifest was written gets an error instead of a digest. Returns the entries still pending."""
    with locked(run_dir):
        manifest = read_manifest(run_dir)
        if manifest is None:
            return 0
        for entry in manifest.files:
            found = digests.get(entry.path)
            if not entry.pending or found is None:
                continue
            size, mtime_ns, digest, error = found
            entry.pending = False
            if (size, mtime_ns) != (entry.size, entry.mtime_ns):
                entry.error = "changed after the manifest was written, before it was hashed"
            elif digest is None:
                entry.error = error or "cannot be hashed"
            else:
                entry.digest = digest
        write_manifest_file(run_dir, manifest)
        return len(manifest.pending)


def refresh_lock(run_dir: Path) -> None:
    """run.lock changed after the manifest was written (a background data hash finished):
    record its new size, mtime and digests. No manifest yet: the run's end writes one."""
    with locked(run_dir):
        manifest = read_manifest(run_dir)
        if manifest is None:
            return
        entry = manifest.by_path().get(LOCK)
        try:
            st = os.stat(Path(run_dir) / LOCK)
        except OSError:
            return
        manifest.lock, manifest.lock_digest = lock_digests(run_dir)
        if entry is None:
            entry = FileEntry(LOCK)
            manifest.files.append(entry)
            manifest.files.sort(key=lambda f: f.path)
        entry.size, entry.mtime_ns, entry.digest = st.st_size, st.st_mtime_ns, manifest.lock
        write_manifest_file(run_dir, manifest)


def strangers(run_dir: Path, manifest: Manifest) -> list[str]:
    """Files of the folder the manifest does not list and tether did not make: put there by
    someone after the run ended (a purge must not delete them silently)."""
    listed = {f.path for f in manifest.files}
    return [f.path for f in scan(run_dir) if f.path not in listed and not tether_made(f.path)]
