"""How two copies of one run merge: run.lock must agree, attrs/ events unite, the later wins.

- run.lock is written once, at the run's start: two copies of one run with different run.lock
  digests are two different runs under one id, and are refused with both digests named;
- attrs/ holds append-only event files with unique names: the union of both copies' events is
  the merge, so labels, tags and notes made on two machines all survive;
- every other file is the run's own: the copy whose state was updated later wins (a run still
  running elsewhere keeps growing there); a finished run's files are the same on both sides.
"""

from __future__ import annotations

from dataclasses import replace

from ..errors import TetherError
from ..store.layout import ATTRS
from .entries import Entry, FileDigest


class LockConflict(TetherError):
    """Two different run.lock files for one run id."""


def check_lock(run_id: str, mine: Entry, other: Entry | None, *, here: str, there: str) -> None:
    if other is None or not mine.lock or not other.lock:
        return
    if (mine.lock_digest or mine.lock) == (other.lock_digest or other.lock):
        return
    raise LockConflict(
        f"run {run_id}: run.lock differs: {here} blake3 {mine.lock[:16]}, {there} "
        f"blake3 {other.lock[:16]}",
        "a run's run.lock never changes: these are two runs under one id; keep one "
        "(`tether delete` here, or remove it from the remote)",
    )


def is_event(path: str) -> bool:
    return path.startswith(ATTRS + "/")


def later(a: Entry, b: Entry | None) -> bool:
    """Whether `a` was updated strictly later than `b` (ISO times of the same clock format)."""
    return b is None or a.updated > b.updated


def merge_for_push(local: Entry, remote: Entry | None) -> tuple[Entry, list[str]]:
    """The entry the remote will list after a push of `local`, and the paths to upload."""
    if remote is None:
        return local, [f.path for f in local.files]
    theirs = remote.by_path()
    mine = local.by_path()
    if later(remote, local):
        # The remote's copy is newer (the run goes on elsewhere): its files stay; only the
        # events this store added go.
        new_events = [f for f in local.files if is_event(f.path) and f.path not in theirs]
        merged = replace(
            remote,
            files=sorted(remote.files + new_events, key=lambda f: f.path),
            snapshots=list(local.snapshots),
        )
        return merged, [f.path for f in new_events]
    upload = [f.path for f in local.files if _differs(f, theirs.get(f.path))]
    kept: list[FileDigest] = [f for f in remote.files if is_event(f.path) and f.path not in mine]
    if not kept:
        return local, upload
    return replace(local, files=sorted(local.files + kept, key=lambda f: f.path)), upload


def _differs(mine: FileDigest, theirs: FileDigest | None) -> bool:
    return theirs is None or (mine.size, mine.blake3) != (theirs.size, theirs.blake3)


def pull_files(remote: Entry, local: Entry | None) -> tuple[list[str], list[str]]:
    """What a pull of `remote` into a store holding `local` takes: (paths to download, paths
    of this store's files the remote copy replaces). attrs/ events are only ever added."""
    if local is None:
        return [f.path for f in remote.files], []
    mine = local.by_path()
    events = [f.path for f in remote.files if is_event(f.path) and f.path not in mine]
    if not later(remote, local):
        return events, []
    changed = [
        f.path for f in remote.files if not is_event(f.path) and _differs(f, mine.get(f.path))
    ]
    return events + changed, changed
