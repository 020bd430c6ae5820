"""The layout of a remote and its per-run entries (the remote's manifests).

```
<remote>/tether-remote.json   what this folder is (written by the first push)
<remote>/runs/<id>/...        each run folder as it is
<remote>/index/<id>.json      the run's entry: one line of JSON, written after its files
<remote>/bundles/<n>.bundle   git bundles of snapshot commits (thin: see bundles.py)
```

An entry lists every file of the run as pushed (path, size, mtime, blake3), its links, the
digests of run.lock (`lock`: its bytes; `lock_digest`: the run's identity), its state, summary,
attributes and run.lock (so the remote can be listed and queried without downloading runs),
and the snapshot commits with the bundle holding each. A run is on the remote when, and only
when, its entry is: the entry is written last, so a killed push never shows a half run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..lock import RunLock
from ..store.records import Attributes, RunRecord
from ..store.state import RunState

FORMAT = "tether-remote"
VERSION = 1
TOP = "tether-remote.json"
RUNS = "runs"
INDEX = "index"
BUNDLES = "bundles"
SUFFIX = ".json"


@dataclass
class FileDigest:
    path: str
    size: int
    mtime_ns: int
    blake3: str

    def key(self) -> tuple[str, int, str]:
        return (self.path, self.size, self.blake3)


@dataclass
class Snapshot:
    commit: str
    bundle: str  # remote path of the bundle holding the commit
    source: str = "."  # the SourceRecord path of run.lock


@dataclass
class Entry:
    run: str
    lock: str | None
    lock_digest: str | None
    files: list[FileDigest] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)
    snapshots: list[Snapshot] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    run_lock: dict[str, Any] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)  # label, tags, notes as pushed
    pushed: str | None = None
    pushed_from: str | None = None
    version: int = VERSION

    def by_path(self) -> dict[str, FileDigest]:
        return {f.path: f for f in self.files}

    @property
    def status(self) -> str:
        return str(self.state.get("status") or "unknown")

    @property
    def updated(self) -> str:
        return str(self.state.get("updated") or "")

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.files)

    def same_content(self, other: Entry | None) -> bool:
        if other is None:
            return False
        mine = sorted(f.key() for f in self.files)
        theirs = sorted(f.key() for f in other.files)
        commits = sorted(s.commit for s in self.snapshots)
        return (
            mine == theirs
            and self.links == other.links
            and commits == sorted(s.commit for s in other.snapshots)
        )

    def to_line(self) -> str:
        raw = {
            "format": FORMAT,
            "version": self.version,
            "run": self.run,
            "lock": self.lock,
            "lock_digest": self.lock_digest,
            "pushed": self.pushed,
            "pushed_from": self.pushed_from,
            "state": self.state,
            "summary": self.summary,
            "run_lock": self.run_lock,
            "attrs": self.attrs,
            "files": [[f.path, f.size, f.mtime_ns, f.blake3] for f in self.files],
            "links": self.links,
            "snapshots": [vars(s) for s in self.snapshots],
        }
        return json.dumps(raw, separators=(",", ":"), sort_keys=True) + "\n"

    @classmethod
    def from_line(cls, line: str) -> Entry | None:
        """An entry, None for anything that is not a whole one (a torn write)."""
        try:
            raw = json.loads(line)
            if not isinstance(raw, dict) or raw.get("format") != FORMAT:
                return None
            if int(raw.get("version", 0)) > VERSION:
                return None
            return cls(
                run=str(raw["run"]),
                lock=raw.get("lock"),
                lock_digest=raw.get("lock_digest"),
                files=[FileDigest(str(p), int(s), int(m), str(d)) for p, s, m, d in raw["files"]],
                links={str(k): str(v) for k, v in (raw.get("links") or {}).items()},
                snapshots=[
                    Snapshot(str(s["commit"]), str(s["bundle"]), str(s.get("source", ".")))
                    for s in raw.get("snapshots") or []
                ],
                state=dict(raw.get("state") or {}),
                summary=dict(raw.get("summary") or {}),
                run_lock=dict(raw.get("run_lock") or {}),
                attrs=dict(raw.get("attrs") or {}),
                pushed=raw.get("pushed"),
                pushed_from=raw.get("pushed_from"),
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return None

    def record(self) -> RunRecord:
        """The run as the remote holds it, for listing and --where (no folder here)."""
        from pathlib import Path  # noqa: PLC0415 (only to name the remote folder)

        lock = (
            RunLock.from_dict(self.run_lock)
            if self.run_lock
            else RunLock(id=self.run, name="", created="")
        )
        attrs = Attributes(
            label=self.attrs.get("label"),
            tags=list(self.attrs.get("tags") or []),
            notes=list(self.attrs.get("notes") or []),
        )
        return RunRecord(
            self.run,
            Path(RUNS) / self.run,
            lock,
            RunState.from_dict(self.state),
            attrs,
            self.summary,
        )


def parse_entries(texts: list[str]) -> dict[str, Entry]:
    out: dict[str, Entry] = {}
    for text in texts:
        entry = Entry.from_line(text.strip())
        if entry is not None:
            out[entry.run] = entry
    return out


def entry_path(run_id: str) -> str:
    return f"{INDEX}/{run_id}{SUFFIX}"
