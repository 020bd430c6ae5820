"""Deleting runs: into the trash (`<runs root>/.trash/<id>`), back out of it, or for good.

A delete is one `os.rename` inside the runs root, so a run is either listed or in the trash, never
half of each. The trash folder's name is not a run id, so listing and reindexing never see it.
A run whose folder is an explicit `save_dir` elsewhere is a symlink in the root: that link is
what moves, and its folder stays where it is until the run is purged.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import git
from ..clock import iso_from_timestamp, now_iso
from ..errors import AmbiguousRun, RunNotFound, StoreError, TetherError
from ..fsio import atomic_write_json
from ..git import SNAPSHOT_REF, GitError
from ..ids import is_run_id
from ..lock import RunLock, read_lock
from .layout import LOCK, MANIFEST
from .manifest import read_manifest, strangers
from .orphans import Orphan
from .records import IndexRow, RunRecord
from .safety import inside, marker_of, protected
from .state import BUSY
from .store import Store

TRASH = ".trash"


@dataclass
class TrashEntry:
    """A run in the trash."""

    id: str
    path: Path  # .trash/<id>: the run folder, or a link to it
    name: str = "?"
    status: str = "unknown"
    created: str | None = None
    deleted: str | None = None
    deleted_by: str | None = None
    target: Path | None = None  # the folder a link points to (explicit save_dir)
    lock: RunLock | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "created": self.created,
            "deleted": self.deleted,
            "deleted_by": self.deleted_by,
            "path": str(self.path),
            "target": str(self.target) if self.target else None,
            "error": self.error,
        }


@dataclass
class PurgeResult:
    id: str
    removed: list[Path] = field(default_factory=list)
    refs: list[str] = field(default_factory=list)  # "<repo>: <ref>" deleted
    problems: list[str] = field(default_factory=list)
    left_alone: str | None = None  # a save_dir folder purge did not delete, and why


def trash_dir(store: Store) -> Path:
    return store.root / TRASH


# -- RUNS arguments ------------------------------------------------------------------------------
def resolve_many(store: Store, specs: Iterable[str]) -> list[IndexRow]:
    """Several RUN specs (each may be a comma-separated list) to index rows, without repeats."""
    rows: list[IndexRow] = []
    seen: set[str] = set()
    for spec in _split(specs):
        for row in store.resolve(spec):
            if row.id not in seen:
                seen.add(row.id)
                rows.append(row)
    return rows


def _split(specs: Iterable[str]) -> list[str]:
    out = [part.strip() for spec in specs for part in spec.split(",")]
    out = [part for part in out if part]
    if not out:
        raise RunNotFound("no runs given", "give indexes, slices, or id or name prefixes")
    return out


# -- delete --------------------------------------------------------------------------------------
def delete(store: Store, run_id: str, *, force: bool = False, author: str | None = None) -> Path:
    """Move a run into the trash and drop its index row. Refuses a live run unless `force`."""
    entry = store.root / run_id
    if not os.path.lexists(entry):
        raise RunNotFound(f"run {run_id} not found in {store.root}")
    record = store.load(run_id)
    status = record.status
    if status in BUSY and not force:
        raise TetherError(
            f"run {run_id[:13]} ({record.name}) is {status}",
            "stop it first, or pass --force to delete it anyway",
        )
    trash = trash_dir(store)
    trash.mkdir(exist_ok=True)
    dest = trash / run_id
    if os.path.lexists(dest):
        raise StoreError(
            f"run {run_id} is already in the trash ({dest})",
            "purge or restore that copy first",
        )
    meta = {
        "id": run_id,
        "name": record.name,
        "status": status,
        "created": record.lock.created,
        "deleted": now_iso(),
        "deleted_by": author,
        "target": str(record.dir) if entry.is_symlink() else None,
    }
    _write_meta(trash, run_id, meta)
    store.index.intend(run_id, "removed")  # before the move: a kill after it leaves no lag
    try:
        os.rename(entry, dest)
    except OSError as exc:
        with contextlib.suppress(OSError):
            (trash / f"{run_id}.json").unlink()
        raise StoreError(f"cannot move run {run_id} to the trash ({exc.strerror})")
    store.index.remove(run_id, announced=True)
    return dest


def _write_meta(trash: Path, run_id: str, meta: dict[str, Any]) -> None:

    atomic_write_json(trash / f"{run_id}.json", meta)


def consumers(store: Store, run_id: str) -> list[tuple[str, str]]:
    """Runs that consumed `run_id` as a stage: deleting it leaves their lineage with a gap."""
    return store.index.consumers(run_id)


# -- the trash -----------------------------------------------------------------------------------
def trashed(store: Store) -> list[TrashEntry]:
    """Every run in the trash, most recently deleted first."""
    trash = trash_dir(store)
    if not trash.is_dir():
        return []
    entries = [
        _entry(trash, e.name) for e in os.scandir(trash) if is_run_id(e.name) and not e.is_file()
    ]
    entries.sort(key=lambda e: (e.deleted or "", e.id), reverse=True)
    return entries


def _entry(trash: Path, run_id: str) -> TrashEntry:
    path = trash / run_id
    entry = TrashEntry(id=run_id, path=path)
    meta: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        meta = json.loads((trash / f"{run_id}.json").read_text(encoding="utf-8"))
    entry.deleted = meta.get("deleted")
    entry.deleted_by = meta.get("deleted_by")
    if entry.deleted is None:
        with contextlib.suppress(OSError):
            entry.deleted = iso_from_timestamp(path.lstat().st_ctime)
    folder = path
    if path.is_symlink():
        entry.target = Path(os.path.realpath(path))
        folder = entry.target
    try:
        lock = read_lock(folder)
        entry.lock = lock
        entry.name = lock.name
        entry.created = lock.created
    except StoreError as exc:
        entry.name = meta.get("name") or "?"
        entry.created = meta.get("created")
        entry.error = str(exc)
    entry.status = meta.get("status") or "unknown"
    return entry


def resolve_trashed(store: Store, specs: Iterable[str]) -> list[TrashEntry]:
    """Runs in the trash by id prefix (or exact name), without repeats."""
    entries = trashed(store)
    picked: list[TrashEntry] = []
    for spec in _split(specs):
        low = spec.lower()
        matches = [e for e in entries if e.id.startswith(low)]
        if not matches:
            matches = [e for e in entries if e.name == spec]
        if not matches:
            raise RunNotFound(
                f"no run in the trash matches {spec!r}", "see `tether restore --list`"
            )
        if len(matches) > 1:
            shown = ", ".join(f"{e.id[:13]} ({e.name})" for e in matches[:5])
            more = f" and {len(matches) - 5} more" if len(matches) > 5 else ""
            raise AmbiguousRun(
                f"{spec!r} matches {len(matches)} runs in the trash: {shown}{more}",
                "use a longer id prefix",
            )
        if matches[0] not in picked:
            picked.append(matches[0])
    return picked


def restore(store: Store, entry: TrashEntry) -> RunRecord:
    """Move a run back from the trash into the runs root and index it again."""
    dest = store.root / entry.id
    if os.path.lexists(dest):
        raise StoreError(
            f"run {entry.id} is already in {store.root}", "purge the copy in the trash instead"
        )
    if entry.target is not None and not (entry.target / LOCK).is_file():
        raise StoreError(
            f"run {entry.id[:13]}: its folder {entry.target} is gone",
            "purge it from the trash",
        )
    store.index.intend(entry.id, "created")  # before the move: a kill after it leaves no lag
    os.rename(entry.path, dest)
    with contextlib.suppress(OSError):
        (trash_dir(store) / f"{entry.id}.json").unlink()
    record = store.load(entry.id)
    store.index.upsert(record, announced=True)
    return record


# -- purge ---------------------------------------------------------------------------------------
def unlisted(entry: TrashEntry) -> tuple[Path | None, list[str]]:
    """(the run's folder, the files in it that purge must not delete silently).

    With a manifest (written when the run ended), those are the files it does not list and
    tether did not make: someone put them there afterwards. A folder without a manifest (a run
    killed before its end, or recorded by an older tether) has only its marker to go by, and
    gives none. A manifest that cannot be read gives itself: nothing proves what the folder
    held."""
    folder = entry.target if entry.path.is_symlink() else entry.path
    if folder is None or not folder.is_dir():
        return folder, []
    try:
        manifest = read_manifest(folder)
    except StoreError:
        return folder, [MANIFEST]
    if manifest is None:
        return folder, []
    return folder, strangers(folder, manifest)


def refuse_unlisted(store: Store, entry: TrashEntry) -> None:
    """Refuse, in one line naming the first file, to purge a run whose folder holds files it
    did not make (see `unlisted`). A save_dir folder purge leaves alone anyway is no matter."""
    if entry.path.is_symlink() and not _ours_target(entry, store):
        return
    folder, extra = unlisted(entry)
    if not extra:
        return
    more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
    what = "cannot be read" if extra == [MANIFEST] else "is not in the run's manifest.json"
    raise StoreError(
        f"run {entry.id[:13]}: {folder}/{extra[0]}{more} {what}: added after the run ended, "
        "so purge leaves it",
        "move it out of the run folder, or pass --force to delete it with the run",
    )


def purge(store: Store, entry: TrashEntry, *, force: bool = False) -> PurgeResult:
    """Delete a trashed run for good: its folder (an explicit save_dir too) and snapshot refs.

    A folder is deleted only when tether made it for this run (store/safety.py): it carries
    the run's marker, or, made before markers, it lies in the runs root named by the run id. A
    save_dir folder that is not provably tether's is left untouched: the run leaves the trash,
    and `left_alone` says why (the command then exits 2). Unless `force`, a folder holding a
    file its manifest does not list (and tether did not make) is refused before anything is
    deleted (`refuse_unlisted`)."""
    result = PurgeResult(entry.id)
    if not force:
        refuse_unlisted(store, entry)
    if entry.path.is_symlink():
        target = entry.target
        if target is not None and target.exists():
            why = _not_ours(target, entry.id, store)
            if why is None:
                _rmtree(target)
                result.removed.append(target)
            else:
                result.left_alone = f"run {entry.id[:13]}: {target} left alone ({why})"
    else:
        why = _not_ours(entry.path, entry.id, store)
        if why is not None:
            raise StoreError(
                f"run {entry.id[:13]}: {entry.path} not purged ({why})",
                "look inside and remove it by hand",
            )
    if entry.lock is not None:
        result.refs, result.problems = drop_snapshot_refs(entry.lock)
    if entry.path.is_symlink():
        entry.path.unlink()
    else:
        _rmtree(entry.path)
    result.removed.append(entry.path)
    with contextlib.suppress(OSError):
        (trash_dir(store) / f"{entry.id}.json").unlink()
    return result


def remove_orphan(orphan: Orphan) -> None:
    """Delete an orphan run folder (store/orphans.py) and the runs root's link to it, checked
    again first: a folder that gained a run.lock or lost its marker since is left alone."""
    if marker_of(orphan.folder) != orphan.id or os.path.lexists(orphan.folder / LOCK):
        return
    _rmtree(orphan.folder)
    if orphan.entry != orphan.folder:
        with contextlib.suppress(FileNotFoundError):
            orphan.entry.unlink()


def _ours_target(entry: TrashEntry, store: Store) -> bool:
    target = entry.target
    return target is not None and target.exists() and _not_ours(target, entry.id, store) is None


def _not_ours(folder: Path, run_id: str, store: Store) -> str | None:
    """Why `folder` is not one tether made for `run_id` (so purge must not delete it), or None."""
    reason = protected(folder, store.root)
    if reason is not None:
        return f"it is {reason}"
    marker = marker_of(folder)
    if marker == run_id:
        return None
    if marker is not None:
        return f"its marker names run {marker[:13]}"
    if inside(folder, store.root) and folder.name == run_id:
        return None  # a run folder made before markers, where tether makes them
    if not _holds_run(folder, run_id):
        return f"it no longer holds run {run_id[:13]}"
    return "it has no tether marker, so tether did not make it"


def _holds_run(folder: Path, run_id: str) -> bool:
    try:
        return read_lock(folder).id == run_id
    except StoreError:
        return False


def _rmtree(path: Path) -> None:
    def retry(func: Callable[..., Any], target: str, *_: Any) -> None:
        # A read-only file or folder (a copied dataset): make it writable and try again.
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(target), stat.S_IRWXU)
            os.chmod(target, stat.S_IRWXU)
        func(target)

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=retry)
    else:
        shutil.rmtree(path, onerror=retry)


def drop_snapshot_refs(lock: RunLock) -> tuple[list[str], list[str]]:
    """Delete refs/tether/snapshots/<id> in each repository the run recorded.

    Returns (deleted, problems): a repository that is gone or has no such ref is no problem.
    """
    deleted: list[str] = []
    problems: list[str] = []
    ref = SNAPSHOT_REF + lock.id
    roots: list[str] = []
    for src in lock.sources:
        if src.commit and src.root and src.root not in roots:
            roots.append(src.root)
    for root in roots:
        if not Path(root).is_dir():
            continue
        try:
            if git.run(root, "show-ref", "--verify", "--quiet", ref, check=False).returncode:
                continue
            proc = git.run(root, "update-ref", "-d", ref, check=False)
        except GitError as exc:
            problems.append(f"{root}: git failed ({exc.message})")
            continue
        if proc.returncode == 0:
            deleted.append(f"{root}: {ref}")
        else:
            problems.append(f"{root}: cannot delete {ref} ({proc.stderr.strip()})")
    return deleted, problems
