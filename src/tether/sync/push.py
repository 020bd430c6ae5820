"""`tether push REMOTE [RUNS]`: copy runs to a remote, their files first and their entry last.

For each run, the files of its folder are compared with the remote's entry for it by size and
mtime (the remote's manifest, not its files): a file whose size and mtime match what the entry
recorded is not read, hashed or moved, so a second push of unchanged runs moves no bytes. The
rest is hashed (reusing the run manifest's digests where they still hold) and copied. A run that
is still running is copied from a snapshot of its growing files (taken, then hashed, then
uploaded), so the entry always describes the bytes on the remote; it can be pushed again and
again. Then the snapshot commits go as thin git bundles, then the entries, last: the remote
lists a run only once its entry is there, so a killed push shows no half run, and the next
push finds the files already copied (a copied file is never copied twice).

Merging with what the remote holds (merge.py): attrs/ events the remote has and this store
lacks stay listed (union); a remote copy updated later than this one (a run still running
elsewhere) keeps its files, only this store's new events go; a different run.lock of the same
run is refused, both digests named.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..clock import now_iso
from ..errors import TetherError
from ..ids import new_id
from ..store import RunRecord, Store
from ..store.layout import MANIFEST
from ..store.manifest import lock_digests, read_manifest, scan, transient
from ..store.state import BUSY, hostname
from . import bundles
from .entries import BUNDLES, INDEX, RUNS, SUFFIX, TOP, Entry, FileDigest, Snapshot
from .merge import LockConflict, check_lock, merge_for_push
from .transport import Moved, Progress, Transport

CHUNK_RUNS = 500  # runs whose files, bundles and entries go in one round
CHUNK_BYTES = 2 << 30


@dataclass
class RunPlan:
    record: RunRecord
    entry: Entry  # what the remote will list
    upload: list[str] = field(default_factory=list)  # paths relative to the run folder
    staged: Path | None = None  # where `upload` is read from, when not the run folder
    commits: list[bundles.RunCommit] = field(default_factory=list)  # not on the remote yet
    action: str = "push"  # push | unchanged | failed
    detail: str = ""

    @property
    def bytes(self) -> int:
        sizes = self.entry.by_path()
        return sum(sizes[p].size for p in self.upload if p in sizes)


@dataclass
class RunResult:
    id: str
    name: str
    action: str  # pushed | unchanged | failed | would push
    files: int = 0
    bytes: int = 0
    detail: str = ""


@dataclass
class PushResult:
    runs: list[RunResult] = field(default_factory=list)
    moved: Moved = field(default_factory=Moved)
    bundles: list[str] = field(default_factory=list)

    @property
    def changed(self) -> int:
        return sum(1 for r in self.runs if r.action in ("pushed", "would push"))

    @property
    def failed(self) -> int:
        return sum(1 for r in self.runs if r.action == "failed")


def blake3_file(path: Path) -> str:
    import blake3  # banned at module level (TID253): only when a file is hashed

    h = blake3.blake3()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def read_remote(transport: Transport) -> dict[str, Entry]:
    from .entries import parse_entries  # noqa: PLC0415 (kept beside its format)

    return parse_entries(transport.read_texts(INDEX, SUFFIX))


def describe(
    record: RunRecord, known: Entry | None, stage: Path | None = None, *, fresh: bool = False
) -> Entry:
    """The entry of a run folder as it is now. Files whose size and mtime match `known` (the
    remote's entry) or the run manifest keep those digests, unread; the rest are hashed. With
    `stage`, the files that are hashed are copied there first and the copies hashed (a
    running run's growing files: the entry then describes the bytes that will be sent);
    `fresh`: every file is read and hashed again (`tether sync --check`)."""
    from ..store.attrs import read_attributes  # noqa: PLC0415 (not needed to plan listings)
    from ..store.manifest import FileEntry  # noqa: PLC0415

    folder = Path(os.path.realpath(record.dir))
    lock, identity = lock_digests(folder)
    local = Entry(
        run=record.id,
        lock=lock,
        lock_digest=identity,
        state=record.state.to_dict(),
        summary=record.summary,
        run_lock=record.lock.to_dict(),
        pushed=now_iso(),
        pushed_from=hostname(),
    )
    attrs = read_attributes(folder)
    local.attrs = {"label": attrs.label, "tags": attrs.tags, "notes": attrs.notes}
    by_path = known.by_path() if known is not None else {}
    try:
        manifest = read_manifest(folder)
    except TetherError:
        manifest = None
    from_manifest = manifest.by_path() if manifest is not None else {}
    entries = [e for e in scan(folder) if not transient(e.path)]
    with contextlib.suppress(OSError):
        st = os.stat(folder / MANIFEST)
        entries.append(FileEntry(MANIFEST, st.st_size, st.st_mtime_ns))
    for entry in entries:
        if entry.link is not None:
            local.links[entry.path] = entry.link
            continue
        size, mtime = int(entry.size or 0), int(entry.mtime_ns or 0)
        before = by_path.get(entry.path)
        if before is not None and (before.size, before.mtime_ns) == (size, mtime):
            local.files.append(before)  # pushed before, unchanged since: not read again
            continue
        m = from_manifest.get(entry.path)
        if (
            m is not None
            and m.digest
            and (m.size, m.mtime_ns) == (size, mtime)
            and stage is None
            and not fresh
        ):
            local.files.append(FileDigest(entry.path, size, mtime, m.digest))
            continue
        source = folder / entry.path
        try:
            if stage is not None:
                target = stage / entry.path
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
                st = os.stat(target)
                size, mtime, source = st.st_size, st.st_mtime_ns, target
            local.files.append(FileDigest(entry.path, size, mtime, blake3_file(source)))
        except OSError as exc:
            if entry.path == MANIFEST or not source.exists():
                continue  # gone since the listing (a record rewritten atomically)
            raise TetherError(f"run {record.id}: {entry.path}: cannot read ({exc.strerror})")
    return local


def plan_run(record: RunRecord, prev: Entry | None, scratch: Path) -> RunPlan:
    """What pushing `record` moves, given the remote's entry `prev` for it."""
    busy = record.state.status in BUSY
    stage = scratch / record.id if busy else None
    try:
        local = describe(record, prev, stage)
    except TetherError as exc:
        return RunPlan(record, Entry(record.id, None, None), action="failed", detail=str(exc))
    plan = RunPlan(record, local, staged=stage if stage is not None and stage.exists() else None)
    try:
        check_lock(record.id, local, prev, here="here", there="on the remote")
    except LockConflict as exc:
        plan.action, plan.detail = "failed", str(exc)
        return plan
    merged, upload = merge_for_push(local, prev)
    plan.entry = merged
    plan.upload = upload
    plan.commits = bundles.run_commits(record.id, record.lock)
    return plan


def plan_push(records: list[RunRecord], remote: dict[str, Entry], scratch: Path) -> list[RunPlan]:
    plans = []
    on_remote = {s.commit: s.bundle for e in remote.values() for s in e.snapshots}
    for record in records:
        plan = plan_run(record, remote.get(record.id), scratch)
        if plan.action != "failed":
            snaps = []
            todo = []
            for rc in plan.commits:
                if rc.commit in on_remote:
                    snaps.append(Snapshot(rc.commit, on_remote[rc.commit], rc.source))
                else:
                    todo.append(rc)
            plan.entry.snapshots = snaps
            plan.commits = todo
            if not plan.upload and not todo and plan.entry.same_content(remote.get(record.id)):
                plan.action = "unchanged"
        plans.append(plan)
    return plans


def apply_push(
    plans: list[RunPlan],
    transport: Transport,
    remote: dict[str, Entry],
    scratch: Path,
    root: Path,
    progress: Progress | None = None,
) -> PushResult:
    result = PushResult()
    todo = [p for p in plans if p.action == "push"]
    for p in plans:
        if p.action != "push":
            result.runs.append(RunResult(p.record.id, p.record.name, p.action, detail=p.detail))
    if todo and not remote:
        _write_top(transport, scratch)
    on_remote = {s.commit: s.bundle for e in remote.values() for s in e.snapshots}
    done = Moved()

    def report(files: int, nbytes: int) -> None:
        if progress is not None:
            progress(done.files + files, done.bytes + nbytes)

    for chunk in _chunks(todo):
        moved = _upload_files(chunk, transport, root, report)
        done.add(moved)
        result.moved.add(moved)
        result.bundles += _upload_bundles(chunk, transport, scratch, on_remote)
        entries = scratch / "_entries"
        entries.mkdir(exist_ok=True)
        names = []
        for p in chunk:
            name = p.record.id + SUFFIX
            (entries / name).write_text(p.entry.to_line(), encoding="utf-8")
            names.append(name)
        transport.upload(entries, names, INDEX)  # last: the runs become visible
        for name in names:
            (entries / name).unlink()
        for p in chunk:
            result.runs.append(
                RunResult(p.record.id, p.record.name, "pushed", len(p.upload), p.bytes)
            )
    return result


def _chunks(plans: list[RunPlan]) -> list[list[RunPlan]]:
    out: list[list[RunPlan]] = []
    current: list[RunPlan] = []
    size = 0
    for p in plans:
        current.append(p)
        size += p.bytes
        if len(current) >= CHUNK_RUNS or size >= CHUNK_BYTES:
            out.append(current)
            current, size = [], 0
    if current:
        out.append(current)
    return out


def _upload_files(
    chunk: list[RunPlan], transport: Transport, root: Path, progress: Progress
) -> Moved:
    moved = Moved()
    together: list[str] = []  # runs whose folder is <root>/<id>: one transfer for them all
    for p in chunk:
        if not p.upload:
            continue
        folder = Path(p.record.dir)
        if p.staged is None and folder.parent == root and not folder.is_symlink():
            together += [f"{p.record.id}/{rel}" for rel in p.upload]
            continue
        base = p.staged if p.staged is not None else Path(os.path.realpath(folder))
        part = transport.upload(base, p.upload, f"{RUNS}/{p.record.id}", _after(moved, progress))
        moved.add(part)
    if together:
        base_files, base_bytes = moved.files, moved.bytes
        part = transport.upload(
            root, together, RUNS, lambda f, b: progress(base_files + f, base_bytes + b)
        )
        moved.add(part)
    return moved


def _after(moved: Moved, progress: Progress) -> Progress:
    """A progress callback that counts on from what `moved` holds now."""
    files, nbytes = moved.files, moved.bytes

    def report(f: int, b: int) -> None:
        progress(files + f, nbytes + b)

    return report


def _upload_bundles(
    chunk: list[RunPlan], transport: Transport, scratch: Path, on_remote: dict[str, str]
) -> list[str]:
    by_repo: dict[Path, list[tuple[RunPlan, bundles.RunCommit]]] = {}
    for p in chunk:
        for rc in p.commits:
            by_repo.setdefault(rc.repo, []).append((p, rc))
    made: list[str] = []
    folder = scratch / "_bundles"
    folder.mkdir(exist_ok=True)
    for repo, items in by_repo.items():
        fresh = [(p, rc) for p, rc in items if rc.commit not in on_remote]
        name = f"{new_id()}.bundle"
        path = folder / name
        refs = sorted({bundles.SNAPSHOT_REF + rc.run for _, rc in fresh})
        if fresh and bundles.make_bundle(repo, refs, list(on_remote), path):
            transport.upload(folder, [name], BUNDLES)
            path.unlink()
            made.append(f"{BUNDLES}/{name}")
            for _, rc in fresh:
                on_remote.setdefault(rc.commit, f"{BUNDLES}/{name}")
        for p, rc in items:
            bundle = on_remote.get(rc.commit)
            if bundle is not None:
                p.entry.snapshots.append(Snapshot(rc.commit, bundle, rc.source))
    return made


def _write_top(transport: Transport, scratch: Path) -> None:
    import json  # noqa: PLC0415

    from .entries import FORMAT, VERSION  # noqa: PLC0415

    (scratch / TOP).write_text(json.dumps({"format": FORMAT, "version": VERSION}) + "\n")
    transport.upload(scratch, [TOP], "")


def _listing(folder: str, prefix: str = "") -> list[tuple[str, int, int, str | None]]:
    """(path, size, mtime_ns, link target) of every file and link under `folder`: the stat
    listing `unchanged` compares (manifest.scan's listing, without its per-file relpath, which
    a push of 10k unchanged runs cannot afford)."""
    out: list[tuple[str, int, int, str | None]] = []
    try:
        with os.scandir(folder) as it:
            entries = list(it)
    except OSError:
        return out
    for e in entries:
        rel = prefix + e.name
        try:
            if e.is_symlink():
                out.append((rel, 0, 0, os.readlink(e.path)))
            elif e.is_dir(follow_symlinks=False):
                out += _listing(e.path, rel + "/")
            elif e.is_file(follow_symlinks=False):
                st = e.stat(follow_symlinks=False)
                out.append((rel, st.st_size, st.st_mtime_ns, None))
        except OSError:
            continue
    return out


def unchanged(folder: Path, prev: Entry) -> bool:
    """Whether the run folder is as the remote's entry recorded it: the same files with the
    same sizes and mtimes (the remote may hold more attrs/ events: another store's). Nothing is
    read but the folder's listing: the fast path of a push of unchanged runs."""
    from .merge import is_event  # noqa: PLC0415

    known = prev.by_path()
    seen: set[str] = set()
    links = 0
    for path, size, mtime, link in _listing(os.fspath(folder)):
        if transient(path):
            continue
        if link is not None:
            if prev.links.get(path) != link:
                return False
            links += 1
            continue
        f = known.get(path)
        if f is None or (f.size, f.mtime_ns) != (size, mtime):
            return False
        seen.add(path)
    gone = [p for p in known if p not in seen and not is_event(p)]  # events: another store's
    return not gone and links == len(prev.links)


def push(
    store: Store,
    transport: Transport,
    rows: list[Any],
    *,
    dry_run: bool = False,
    progress: Callable[[int, int, int, int], None] | None = None,
) -> PushResult:
    """Push the runs of `rows` (index rows: id and name); `progress(files, bytes, total
    files, total bytes)`. A run whose folder is as the remote's entry says is not even read."""
    remote = read_remote(transport)
    skipped: list[RunResult] = []
    records: list[RunRecord] = []
    for row in rows:
        prev = remote.get(row.id)
        folder = store.root / row.id
        if folder.is_symlink():
            folder = Path(os.path.realpath(folder))
        if prev is not None and unchanged(folder, prev):
            skipped.append(RunResult(row.id, row.name, "unchanged"))
        else:
            records.append(store.load(row.id))
    with tempfile.TemporaryDirectory(prefix="tether-push-") as tmp:
        scratch = Path(tmp)
        plans = plan_push(records, remote, scratch)
        if dry_run:
            out = PushResult(runs=list(skipped))
            for p in plans:
                action = "would push" if p.action == "push" else p.action
                out.runs.append(
                    RunResult(p.record.id, p.record.name, action, len(p.upload), p.bytes, p.detail)
                )
            return out
        total_files = sum(len(p.upload) for p in plans if p.action == "push")
        total_bytes = sum(p.bytes for p in plans if p.action == "push")
        bar = (
            (lambda f, b: progress(f, b, total_files, total_bytes))
            if progress is not None
            else None
        )
        result = apply_push(plans, transport, remote, scratch, store.root, bar)
        result.runs = skipped + result.runs
        return result
