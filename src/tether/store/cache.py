"""The index of a runs root on a shared filesystem: a cache on this host's disk, kept current
from the runs root's change journal.

Where: `<local cache folder>/index/<name of the root>-<digest of its real path>.db` (the local
cache folder is `tether.mounts.local_cache_dir()`: `$TETHER_CACHE_DIR`, else
`$XDG_CACHE_HOME/tether`, else `~/.cache/tether`, or a folder in the temporary folder when that
one is on a network filesystem too). Each host has its own, so no SQLite file is written by two
hosts; processes of one host share theirs (SQLite on a local disk is safe for that).

How it stays current (`catch_up`, before every read): the cache remembers the journal's id and
the last entry it applied. Nothing new costs two look-ups in the journal; new entries name the
runs to read again from their folders (a run whose folder is gone leaves the cache). A cache
that never caught up, or remembers another journal (the runs root was remade), is rebuilt from
the folders once: the only time a listing reads every run folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from ..ids import fnv1a64
from ..mounts import local_cache_dir
from .index import Index
from .journal import Journal
from .records import RunRecord

CACHE_FOLDER = "index"

Loader = Callable[[str], RunRecord | None]  # a run as its folder is now; None: not listed


def cache_path(root: str | os.PathLike[str]) -> Path:
    """The local cache file of the index of runs root `root`."""
    real = os.path.realpath(root)
    digest = f"{fnv1a64(real.encode('utf-8', 'surrogateescape')):016x}"
    name = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(real))[:40] or "root"
    return local_cache_dir() / CACHE_FOLDER / f"{name}-{digest}.db"


def rebuild(
    index: Index,
    journal: Journal,
    records: Callable[[], Iterable[RunRecord]],
    *,
    heal: bool = False,
) -> int:
    """Rebuild the cache from the run folders; the number of runs. `heal`: the cache file is
    missing or damaged, so a new file is built and renamed into place (Index.rebuild_file).

    The journal's end is read before the folders: a change made during the scan is in the scan
    or in an entry after that end (applied at the next catch-up; applying twice is harmless).
    """
    ident = journal.ident()
    known = None if heal else index.position()
    end = journal.end(known[1] if known and known[0] == ident else 0) if ident else 0
    if heal:
        return index.rebuild_file(records(), position=(ident, end))
    return index.rebuild(records(), position=(ident, end))


def catch_up(
    index: Index, journal: Journal, load: Loader, records: Callable[[], Iterable[RunRecord]]
) -> int:
    """Bring the cache up to date: the number of runs read again (-1: rebuilt from folders)."""
    ident = journal.ident()
    known = index.position()
    if known is None or known[0] != ident:
        rebuild(index, journal, records)
        return -1
    if not journal.has_after(known[1]):
        return 0  # the ordinary case: one missing name, nothing to do
    with index.applying() as tx:
        position = tx.position() or known  # re-read: another process may have caught up
        if position[0] != ident:
            return 0  # the journal was reset meanwhile: the next read rebuilds
        entries, end = journal.read(position[1])
        runs = list(dict.fromkeys(entry.run for entry in entries))
        for run_id in runs:
            record = load(run_id)
            if record is None:
                tx.remove(run_id)
            else:
                tx.upsert(record)
        tx.set_position((ident, end))
    return len(runs)
