"""The run manifest: `manifest.json` in the run folder, every file of it with its size, mtime
and blake3 digest, and the digest of run.lock; written atomically when a run ends and again
after later writes through tether (`open_run`).

Files of 1 MiB or more are hashed by the data hasher through its stat cache
(tether.capture.datahash), so an unchanged checkpoint is not read twice; smaller ones are read
at once (the same blake3 digest, cheaper than opening the cache). The records tether rewrites
as a run goes (state.json, output.log, metrics.jsonl, summary.json, attrs/, the marker) are
listed with size and mtime only: hashing them would cost every run's end and they change after
it anyway. Links are listed with their target and never followed.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import Any

from ..clock import now_iso
from ..fsio import atomic_write_json
from ..store.layout import ATTRS, LOCK, MANIFEST, MARKER, METRICS, OUTPUT, STATE, SUMMARY

ALGO = "blake3"  # the digest of tether.capture.datahash (its ALGO), which loads only for big files

MANIFEST_VERSION = 1
# Records listed without a digest (see the module docstring).
SMALL = 1 << 20  # files below this are hashed inline
UNHASHED = frozenset({STATE, OUTPUT, METRICS, SUMMARY, MARKER})


def _unhashed(rel: str) -> bool:
    return rel in UNHASHED or rel.startswith(ATTRS + "/")


def build_manifest(run_dir: Path, run_id: str) -> dict[str, Any]:
    files: list[dict[str, Any]] = []
    to_hash: list[tuple[dict[str, Any], str]] = []
    for folder, dirs, names in os.walk(run_dir):  # links to folders are not followed
        dirs.sort()
        for name in sorted(names + [d for d in dirs if os.path.islink(os.path.join(folder, d))]):
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
                    files.append({"path": rel, "link": os.readlink(path)})
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            entry: dict[str, Any] = {"path": rel, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
            files.append(entry)
            if not _unhashed(rel):
                to_hash.append((entry, path))
    _digest(to_hash)
    lock = next((f for f in files if f["path"] == LOCK), {})
    return {
        "version": MANIFEST_VERSION,
        "run": run_id,
        "written": now_iso(),
        "algo": ALGO,
        "lock": lock.get(ALGO),
        "files": files,
    }


def _digest(to_hash: list[tuple[dict[str, Any], str]]) -> None:
    import blake3  # banned at module level (TID253): only when a run ends

    big = []
    for entry, path in to_hash:
        if entry["size"] >= SMALL:
            big.append((entry, path))
            continue
        try:  # read at once: cheaper than opening the stat cache, and the same digest
            with open(path, "rb") as fh:
                entry[ALGO] = blake3.blake3(fh.read()).hexdigest()
        except OSError as exc:
            entry[ALGO], entry["error"] = None, f"cannot read ({exc.strerror})"
    to_hash = big
    if not to_hash:
        return
    # heavy (the stat cache on SQLite, worker threads): only a run with big files loads it
    from ..capture.datahash import HashError, hash_data  # noqa: PLC0415

    try:
        digests = hash_data([path for _, path in to_hash])
    except HashError:
        digests = []
    if len(digests) == len(to_hash):
        for (entry, _), digest in zip(to_hash, digests, strict=True):
            entry[ALGO] = digest.digest
        return
    for entry, path in to_hash:  # one file failed (changing, unreadable): the others still count
        try:
            entry[ALGO] = hash_data([path])[0].digest
        except HashError as exc:
            entry[ALGO], entry["error"] = None, exc.message


def write_manifest(run_dir: Path, run_id: str) -> None:
    """Write `<run_dir>/manifest.json`; a problem (a full disk) is the caller's to report."""
    atomic_write_json(Path(run_dir) / MANIFEST, build_manifest(Path(run_dir), run_id))
