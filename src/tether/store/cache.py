"""Keeping an index current from the runs root's change journal (store/journal.py), and where
the index of a shared runs root lives.

On a local disk the index is `<runs root>/index.db`. On a shared filesystem it is a cache on
this host's disk: `<local cache folder>/index/<name of the root>-<digest of its real path>.db`
(the local cache folder is `tether.mounts.local_cache_dir()`: `$TETHER_CACHE_DIR`, else
`$XDG_CACHE_HOME/tether`, else `~/.cache/tether`, or a folder in the temporary folder when that
one is on a network filesystem too). Each host has its own, so no SQLite file is written by two
hosts; processes of one host share theirs (SQLite on a local disk is safe for that).

How it stays current (`catch_up`, before every read, on either kind of disk): the index
remembers the journal's id and the last entry it applied. Nothing new costs three look-ups in
the journal; new entries name the runs to read again from their folders (a run whose folder is
gone leaves the index). Writers add their entry before they change a run's records, so a
writer killed between its records and the index leaves an entry that the next read applies.
An index that remembers another journal (the runs root was remade) or fell behind the oldest
shard kept is rebuilt from the folders once: the only time a listing reads every run folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..ids import fnv1a64
from ..mounts import local_cache_dir
from .applying import Position
from .index import Index
from .journal import Journal
from .records import Attributes, RunRecord
from .state import RunState

CACHE_FOLDER = "index"

Loader = Callable[[str], RunRecord | None]  # a run as its folder is now; None: not listed
# A run's state, attributes and summary as its folder has them now (run.lock not read); None:
# not listed.
PartLoader = Callable[[str], tuple[RunState, Attributes, dict[str, Any]] | None]
# What entries of these kinds say changed leaves run.lock alone: a run already in the index is
# updated from state.json, summary.json and attrs/ only (run.lock, YAML, is most of a read).
LOCK_UNCHANGED = frozenset({"state", "summary", "attrs"})


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


class _Behind(Exception):
    """The index cannot catch up entry by entry (another journal, or it fell behind the oldest
    shard kept): rebuild it from the folders."""


def catch_up(
    index: Index,
    journal: Journal,
    load: Loader,
    records: Callable[[], Iterable[RunRecord]],
    load_part: PartLoader | None = None,
) -> int:
    """Bring the index up to date: the number of runs read again (-1: rebuilt from folders).

    The ordinary case, nothing new, costs three look-ups in the journal and one row of the
    index, and reads no run folder. An index that never applied an entry (new, or written by a
    tether before the journal on a local disk, in step with its records) starts at the first
    entry while the journal still holds it.
    """
    ident = journal.ident()
    known = index.position() or _START
    if known[0] != ident and not _adoptable(known, journal):
        rebuild(index, journal, records)
        return -1
    start = known[1] if known[0] == ident else 0
    if not journal.has_after(start):
        if journal.exists(start):
            return 0  # the ordinary case: nothing new
        rebuild(index, journal, records)  # compacted past what this index applied
        return -1
    try:
        with index.applying() as tx:
            # Re-read under the write lock: another process may have caught up meanwhile.
            position = tx.position() or _START
            if position[0] != ident and not _adoptable(position, journal):
                raise _Behind
            start = position[1] if position[0] == ident else 0
            if not (journal.exists(start) or journal.exists(start + 1)):
                raise _Behind  # entries after `start` were compacted away
            entries, end = journal.read(start)
            if end > start and not journal.exists(end):
                raise _Behind  # compacted while being read: what was read may be partial
            kinds: dict[str, set[str]] = {}
            for entry in entries:
                kinds.setdefault(entry.run, set()).add(entry.kind)
            runs = list(kinds)
            for run_id, changed in kinds.items():
                if load_part is not None and changed <= LOCK_UNCHANGED and tx.has(run_id):
                    part = load_part(run_id)
                    if part is not None:
                        tx.update_records(run_id, *part)
                        continue
                record = load(run_id)
                if record is None:
                    tx.remove(run_id)
                else:
                    tx.upsert(record)
            tx.set_position((ident, end))
    except _Behind:
        rebuild(index, journal, records)
        return -1
    if journal.shard(end) != journal.shard(start):
        journal.compact(end)  # a shard boundary passed: older shards may go
    return len(runs)


_START: Position = (None, 0)


def _adoptable(position: Position, journal: Journal) -> bool:
    """An index that names no journal may apply this one from its first entry, if kept."""
    return position[0] is None and journal.first() <= 1
