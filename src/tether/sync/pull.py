"""`tether pull REMOTE [RUNS]`: bring runs from a remote into this store and its repository.

A run this store lacks is downloaded into a staging folder inside the runs root, every file
verified by blake3 (and size) against the remote's entry, and only then renamed into place and
indexed (through the store's index, so the change journal has it): a run never shows half
pulled. A run this store has gains the attrs/ events it lacks (never replacing one), and when
the remote copy was updated later (a run still running elsewhere) the files that differ, each
verified, then moved over its old copy. A different run.lock under the same id is refused.

Snapshot commits: the bundles holding the pulled runs' commits are unbundled into the project's
repository oldest first (a thin bundle needs the ones before it), and
`refs/tether/snapshots/<run>` is pointed at each run's commit, for `tether reproduce` and
`tether checkout`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import TetherError
from ..store import Store
from ..store.layout import LOCK
from . import bundles
from .entries import BUNDLES, RUNS, Entry
from .merge import LockConflict, check_lock, pull_files
from .push import RunResult, blake3_file, describe
from .transport import Moved, Transport


@dataclass
class PullResult:
    runs: list[RunResult] = field(default_factory=list)
    moved: Moved = field(default_factory=Moved)
    refs: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> int:
        return sum(1 for r in self.runs if r.action in ("pulled", "updated", "would pull"))

    @property
    def failed(self) -> int:
        return sum(1 for r in self.runs if r.action == "failed")


def _verify(folder: Path, entry: Entry, paths: list[str]) -> str | None:
    """None when every path under `folder` matches the entry; else what does not."""
    files = entry.by_path()
    for rel in paths:
        want = files[rel]
        path = folder / rel
        try:
            size = os.path.getsize(path)
            digest = blake3_file(path)
        except OSError as exc:
            return f"{rel}: not downloaded ({exc.strerror})"
        if size != want.size or digest != want.blake3:
            return (
                f"{rel}: blake3 {digest[:12]} does not match the remote's entry "
                f"({want.blake3[:12]}); it changed on the remote while it was pulled: pull again"
            )
        with contextlib.suppress(OSError):
            os.utime(path, ns=(want.mtime_ns, want.mtime_ns))  # as pushed: later pushes read less
    return None


def _pull_new(store: Store, transport: Transport, entry: Entry, staging: Path) -> RunResult:
    name = str(entry.run_lock.get("name") or "")
    folder = staging / entry.run
    rels = [f.path for f in entry.files]
    moved = transport.download(f"{RUNS}/{entry.run}", rels, folder)
    problem = _verify(folder, entry, rels)
    if problem is None and not (folder / LOCK).is_file():
        problem = f"the remote copy has no {LOCK}"
    if problem is not None:
        return RunResult(entry.run, name, "failed", detail=problem)
    for rel, target in entry.links.items():
        link = folder / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            os.symlink(target, link)
    dest = store.root / entry.run
    if os.path.lexists(dest):
        return RunResult(entry.run, name, "failed", detail=f"{dest} appeared meanwhile")
    os.rename(folder, dest)
    store.index.upsert(store.load(entry.run), kind="created")
    return RunResult(entry.run, name, "pulled", moved.files, moved.bytes)


def _pull_into(
    store: Store, transport: Transport, entry: Entry, staging: Path, dry_run: bool
) -> RunResult:
    record = store.load(entry.run)
    local = describe(record, entry)
    try:
        check_lock(entry.run, local, entry, here="here", there="on the remote")
    except LockConflict as exc:
        return RunResult(entry.run, record.name, "failed", detail=str(exc))
    take, _replaced = pull_files(entry, local)
    if not take:
        return RunResult(entry.run, record.name, "unchanged")
    size = sum(entry.by_path()[p].size for p in take)
    if dry_run:
        return RunResult(entry.run, record.name, "would pull", len(take), size)
    folder = staging / entry.run
    moved = transport.download(f"{RUNS}/{entry.run}", take, folder)
    problem = _verify(folder, entry, take)
    if problem is not None:
        return RunResult(entry.run, record.name, "failed", detail=problem)
    target = Path(os.path.realpath(record.dir))
    store.index.intend(entry.run, "attrs")  # before the records change (the change journal)
    for rel in take:
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if rel.startswith("attrs/") and os.path.lexists(dest):
            continue  # an event is never replaced
        os.replace(folder / rel, dest)
    store.index.upsert(store.load(entry.run), kind="attrs", announced=True)
    return RunResult(entry.run, record.name, "updated", moved.files, moved.bytes)


def pull(
    store: Store,
    transport: Transport,
    entries: list[Entry],
    remote: dict[str, Entry],
    *,
    repo: Path | None,
    dry_run: bool = False,
    progress: Callable[[int, int, int, int], None] | None = None,
) -> PullResult:
    """Pull `entries` (of the remote's `remote`); snapshots into `repo` (None: not restored)."""
    result = PullResult()
    store.ensure_root()
    total = len(entries)
    # the bar's goal: the bytes of the runs this store lacks (an update is a few events)
    goal = sum(e.bytes for e in entries if not os.path.lexists(store.root / e.run)) or 1
    staging = Path(tempfile.mkdtemp(prefix=".pull-", dir=store.root))
    try:
        for n, entry in enumerate(entries, 1):
            try:
                if os.path.lexists(store.root / entry.run):
                    res = _pull_into(store, transport, entry, staging, dry_run)
                elif dry_run:
                    res = RunResult(
                        entry.run,
                        str(entry.run_lock.get("name") or ""),
                        "would pull",
                        len(entry.files),
                        entry.bytes,
                    )
                else:
                    res = _pull_new(store, transport, entry, staging)
            except TetherError as exc:
                res = RunResult(entry.run, "", "failed", detail=str(exc))
            result.runs.append(res)
            result.moved.files += res.files if res.action in ("pulled", "updated") else 0
            result.moved.bytes += res.bytes if res.action in ("pulled", "updated") else 0
            if progress is not None:
                progress(n, result.moved.bytes, total, goal)
        if not dry_run:
            pulled = [e for e in entries if e.snapshots and _has_run(store, e.run)]
            _snapshots(transport, pulled, remote, repo, staging, result)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result


def _has_run(store: Store, run_id: str) -> bool:
    return (store.root / run_id / LOCK).is_file()


def _snapshots(
    transport: Transport,
    pulled: list[Entry],
    remote: dict[str, Entry],
    repo: Path | None,
    scratch: Path,
    result: PullResult,
) -> None:
    if not pulled:
        return
    if repo is None:
        result.notes.append(
            f"snapshot commits of {len(pulled)} run(s) not restored: no git repository here "
            "(they stay on the remote; pull from inside the project)"
        )
        return
    wanted = {s.commit: s.bundle for e in pulled for s in e.snapshots}
    missing = set(wanted) - bundles.present(repo, wanted)
    if missing:
        tips: dict[str, set[str]] = {}
        for e in remote.values():
            for s in e.snapshots:
                tips.setdefault(s.bundle, set()).add(s.commit)
        last = max(wanted[c] for c in missing)
        folder = scratch / "_bundles"
        for name in sorted(b for b in tips if b <= last):
            if not (tips[name] - bundles.present(repo, tips[name])):
                continue
            local = folder / Path(name).name
            try:
                transport.download(BUNDLES, [Path(name).name], folder)
                need = bundles.prerequisites(local)
                if set(need) - bundles.present(repo, need):
                    continue  # an older bundle this pull does not need
                bundles.unbundle(repo, local)
            except TetherError as exc:
                result.notes.append(f"bundle {name} not unbundled: {exc}")
            finally:
                with contextlib.suppress(OSError):
                    local.unlink()
    have = bundles.present(repo, wanted)
    for e in pulled:
        for s in e.snapshots:
            if s.commit not in have:
                result.notes.append(f"run {e.run[:13]}: snapshot {s.commit[:12]} not restored")
            elif bundles.has_ref(repo, e.run) is None and bundles.set_ref(repo, e.run, s.commit):
                result.refs += 1
            break  # one ref per run: its first (top) source


def check(store: Store, remote: dict[str, Entry], run_ids: list[str]) -> dict[str, list[str]]:
    """`tether sync --check`: each run's files here re-hashed and compared with the remote's
    entry; {run: [difference, ...]} (empty lists: the same). Nothing moves."""
    out: dict[str, list[str]] = {}
    for run_id in run_ids:
        entry = remote.get(run_id)
        problems: list[str] = []
        if entry is None:
            out[run_id] = ["not on the remote"]
            continue
        if not _has_run(store, run_id):
            out[run_id] = ["not here"]
            continue
        record = store.load(run_id)
        local = describe(record, None, fresh=True)  # every file read and hashed again
        mine = local.by_path()
        for f in entry.files:
            here = mine.get(f.path)
            if here is None:
                problems.append(f"{f.path}: on the remote, not here")
            elif (here.size, here.blake3) != (f.size, f.blake3):
                problems.append(
                    f"{f.path}: blake3 here {here.blake3[:12]}, on the remote {f.blake3[:12]}"
                )
        theirs = entry.by_path()
        for path in sorted(set(mine) - set(theirs)):
            problems.append(f"{path}: here, not on the remote")
        out[run_id] = problems
    return out
