"""What the stat cache already knows: digests of files unchanged since they were hashed,
found without reading a byte of them (the run manifest asks before choosing what to hash now)."""

from __future__ import annotations

import os
from collections.abc import Iterable

from .cache import HashCache


def known_digests(paths: Iterable[str]) -> dict[str, str]:
    """{path: blake3 hex} for the regular files among `paths` whose (device, inode, size,
    mtime_ns) match the stat cache; the others are left out. Never raises: a file that cannot
    be looked at, or a cache that is off, is simply not known."""
    wanted: dict[tuple[int, int], list[tuple[str, str, os.stat_result]]] = {}
    for path in paths:
        try:
            st = os.stat(path)
            parent = os.stat(os.path.dirname(path) or ".")
        except OSError:
            continue
        wanted.setdefault((parent.st_dev, parent.st_ino), []).append(
            (path, os.path.basename(path), st)
        )
    if not wanted:
        return {}
    found: dict[str, str] = {}
    with HashCache() as db:
        rows = db.lookup(wanted)
    for key, files in wanted.items():
        records = rows.get(key) or {}
        for path, name, st in files:
            rec = records.get(name)
            if rec is not None and rec[:4] == (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns):
                found[path] = rec[4].hex()
    return found
