"""The names of the files inside a run folder, and of the index and journal in the runs root.

Where the runs root is (and the project around it) is `tether.workspace`'s job.
"""

from __future__ import annotations

from ..lock import LOCK_FILE

LOCK = LOCK_FILE  # run.lock: its name is owned by tether.lock, which reads and writes it
STATE = "state.json"
ATTRS = "attrs"
OUTPUT = "output.log"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
INDEX = "index.db"  # in the runs root; on a shared filesystem a local cache (store/cache.py)
JOURNAL = ".journal"  # the change journal of the runs root (store/journal.py)
RANKS = "ranks"  # ranks/<rank>/: what one rank of a multi-process run writes (store.ranks)
RANK_RECORD = "rank.json"  # ranks/<rank>/rank.json
MANIFEST = "manifest.json"  # every file of the run folder (session/manifest.py)
MARKER = ".tether-run"  # names the run whose folder tether made (store/safety.py)
