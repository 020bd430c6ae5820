"""The downsampled series of finished metrics files, kept on this host's own cache disk
(`tether.mounts.local_cache_dir()/view-series/`), so a compare page opened after the server
restarted does not parse every metrics.jsonl again. Nothing is written into a run folder.

An entry is named by a digest of what makes the answer: the file's path, size, mtime and inode,
the keys asked, the first row and the point budget; a file that changed has another name. A
file modified in the last LIVE_S seconds is not cached (a running run's file changes on every
look). The folder is held to MAX_ENTRIES files, the oldest removed first.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..fsio import atomic_write_bytes
from ..mounts import local_cache_dir

FOLDER = "view-series"
LIVE_S = 30.0
MAX_ENTRIES = 4000
PRUNE_EVERY = 200  # writes between two looks at the folder's size

_writes = 0


def _name(parts: tuple[Any, ...]) -> str:
    return hashlib.sha1(repr(parts).encode(), usedforsecurity=False).hexdigest() + ".json"


def cached(
    path: Path, info: os.stat_result, parts: tuple[Any, ...], make: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """`make()`'s answer for the metrics file `path` (stat `info`), from the cache when it was
    made before for the same file and `parts`."""
    if time.time() - info.st_mtime < LIVE_S:
        return make()
    folder = local_cache_dir() / FOLDER
    entry = folder / _name((str(path), info.st_size, info.st_mtime_ns, info.st_ino, *parts))
    try:
        found: dict[str, Any] = json.loads(entry.read_bytes())
        return found
    except (OSError, ValueError):
        pass
    answer = make()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(entry, json.dumps(answer).encode(), durable=False)
        _prune(folder)
    except OSError:
        pass  # a cache that cannot be written costs a parse next time, nothing more
    return answer


def _prune(folder: Path) -> None:
    global _writes
    _writes += 1
    if _writes % PRUNE_EVERY:
        return
    entries = []
    for item in os.scandir(folder):
        if item.name.endswith(".json"):
            try:
                entries.append((item.stat().st_mtime, item.path))
            except OSError:
                continue
    entries.sort()
    for _, stale in entries[: max(0, len(entries) - MAX_ENTRIES)]:
        try:
            os.unlink(stale)
        except OSError:
            continue
