"""The names of the files inside a run folder, and of the index in the runs root.

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
INDEX = "index.db"
