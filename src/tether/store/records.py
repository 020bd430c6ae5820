"""Typed records the store reads and writes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..lock import RunLock
from .state import RunState


@dataclass
class Attributes:
    """What users add to a run after the fact (attrs.json): label, tags, notes and adopted
    project."""

    label: str | None = None
    tags: list[str] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)
    project: str | None = None  # `tether runs adopt`: the project id that replaces run.lock's


@dataclass
class RunRecord:
    """Everything known about one run, read from its folder."""

    id: str
    dir: Path
    lock: RunLock
    state: RunState
    attrs: Attributes
    summary: dict[str, Any]

    @property
    def name(self) -> str:
        return self.lock.name

    @property
    def status(self) -> str:
        return self.state.effective_status()

    def metrics(self) -> dict[str, dict[str, Any]]:
        return dict(self.summary.get("metrics") or {})


@dataclass
class IndexRow:
    """One run as the index knows it: enough to list and filter without opening files."""

    id: str
    name: str
    status: str
    created: str
    started: str | None
    stopped: str | None
    host: str | None
    pid: int | None
    label: str | None
    parent: str | None
    dir: str
    tags: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    proc_start: int | None = None
    exit_code: int | None = None

    def effective_status(self) -> str:
        return RunState(
            status=self.status, pid=self.pid, host=self.host, proc_start=self.proc_start
        ).effective_status()
