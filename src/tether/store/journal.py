"""The change journal of a runs root: which runs changed, in order, safe with many hosts writing.

Every writer of a run's records (creation, state, label/tag/note, removal, live metrics) first
appends an entry naming the run, then writes the records, then updates the index. A reader
(store/cache.py, before every listing) applies the entries after the last one its index applied
by reading just those run folders again, so a writer killed anywhere after its entry (between
its records and the index, or before it reached the index at all) leaves no lag: the next read
fixes the run from its folder. The same journal serves a local disk (one index, `index.db` in
the runs root) and a shared filesystem (see tether.mounts), where no host writes another's
SQLite and each keeps its own index cache.

An entry is `<runs root>/.journal/<shard>/<seq>`, a symbolic link whose target is the entry's
text `<run id> <kind> <host> <time>`. Entries are numbered with no gaps:

- A writer creates the name of the next number with `create_small` (symlink(2): one request,
  the text arrives with the name, EEXIST when another writer took that number first, then it
  tries the next). Appending to one file would not do: O_APPEND is not atomic across NFS
  clients. A writer only ever creates number n after seeing n-1 exist, so there are no gaps.
- A reader remembers the last number it applied (in its index) and reads n+1, n+2, ... until a
  name is missing: an ordinary look with nothing new costs three small requests (the id, one
  missing name, and the name it applied last, which tells a compacted journal), however many
  runs and entries there are.
- `.journal/id` names this journal; a reader whose index remembers another id (the runs root
  was wiped and remade, the journal reset) rebuilds from the run folders.

Shards of SHARD entries keep folders small and bound the journal: once an index has applied
every entry of a shard and KEEP_SHARDS newer shards exist, that shard is compacted (renamed
away in one step, then removed). An index that fell behind the oldest shard kept (a host that
did not list for a long time, on a shared filesystem) finds the name it applied last gone and
rebuilds from the folders once. Entries are idempotent ("run X changed: read its folder
again"), so a duplicate (an NFS retry) is harmless.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import NamedTuple

from ..clock import now_iso
from ..ids import new_id
from ..mounts import create_small, read_small
from .layout import JOURNAL
from .state import hostname

SHARD = 10_000
KEEP_SHARDS = 2  # full shards kept behind the one an index applied last (other hosts' caches)
ID_FILE = "id"
_TRASH = ".compacted-"  # a shard renamed away, being removed
COALESCE_S = {"summary": 30.0}  # kinds written at most this often per run and process
INCOMPLETE_GRACE_S = 60.0  # a half-written entry (the no-symlink fallback) older than this: skip

# Process-wide: the newest entry number seen per journal (a hint, checked before use), the
# journals this process made sure exist, and when each coalesced kind was last written per run.
_known_end: dict[str, int] = {}
_ready: set[str] = set()
_last_written: dict[tuple[str, str, str], tuple[float, int]] = {}


# A NamedTuple, not a frozen dataclass: made at a tenth of the cost on every import (start-up).
class Entry(NamedTuple):
    """One line of the change journal: run `run`'s records of `kind` changed (or are about to)."""

    seq: int
    run: str
    kind: str  # created, state, attrs, summary, removed, update, ...
    host: str
    time: str


class Journal:
    """The journal of one runs root (`<root>/.journal`)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.dir = Path(root) / JOURNAL
        self._key = str(self.dir)

    def shard(self, seq: int) -> int:
        return seq // SHARD

    def path(self, seq: int) -> Path:
        return self.dir / f"{seq // SHARD:06d}" / f"{seq:010d}"

    def exists(self, seq: int) -> bool:
        """Whether entry `seq` is there (0, "nothing applied yet", always is)."""
        return seq <= 0 or os.path.lexists(self.path(seq))

    def first(self) -> int:
        """The number of the oldest entry kept (1 until a shard was compacted): one listing of
        the journal folder, only where no known entry can start the search."""
        try:
            shards = [int(n) for n in os.listdir(self.dir) if len(n) == 6 and n.isdigit()]
        except FileNotFoundError:
            return 1
        return max(1, min(shards) * SHARD) if shards else 1

    # -- identity ---------------------------------------------------------------------------
    def ident(self) -> str | None:
        """This journal's id; None when no entry was ever written."""
        text = read_small(self.dir / ID_FILE)
        return text.strip() if text else None

    def ensure(self) -> str:
        """Make the journal (folder and id) if it is not there yet; its id."""
        self.dir.mkdir(exist_ok=True)
        create_small(self.dir / ID_FILE, new_id())
        _ready.add(self._key)
        ident = self.ident()
        assert ident is not None
        return ident

    # -- writing ----------------------------------------------------------------------------
    def append(
        self, run_id: str, kind: str, hint: int = 0, applied: int | None = None
    ) -> int | None:
        """Add an entry saying run `run_id` changed (or is about to); its number (None:
        coalesced away). `hint`: an entry number known to exist (an index's position), to find
        the end sooner. `applied`: the entry this host's index applied last; a coalesced kind
        is skipped only while this process's previous entry of it for the run is newer (still
        to be applied here: that read will see this change too) and under COALESCE_S old (the
        bound for other hosts, which may have applied it already)."""
        every = COALESCE_S.get(kind)
        key = (self._key, run_id, kind)
        now = time.monotonic()
        if every is not None:
            last, last_seq = _last_written.get(key, (-every, 0))
            if now - last < every and (applied is None or last_seq > applied):
                return None
        if self._key not in _ready:
            self.ensure()
        text = f"{run_id} {kind} {hostname()} {now_iso()}"
        seq = self.end(max(hint, _known_end.get(self._key, 0))) + 1
        while True:
            target = self.path(seq)
            try:
                if create_small(target, text):
                    break
            except FileNotFoundError:  # the first entry of a shard: make its folder
                target.parent.mkdir(parents=True, exist_ok=True)
                continue
            seq += 1  # another writer took this number: the next one
        _known_end[self._key] = seq
        if every is not None:
            _last_written[key] = (now, seq)
        return seq

    # -- reading ----------------------------------------------------------------------------
    def end(self, hint: int = 0) -> int:
        """The number of the newest entry (0: none). `hint`: a number believed to exist.

        Entries first()..end all exist, so a doubling probe from the hint and a bisection find the
        end in 2*log2(distance) look-ups.
        """
        lo = hint if hint > 0 and self.exists(hint) else self.first() - 1
        step, hi = 1, lo + 1
        while self.exists(hi):
            lo, step = hi, step * 2
            hi = lo + step
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.exists(mid):
                lo = mid
            else:
                hi = mid
        if lo > _known_end.get(self._key, 0):
            _known_end[self._key] = lo
        return lo

    def has_after(self, seq: int) -> bool:
        return os.path.lexists(self.path(seq + 1))

    def read(self, after: int, limit: int | None = None) -> tuple[list[Entry], int]:
        """The entries after number `after`, in order, and the number of the last one read."""
        out: list[Entry] = []
        seq = after
        while limit is None or len(out) < limit:
            path = self.path(seq + 1)
            text = read_small(path)
            if text is None:
                break
            fields = text.split()
            if len(fields) != 4 or not fields[3].endswith("Z"):
                if not _abandoned(path):
                    break  # the no-symlink fallback, being written: wait for it
                seq += 1  # a writer died half-way through: nothing to learn from it
                continue
            seq += 1
            out.append(Entry(seq, *fields))
        if seq > _known_end.get(self._key, 0):
            _known_end[self._key] = seq
        return out, seq

    # -- compaction -------------------------------------------------------------------------
    def compact(self, applied: int) -> int:
        """Remove the shards every entry of which an index has applied (`applied`: the entry
        it applied last) and behind which KEEP_SHARDS full shards are kept; how many. A shard is
        renamed away first (one step: a reader finds all of it or none), then removed."""
        keep_from = applied // SHARD - KEEP_SHARDS
        if keep_from <= 0:
            return 0
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return 0
        done = 0
        for name in sorted(names):
            if name.startswith(_TRASH):  # a removal killed midway: finish it
                _remove_shard(self.dir / name)
            elif len(name) == 6 and name.isdigit() and int(name) < keep_from:
                trash = self.dir / f"{_TRASH}{name}-{os.getpid()}"
                try:
                    os.rename(self.dir / name, trash)
                except FileNotFoundError:
                    continue  # another process compacts it
                _remove_shard(trash)
                done += 1
        return done


def _abandoned(path: Path) -> bool:
    try:
        return time.time() - os.lstat(path).st_mtime > INCOMPLETE_GRACE_S
    except FileNotFoundError:
        return False


def _remove_shard(folder: Path) -> None:
    """Remove a renamed-away shard: a flat folder of entry links (none followed). Done by hand
    rather than with shutil.rmtree because importing shutil (it loads zlib, bz2 and lzma) costs
    every `tether runs` more than compacting does; what cannot be removed now is left for the
    next compaction, which finishes it."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        with contextlib.suppress(OSError):
            os.unlink(entry.path)
    with contextlib.suppress(OSError):
        os.rmdir(folder)
