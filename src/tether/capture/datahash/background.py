"""Hashing in the background: a detached process fills the `data` entries of run.lock.

`hash_data_background(run_dir, entries)` marks the entries `pending` and starts
`python -m tether.capture.datahash`, which sets each to `done` (digest, files, bytes) or
`failed` (the reason in `<run_dir>/datahash.log`), one locked update of run.lock each
(`tether.lock.update_lock`), so concurrent updates never lose each other.

`hash_manifest_background(run_dir)` does the same for the big files a run's manifest.json left
`pending` at the run's end (tether.session.manifest): one locked rewrite of the manifest.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import site
import subprocess
import sys
import time
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import TetherError
from ...lock import DataRecord, RunLock, read_lock, update_lock
from ...store.manifest import Manifest, fill, read_manifest, refresh_lock
from .hashing import hash_data
from .records import ALGO

if TYPE_CHECKING:
    import subprocess

LOG_NAME = "datahash.log"


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

    folder = Path(run_dir).resolve()
    items = list(entries)

    def mark_pending(lock: RunLock) -> list[dict[str, Any]]:
        targets: list[dict[str, Any]] = []
        for item in items:
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
        return targets

    targets = update_lock(folder, mark_pending)

    cwd = Path(base).resolve() if base is not None else Path.cwd()
    argv = ["--run-dir", str(folder), "--entries", json.dumps(targets)]
    if threads is not None:
        argv += ["--threads", str(threads)]
    if not cache:
        argv.append("--no-cache")
    return _spawn(folder, argv, cwd)


def hash_manifest_background(run_dir: str | os.PathLike[str]) -> subprocess.Popen[bytes]:
    """Hash the pending entries of the run's manifest.json in a detached process, which
    rewrites the manifest (atomically, under its lock) when it is done; `wait_for_manifest`
    waits on it. Killing the process leaves the entries pending, never a broken manifest."""
    folder = Path(run_dir).resolve()
    return _spawn(folder, ["--run-dir", str(folder), "--manifest"], folder)


def _spawn(folder: Path, args: list[str], cwd: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "tether.capture.datahash", *args]
    env = dict(os.environ)
    # The child imports this same tether, even when it was put on sys.path by hand (but a
    # site-packages folder never goes on PYTHONPATH, where it would shadow the stdlib).

    package_parent = str(Path(__file__).resolve().parents[3])
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
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        lock = read_lock(Path(run_dir))
        if not any(d.status == "pending" for d in lock.data):
            return lock
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"{run_dir}: data still pending after {timeout} s")
        time.sleep(poll)


def wait_for_manifest(
    run_dir: str | os.PathLike[str], timeout: float | None = None, poll: float = 0.1
) -> Manifest:
    """Wait until no entry of the run's manifest.json is pending; returns the manifest."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        manifest = read_manifest(Path(run_dir))
        if manifest is None:
            raise TetherError(f"{run_dir}: no manifest.json (written when the run ends)")
        if not manifest.pending:
            return manifest
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"{run_dir}: manifest entries still pending after {timeout} s")
        time.sleep(poll)


def _hash_manifest(folder: Path, threads: int | None, cache: bool) -> int:
    """The detached half of `hash_manifest_background`: hash each pending file, then fill the
    manifest in one locked rewrite."""
    manifest = read_manifest(folder)
    if manifest is None:
        return 0
    found: dict[str, tuple[int, int, str | None, str | None]] = {}
    failures = 0
    for entry in manifest.pending:
        path = folder / entry.path
        try:
            before = os.stat(path)
            (digest,) = hash_data([str(path)], threads=threads, cache=cache)
            after = os.stat(path)
        except (TetherError, OSError) as exc:
            failures += 1
            reason = exc.message if isinstance(exc, TetherError) else str(exc.strerror)
            found[entry.path] = (entry.size or 0, entry.mtime_ns or 0, None, reason)
            continue
        if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
            found[entry.path] = (after.st_size, after.st_mtime_ns, None, "changed while hashed")
            continue
        found[entry.path] = (after.st_size, after.st_mtime_ns, digest.digest, None)
    fill(folder, found)
    return 1 if failures else 0


def _update_entries(folder: Path, path: str, keys: list[str | None], **values: Any) -> None:
    def fill(lock: RunLock) -> None:
        for rec in lock.data:
            if rec.path == path and rec.key in keys and rec.status == "pending":
                for name, value in values.items():
                    setattr(rec, name, value)

    update_lock(folder, fill)


def main(argv: list[str] | None = None) -> int:
    """`python -m tether.capture.datahash --run-dir DIR --entries JSON`: the detached hasher."""

    parser = argparse.ArgumentParser(prog="python -m tether.capture.datahash")
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--entries", help="JSON list of {path, key}")
    parser.add_argument("--manifest", action="store_true", help="hash manifest.json's pending")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-cache", action="store_true")
    args = parser.parse_args(argv)
    folder = Path(args.run_dir)
    if args.manifest:
        code = _hash_manifest(folder, args.threads, not args.no_cache)
        _drop_empty_log(folder)
        return code
    keys: dict[str, list[str | None]] = {}
    for item in json.loads(args.entries or "[]"):
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
    # run.lock changed: a manifest written before it (the run ended first) records it anew
    with contextlib.suppress(TetherError, OSError):
        refresh_lock(folder)
    _drop_empty_log(folder)
    return 1 if failures else 0


def _drop_empty_log(folder: Path) -> None:
    with contextlib.suppress(OSError):
        log = folder / LOG_NAME
        if log.stat().st_size == 0:
            log.unlink()
