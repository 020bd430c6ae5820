"""ranks/<rank>/: what one process of a multi-process run (a rank of `tether launch`, or of any
launcher inside a run) writes besides the run's own files.

Global rank 0 is the run's writer (run.lock, metrics.jsonl, summary.json, the index); every
rank keeps `ranks/<rank>/output.log` (its own output), `ranks/<rank>/rank.json` (host, pid,
status, exit code, error: written when it starts and when it ends) and, for the other ranks,
the metrics they log without reducing them to rank 0 (`ranks/<rank>/metrics.jsonl`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..fsio import atomic_write_json
from .layout import RANK_RECORD, RANKS


@dataclass
class RankRecord:
    rank: int
    world_size: int = 1
    host: str | None = None
    pid: int | None = None
    status: str = "running"  # running, then completed | failed | terminated
    exit_code: int | None = None
    started: str | None = None
    stopped: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RankRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})

    def describe(self) -> str:
        """`rank 1 on node07 failed (exit 3): ValueError: ...`"""
        where = f" on {self.host}" if self.host else ""
        if self.status in ("running", "unknown"):
            return f"rank {self.rank}{where} stopped without recording how it ended"
        code = f" (exit {self.exit_code})" if self.exit_code is not None else ""
        error = f": {self.error}" if self.error else ""
        return f"rank {self.rank}{where} {self.status}{code}{error}"


def rank_dir(run_dir: str | os.PathLike[str], rank: int) -> Path:
    return Path(run_dir) / RANKS / str(rank)


def write_rank(run_dir: str | os.PathLike[str], record: RankRecord) -> None:
    folder = rank_dir(run_dir, record.rank)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / RANK_RECORD, record.to_dict(), durable=record.status != "running")


def read_ranks(run_dir: str | os.PathLike[str]) -> list[RankRecord]:
    """The rank records of a run, by rank (none for a single-process run)."""
    base = Path(run_dir) / RANKS
    out: list[RankRecord] = []
    try:
        entries = list(os.scandir(base))
    except OSError:
        return out
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            with open(Path(entry.path) / RANK_RECORD, encoding="utf-8") as fh:
                raw = json.load(fh)
            out.append(RankRecord.from_dict(raw))
        except (OSError, ValueError, TypeError):
            out.append(RankRecord(rank=int(entry.name), status="unknown"))
    return sorted(out, key=lambda r: r.rank)


def failed_rank(records: list[RankRecord]) -> RankRecord | None:
    """The rank to blame for a failed run: the first that failed, else the first that was
    stopped, else the first that never recorded its end."""
    for wanted in ("failed", "terminated", "running", "unknown"):
        for record in records:
            if record.status == wanted:
                return record
    return None
