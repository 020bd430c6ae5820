"""What every task pool deals in: claims, outcomes, task rows, and the lease length.

A task pool (tether.executors.taskpool) holds the tasks of one batch; these are the values its
two kinds (SQLite on a local disk, files on a shared filesystem) hand out and take back.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

DEFAULT_LEASE_S = 60.0
LEASE_ENV = "TETHER_TASK_LEASE"  # seconds; tests shorten it
STATUSES = ("pending", "running", "completed", "failed")


def default_lease() -> float:
    raw = os.environ.get(LEASE_ENV)
    if raw:
        try:
            value = float(raw)
            if value > 0:
                return value
        except ValueError:
            pass
    return DEFAULT_LEASE_S


@dataclass
class Claim:
    index: int
    item: Any
    attempt: int
    worker: str
    run: str | None  # the id of this attempt's run
    # The run exists: made ahead (queued), or left by an interrupted attempt; this attempt
    # starts or continues it.
    prepared: bool = False
    # The task's run before this claim: what it gets back if the claim is handed back unstarted
    # (`unclaim`: a worker that claimed several tasks at once stops before their turn).
    prior_run: str | None = None


@dataclass
class TaskRow:
    index: int
    item: Any
    status: str
    attempts: int
    run: str | None
    error: str | None
    result: Any
    worker: str | None = None
    lease: float | None = None


@dataclass
class Outcome:
    """How one attempt at a task ended."""

    status: str  # completed, failed, or terminated (interrupted: the task is handed back)
    run: str | None = None
    error: str | None = None
    result: Any = None


def json_or_none(value: Any) -> str | None:
    if value is None:
        return None
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        return None
    return text if len(text) <= 65536 else None
