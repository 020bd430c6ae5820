"""Building the run manifest (`manifest.json`, format in tether.store.manifest) and checking a
run folder against it.

`write_manifest` runs when a run ends and after later writes through tether (`open_run`). It
lists every file of the run folder with size and mtime, and hashes what it can at once:
- files below SMALL are read and hashed inline (the same blake3 digest, cheaper than opening
  the stat cache);
- bigger files go through the data hasher and its stat cache (tether.capture.datahash): a file
  the cache knows unchanged is not read at all;
- while the big files the cache does not know add up to at most INLINE_BYTES they are hashed
  now; beyond that they are left `pending` and a detached process hashes them (as data hashing
  does), rewriting the manifest when it is done, so the run's end never waits on a checkpoint.
A rewrite keeps the digests of entries whose size and mtime did not change.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..clock import now_iso
from ..errors import TetherError
from ..store.manifest import (
    FileEntry,
    Manifest,
    lock_digests,
    locked,
    read_manifest,
    scan,
    tether_made,
    transient,
    write_manifest_file,
)

SMALL = 1 << 20  # files below this are read and hashed inline
INLINE_BYTES = 64 << 20  # unknown big files hashed at the run's end, in all; the rest later


def build_manifest(run_dir: Path, run_id: str, previous: Manifest | None = None) -> Manifest:
    """The manifest of the folder as it is now (pending entries left for the background)."""
    files = scan(run_dir)
    old = previous.by_path() if previous is not None else {}
    todo: list[FileEntry] = []
    for entry in files:
        if not entry.hashed or entry.link is not None:
            continue
        before = old.get(entry.path)
        if before is not None and before.same_stat(entry) and before.digest is not None:
            entry.digest = before.digest  # unchanged since the last manifest
        else:
            todo.append(entry)
    _digest(run_dir, todo)
    manifest = Manifest(run=run_id, files=files, written=now_iso())
    manifest.lock, manifest.lock_digest = lock_digests(run_dir)
    return manifest


def _digest(run_dir: Path, todo: list[FileEntry]) -> None:
    import blake3  # banned at module level (TID253): only when a run ends

    big: list[FileEntry] = []
    for entry in todo:
        if (entry.size or 0) >= SMALL:
            big.append(entry)
            continue
        try:  # read at once: cheaper than opening the stat cache, and the same digest
            with open(run_dir / entry.path, "rb") as fh:
                entry.digest = blake3.blake3(fh.read()).hexdigest()
        except OSError as exc:
            entry.error = f"cannot read ({exc.strerror})"
    if not big:
        return
    # heavy (the stat cache on SQLite, worker threads): only a run with big files loads it
    from ..capture.datahash import HashError, hash_data  # noqa: PLC0415
    from ..capture.datahash.known import known_digests  # noqa: PLC0415

    known = known_digests([str(run_dir / e.path) for e in big])
    now: list[FileEntry] = []
    budget = INLINE_BYTES
    for entry in sorted(big, key=lambda e: e.size or 0):  # the small ones first: most of them
        digest = known.get(str(run_dir / entry.path))
        if digest is not None:
            entry.digest = digest
        elif (entry.size or 0) <= budget:
            budget -= entry.size or 0
            now.append(entry)
        else:
            entry.pending = True
    for entry in now:  # one at a time: one changing file must not cost the others their digest
        try:
            entry.digest = hash_data([str(run_dir / entry.path)])[0].digest
        except HashError as exc:
            entry.error = exc.message


def write_manifest(run_dir: Path, run_id: str) -> Manifest:
    """Write `<run_dir>/manifest.json`, and start the background hash of its pending entries.
    A problem (a full disk) is the caller's to report."""
    folder = Path(run_dir)
    with locked(folder):
        try:
            previous = read_manifest(folder)
        except TetherError:
            previous = None  # damaged: listed anew
        manifest = build_manifest(folder, run_id, previous)
        write_manifest_file(folder, manifest)
    if manifest.pending:
        # heavy: the hasher's process start-up, only for a run with big new files
        from ..capture.datahash.background import hash_manifest_background  # noqa: PLC0415

        hash_manifest_background(folder)
    return manifest


# -- checking a folder against its manifest -----------------------------------------------------
@dataclass
class Drift:
    """One way a run folder differs from its manifest."""

    kind: str  # modified, missing, extra, pending, unhashed
    path: str
    detail: str

    def line(self) -> str:
        return f"{self.path}: {self.detail}"


def compare(run_dir: Path, manifest: Manifest, *, cache: bool = True) -> list[Drift]:
    """What changed in the folder since its manifest: listed files modified or missing, files
    added that tether did not make, and notes for entries without a digest. Contents are
    re-hashed through the data hasher (its stat cache unless `cache=False`)."""
    folder = Path(run_dir)
    now = {f.path: f for f in scan(folder)}
    out: list[Drift] = []
    to_hash: list[tuple[FileEntry, FileEntry]] = []
    for entry in manifest.files:
        current = now.get(entry.path)
        if current is None:
            if not transient(entry.path):
                out.append(Drift("missing", entry.path, "missing"))
            continue
        if entry.link is not None or current.link is not None:
            if entry.link != current.link:
                was = f"a link to {entry.link}" if entry.link is not None else "a file"
                now_is = f"a link to {current.link}" if current.link is not None else "a file"
                out.append(Drift("modified", entry.path, f"was {was}, now {now_is}"))
            continue
        if not entry.hashed:
            continue  # a record tether rewrites after the run's end
        if entry.pending:
            if not entry.same_stat(current):
                out.append(Drift("modified", entry.path, _sizes(entry, current)))
            else:
                out.append(
                    Drift("pending", entry.path, "digest still pending (hashed in the background)")
                )
            continue
        if entry.digest is None:
            out.append(Drift("unhashed", entry.path, f"no digest recorded ({entry.error})"))
            continue
        to_hash.append((entry, current))
    out.extend(_rehash(folder, to_hash, cache))
    for path, current in now.items():
        if path not in manifest.by_path() and not tether_made(path):
            kind = f"a link to {current.link}" if current.link is not None else "a file"
            out.append(Drift("extra", path, f"not in the manifest ({kind} added since)"))
    out.sort(key=lambda d: d.path)
    return out


def _sizes(entry: FileEntry, current: FileEntry) -> str:
    if entry.size != current.size:
        return f"modified (size {entry.size} -> {current.size})"
    return "modified (mtime changed)"


def _rehash(folder: Path, pairs: list[tuple[FileEntry, FileEntry]], cache: bool) -> list[Drift]:
    if not pairs:
        return []
    # heavy (blake3, the stat cache): only when a run is checked
    from ..capture.datahash import HashError, hash_data  # noqa: PLC0415

    out: list[Drift] = []
    paths = [os.fspath(folder / e.path) for e, _ in pairs]
    try:
        digests = [d.digest for d in hash_data(paths, cache=cache)]
    except HashError:
        digests = []
        for path in paths:  # which one: hash one by one
            try:
                digests.append(hash_data([path], cache=cache)[0].digest)
            except HashError as exc:
                digests.append(f"!{exc.message}")
    for (entry, current), digest in zip(pairs, digests, strict=True):
        if digest.startswith("!"):
            out.append(Drift("modified", entry.path, f"cannot be read ({digest[1:]})"))
        elif digest != entry.digest:
            detail = (
                _sizes(entry, current)
                if entry.size != current.size
                else f"modified (blake3 {entry.digest[:12]} -> {digest[:12]})"  # type: ignore[index]
            )
            out.append(Drift("modified", entry.path, detail))
    return out
