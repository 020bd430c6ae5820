"""A run made by `tether reproduce`: the re-run repeats the recorded run's inputs and layout.

`tether reproduce` starts the recorded command in a temporary git worktree of the snapshot,
with `TETHER_REPRODUCE` naming a small JSON file (`Replay`): the recorded run's id, name and
folder, the worktree, and where the repository was when the run was recorded. The variable is
taken out of this process's environment when first read, so the commands the re-run starts
(an operation's exec) do not see it. The first run this process makes with the recorded run's
name and no parent is the reproduction (`claim`, from session.prepare):

- `reproduces` in its run.lock names the recorded run;
- paths inside the worktree (the source root and path, the working folder, the command's
  arguments) are recorded as the recorded run had them, so the new run reads as made in the
  project: `tether diff` finds its repository, and it can be reproduced in turn;
- upstream stages and data that the recorded run had and the re-run did not find (a
  `${stage:...}` or `${track:...}` of a config that was recorded resolved) are added: the same
  upstream run, the same path hashed again; a stage found by name takes the recorded upstream
  run, not a later one. Both lists keep the recorded order, so equal inputs give an equal lock
  digest.

An operation's dependencies use the recorded run's upstream runs (`pinned`, read by
ops.staging) instead of the latest ones, so runs made since (other reproductions among them)
change nothing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..capture.lineage import stage_record
from ..capture.tracking import hash_entries
from ..errors import TetherError
from ..fsio import atomic_write_json
from ..lock import DataRecord, RunLock, read_lock
from ..store import Store

REPRODUCE_ENV = "TETHER_REPRODUCE"


@dataclass
class Replay:
    """A `tether reproduce` re-run in progress: the recorded run and the checkout it runs in."""

    run: str  # the recorded run's id
    name: str
    dir: str  # its folder
    worktree: str | None = None  # the temporary checkout the re-run works in
    root: str | None = None  # the repository's top when the run was recorded
    claimed: bool = field(default=False, compare=False)
    _lock: RunLock | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "name": self.name,
            "dir": self.dir,
            "worktree": self.worktree,
            "root": self.root,
        }

    @property
    def lock(self) -> RunLock:
        if self._lock is None:
            self._lock = read_lock(Path(self.dir))
        return self._lock

    def original_path(self, text: str) -> str:
        """A path inside the worktree as it was in the recorded repository; others as given."""
        if not self.worktree or not self.root:
            return text
        path = os.path.normpath(text)
        if not os.path.isabs(path):
            return text
        rel = os.path.relpath(path, self.worktree)
        if rel == os.pardir or rel.startswith(os.pardir + os.sep):
            return text
        return os.path.normpath(os.path.join(self.root, rel))

    # -- what an operation's dependencies take ------------------------------------------------
    def stage_run(self, stage: str) -> str | None:
        """The upstream run the recorded run had as `stage`."""
        return next((s.run for s in self.lock.stages if s.name == stage), None)

    def summary_runs(self, file: str) -> list[str] | None:
        """The runs a `runs-summary` file of the recorded run listed, in its order (None when
        the recorded run has no such file)."""
        try:
            with open(Path(self.dir) / file, encoding="utf-8") as fh:
                raw = json.load(fh)
        except (OSError, ValueError):
            return None
        if not isinstance(raw, list):
            return None
        return [str(r["id"]) for r in raw if isinstance(r, dict) and r.get("id")]


def write_replay(path: Path, replay: Replay) -> None:
    atomic_write_json(path, replay.to_dict(), durable=False)


_state: dict[str, Replay] = {}


def active() -> Replay | None:
    """The reproduction this process makes, from `TETHER_REPRODUCE` (read once, then removed
    from the environment); None outside `tether reproduce`."""
    path = os.environ.pop(REPRODUCE_ENV, "")
    if path:
        replay = _read(path)
        if replay is not None:
            _state["replay"] = replay
    return _state.get("replay")


def _read(path: str) -> Replay | None:
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
        return Replay(
            run=str(raw["run"]),
            name=str(raw["name"]),
            dir=str(raw["dir"]),
            worktree=raw.get("worktree"),
            root=raw.get("root"),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TetherError(f"{REPRODUCE_ENV}={path}: not a reproduction file ({exc})")


def pinned(name: str) -> Replay | None:
    """The reproduction, while the run named `name` it is for has not been made yet."""
    replay = active()
    if replay is None or replay.claimed or replay.name != name:
        return None
    return replay


def claim(store: Store, lock: RunLock, folders: dict[str, Path]) -> None:
    """Make `lock` (a run about to be created) the reproduction, when it is the one."""
    replay = pinned(lock.name)
    if replay is None or lock.parent is not None:
        return
    replay.claimed = True
    original = replay.lock
    lock.reproduces = original.id
    for src in lock.sources:
        if src.root:
            src.root = replay.original_path(src.root)
        if os.path.isabs(src.path):
            src.path = replay.original_path(src.path)
    if lock.env.get("cwd"):
        lock.env["cwd"] = replay.original_path(str(lock.env["cwd"]))
    lock.command = [lock.command[0], *(replay.original_path(a) for a in lock.command[1:])]
    _add_stages(store, lock, original, folders)
    _add_data(lock, original)


def _add_stages(store: Store, lock: RunLock, original: RunLock, folders: dict[str, Path]) -> None:
    """The recorded run's upstream runs, by stage name: added where the re-run found none,
    and in place of a later one (a stage found by name, `stages={"prep": None}`, is the
    latest completed run of that name, which may have been made since)."""
    have = {s.name: s.run for s in lock.stages}
    for st in original.stages:
        if have.get(st.name) == st.run:
            continue
        try:
            upstream = store.load(st.run)
        except TetherError:
            raise TetherError(
                f"upstream run {st.run[:13]} (stage {st.name}) of run {original.id[:13]} is gone",
                "a reproduction needs the upstream runs the recorded run consumed",
            )
        lock.stages = [s for s in lock.stages if s.name != st.name]
        lock.stages.append(stage_record(st.name, upstream))
        folders[st.name] = upstream.dir
    order = {s.name: i for i, s in enumerate(original.stages)}
    lock.stages.sort(key=lambda s: order.get(s.name, len(order)))


def _add_data(lock: RunLock, original: RunLock) -> None:
    have = {d.path for d in lock.data}
    added = []
    for entry in original.data:
        if entry.path in have:
            continue
        if not os.path.exists(entry.path):
            raise TetherError(
                f"data path {entry.path} of run {original.id[:13]} is missing here",
                f"looked in {Path(entry.path).absolute().parent}",
            )
        added.append(DataRecord(path=entry.path, key=entry.key))
    hash_entries(added)
    lock.data += added
    order = {d.path: i for i, d in enumerate(original.data)}
    lock.data.sort(key=lambda d: order.get(d.path, len(order)))
