"""state.json: the mutable status of a run, and whether its process is still alive."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..clock import now_iso
from ..fsio import atomic_write_json
from .layout import STATE

# The status values of a run, and the one place their subsets are written.
STATUSES = ("pending", "queued", "running", "completed", "failed", "terminated", "unknown")
BUSY = ("pending", "queued", "running")  # not done yet: leave it alone (delete, sync, stop)
LIVE = ("pending", "running")  # a process on some host should be alive for it
FINAL = ("completed", "failed", "terminated")  # written once, by the run's end
FINISHED = (*FINAL, "unknown")  # no process will write to it again


def hostname() -> str:
    return os.uname().nodename


def proc_start_time(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot (Linux); tells a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    fields = raw[raw.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def pid_alive(pid: int, proc_start: int | None = None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if proc_start is not None:
        current = proc_start_time(pid)
        if current is not None and current != proc_start:
            return False
        if current is None and os.path.exists("/proc/self/stat"):
            return False
    # A zombie (exited, not yet reaped) counts as gone.
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
        if raw[raw.rfind(b")") + 2 :][:1] == b"Z":
            return False
    except OSError:
        pass
    return True


@dataclass
class RunState:
    status: str = "pending"
    pid: int | None = None
    host: str | None = None
    started: str | None = None
    stopped: str | None = None
    exit_code: int | None = None
    proc_start: int | None = None
    updated: str | None = None
    error: str | None = None

    def effective_status(self) -> str:
        """The recorded status, or `unknown` when a live run's process is gone from this host."""
        if (
            self.status in LIVE
            and self.pid
            and self.host == hostname()
            and not pid_alive(self.pid, self.proc_start)
        ):
            return "unknown"
        return self.status

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunState:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


def write_state(run_dir: Path, state: RunState) -> None:
    """Atomic always; fsynced only for a final status. pending and running are superseded within
    moments, and after a crash a missing or older state.json reads as `unknown` anyway."""
    state.updated = now_iso()
    atomic_write_json(run_dir / STATE, state.to_dict(), durable=state.status in FINAL)


def read_state(run_dir: Path) -> RunState:
    try:
        with open(run_dir / STATE, encoding="utf-8") as fh:
            return RunState.from_dict(json.load(fh))
    except FileNotFoundError:
        return RunState(status="unknown")
    except (ValueError, TypeError):
        return RunState(status="unknown", error="state.json unreadable")
