"""The change journal of a runs root: which runs changed, in order, safe with many hosts writing.

On a shared filesystem (see tether.mounts) no host writes another's SQLite, so each keeps its
own index cache and learns what others did from this journal. Every run creation, state write,
label/tag/note, removal (and, at most every COALESCE_S, a live metrics update) appends one entry:
`<runs root>/.journal/<shard>/<seq>`, a symbolic link whose target is the entry's text
`<run id> <kind> <host> <time>`. Entries are numbered 1, 2, 3, ... with no gaps:

- A writer creates the name of the next number with `create_small` (symlink(2): one request,
  the text arrives with the name, EEXIST when another writer took that number first, then it
  tries the next). Appending to one file would not do: O_APPEND is not atomic across NFS
  clients. A writer only ever creates number n after seeing n-1 exist, so there are no gaps.
- A reader remembers the last number it applied (in its cache) and reads n+1, n+2, ... until a
  name is missing: an ordinary look with nothing new costs two small requests (the id, then
  one missing name), however many runs and entries there are. Catching up reloads only the
  runs the new entries name.
- `.journal/id` names this journal; a reader whose cache remembers another id (the runs root
  was wiped and remade, the journal reset) rebuilds from the run folders.

Shards of SHARD entries keep folders small. Entries are idempotent ("run X changed: read its
folder again"), so a duplicate (an NFS retry) is harmless. The journal grows by a few entries per
run (around 100 bytes each) and is never compacted by tether itself.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..clock import now_iso
from ..ids import new_id
from ..mounts import create_small, read_small
from .layout import JOURNAL
from .state import hostname

SHARD = 10_000
ID_FILE = "id"
COALESCE_S = {"summary": 30.0}  # kinds written at most this often per run and process
INCOMPLETE_GRACE_S = 60.0  # a half-written entry (the no-symlink fallback) older than this: skip

# Process-wide: the newest entry number seen per journal (a hint, checked before use), the
# journals this process made sure exist, and when each coalesced kind was last written per run.
_known_end: dict[str, int] = {}
_ready: set[str] = set()
_last_written: dict[tuple[str, str, str], float] = {}


@dataclass(frozen=True)
class Entry:
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

    def path(self, seq: int) -> Path:
        return self.dir / f"{seq // SHARD:06d}" / f"{seq:010d}"

    def _exists(self, seq: int) -> bool:
        return seq <= 0 or os.path.lexists(self.path(seq))

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
    def append(self, run_id: str, kind: str, hint: int = 0) -> int | None:
        """Add an entry saying run `run_id` changed; its number (None: coalesced away).
        `hint`: an entry number known to exist (a cache's position), to find the end sooner."""
        every = COALESCE_S.get(kind)
        if every is not None:
            key = (self._key, run_id, kind)
            now = time.monotonic()
            if now - _last_written.get(key, -every) < every:
                return None
            _last_written[key] = now
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
        return seq

    # -- reading ----------------------------------------------------------------------------
    def end(self, hint: int = 0) -> int:
        """The number of the newest entry (0: none). `hint`: a number believed to exist.

        Entries 1..end all exist, so a doubling probe from the hint and a bisection find the
        end in 2*log2(distance) look-ups.
        """
        lo = hint if hint > 0 and self._exists(hint) else 0
        step, hi = 1, lo + 1
        while self._exists(hi):
            lo, step = hi, step * 2
            hi = lo + step
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self._exists(mid):
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


def _abandoned(path: Path) -> bool:
    try:
        return time.time() - os.lstat(path).st_mtime > INCOMPLETE_GRACE_S
    except FileNotFoundError:
        return False
