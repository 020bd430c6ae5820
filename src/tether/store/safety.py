"""tether deletes only what it made: the run-folder marker, and the checks on `save_dir`.

Every run folder gets a marker at creation (`.tether-run`: the run id on its first line, then
the creating process as JSON: pid, host, process start, so a folder left by a killed creator is
known as such, store/orphans.py). Purge deletes a
folder only when it carries the marker of that run. A folder made before markers existed counts
as tether's only when it lies inside the runs root (its trash included) and is named by the run
id, as tether's own folders are; anywhere else an unmarked folder is left alone.

`save_dir` must name a new or empty folder, or one tether made for the same run (a restart in
its folder); never the file-system root, the home folder, a project root, the runs root or a
folder above it, nor a folder holding anything else.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import StoreError
from ..fsio import atomic_write_text
from ..lock import read_lock
from ..workspace import PROJECT_FILES
from .layout import LOCK, MARKER
from .state import hostname, proc_start_time


def write_marker(folder: Path, run_id: str) -> None:
    pid = os.getpid()
    creator = {"pid": pid, "host": hostname(), "proc_start": proc_start_time(pid)}
    atomic_write_text(folder / MARKER, f"{run_id}\n{json.dumps(creator)}\n", durable=False)


def _marker_lines(folder: Path) -> list[str]:
    try:
        with open(folder / MARKER, encoding="utf-8") as fh:
            return fh.read(1000).splitlines()
    except (OSError, ValueError):
        return []


def marker_of(folder: Path) -> str | None:
    """The run id the folder's marker names, or None without a (readable) marker."""
    lines = _marker_lines(folder)
    return (lines[0].strip() or None) if lines else None


def marker_creator(folder: Path) -> dict[str, Any]:
    """The process that made the folder, as its marker records it ({} for a marker written
    before creators were recorded)."""
    lines = _marker_lines(folder)
    try:
        creator = json.loads(lines[1]) if len(lines) > 1 else {}
    except ValueError:
        return {}
    return creator if isinstance(creator, dict) else {}


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def protected(folder: Path, runs_root: Path) -> str | None:
    """Why `folder` must never be a run folder (nor be deleted), or None."""
    real = _real(folder)
    if real == Path(real.anchor):
        return "the file-system root"
    if real == _real(Path.home()):
        return "the home folder"
    root = _real(runs_root)
    if real == root:
        return "the runs root"
    if real in root.parents:
        return f"a parent of the runs root {runs_root}"
    # A folder tether made (its marker) may hold a project file among the sources an operation
    # staged into it: that makes it no project root.
    if marker_of(real) is None and (
        (real / ".git").exists() or any((real / name).is_file() for name in PROJECT_FILES)
    ):
        return "a project root"
    return None


def inside(folder: Path, runs_root: Path) -> bool:
    """Whether `folder` (resolved) lies strictly inside the runs root."""
    return _real(runs_root) in _real(folder).parents


def check_save_dir(folder: Path, runs_root: Path, run_id: str) -> None:
    """Refuse, in one line naming save_dir, a folder tether must not write a run into."""
    hint = "give save_dir a new or empty folder, or leave it out (tether makes one)"
    reason = protected(folder, runs_root)
    if reason is None and os.path.lexists(folder):
        if not folder.is_dir():
            reason = "not a folder"
        elif marker_of(folder) == run_id:
            return  # the same run, continued in its folder
        elif (folder / LOCK).exists():
            try:
                other = read_lock(folder).id
            except StoreError:
                other = "?"
            raise StoreError(
                f"save_dir {folder} already holds run {other}",
                "choose another save_dir (or delete that run first)",
            )
        else:
            try:
                names = sorted(os.listdir(folder))
            except OSError as exc:
                raise StoreError(f"save_dir {folder} cannot be read ({exc.strerror})", hint)
            if names:
                reason = f"not empty (it holds {len(names)} entries, e.g. {names[0]!r})"
    if reason is not None:
        raise StoreError(f"save_dir {folder} is refused: it is {reason}", hint)
