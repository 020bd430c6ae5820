"""Run folders left by a killed creator: a marker, no run.lock, and nobody alive to write one.

`Store.create` writes the marker and then run.lock at once, so a folder in the runs root named
by a run id whose marker names that id, with no run.lock, older than `fsio.ORPHAN_AGE` (the
rule of the orphan temp files of atomic writes) and whose creator (pid, host, process start,
as the marker records them) is not alive on this host, was left by a creator killed in between.
A creator on another host is judged by age alone. `tether check` lists these folders and
`tether purge --orphans` removes them; the marker proves tether made them, and a folder without
one (a source copy made before the marker, a user's) is never touched.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..fsio import ORPHAN_AGE
from ..ids import is_run_id
from .layout import LOCK, MARKER
from .safety import marker_creator, marker_of, protected
from .state import hostname, pid_alive


@dataclass
class Orphan:
    id: str
    entry: Path  # <runs root>/<id>: the folder, or the link to a save_dir folder
    folder: Path  # the folder itself
    age_s: float
    creator: str  # "pid 123 on host" as the marker records it, or "unknown"

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "path": str(self.entry),
            "folder": str(self.folder),
            "age_s": round(self.age_s),
            "creator": self.creator,
        }


def find_orphans(root: Path, *, now: float | None = None) -> list[Orphan]:
    """The orphan run folders of a runs root (see the module docstring), oldest first."""
    now = time.time() if now is None else now
    found: list[Orphan] = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return found
    for entry in entries:
        if not is_run_id(entry.name):
            continue
        orphan = _orphan(root, Path(entry.path), now)
        if orphan is not None:
            found.append(orphan)
    found.sort(key=lambda o: -o.age_s)
    return found


def _orphan(root: Path, entry: Path, now: float) -> Orphan | None:
    folder = Path(os.path.realpath(entry)) if entry.is_symlink() else entry
    if os.path.lexists(folder / LOCK) or not folder.is_dir():
        return None
    if marker_of(folder) != entry.name or protected(folder, root) is not None:
        return None
    try:
        age = now - os.lstat(folder / MARKER).st_mtime
    except OSError:
        return None
    if age < ORPHAN_AGE:
        return None  # a creator may be between the marker and run.lock still
    creator = marker_creator(folder)
    pid, host = creator.get("pid"), creator.get("host")
    if isinstance(pid, int) and host == hostname():
        start = creator.get("proc_start")
        if pid_alive(pid, start if isinstance(start, int) else None):
            return None  # alive and silent for ten minutes: not ours to judge
    who = f"pid {pid} on {host}" if isinstance(pid, int) else "unknown"
    return Orphan(entry.name, entry, folder, age, who)
