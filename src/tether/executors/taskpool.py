"""The task pool of a batch: its tasks, claimed one at a time by serial workers.

A batch writes its task list once, in the parent run folder. Workers, wherever they run (this
process, joblib processes, Slurm or PBS jobs), loop: claim the next task, run it, record how it
ended. A claim is atomic and carries a lease: the worker's heartbeat thread renews it while the
task runs. A worker that dies without a word (SIGKILL, a node lost) stops renewing; once its
lease has expired another worker takes the task over, so a task is neither lost nor run by two
live workers at once.

Task statuses: `pending` (not started, or handed back), `running` (claimed, lease held),
`completed`, `failed` (the task raised: its traceback is kept). Every claim is also an attempt
(`attempts()`), so "each task completed exactly once" can be checked afterwards.

Two kinds, one interface (`TaskPool`): on a local disk SQLite (`tasks.db`, sqlitepool.py); on a
shared filesystem (tether.mounts: NFS, Lustre, GPFS, ..., where workers on several hosts write
at once and SQLite is unsafe) plain files claimed by exclusive creation (`tasks/`, filepool.py).
`TaskPool.create` picks by the folder's filesystem, `TaskPool.open` by what the folder holds.

The workers themselves (claim, run, record, the lease's heartbeat, submitit's requeue contract)
are in worker.py.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import TetherError
from ..mounts import is_shared
from .filepool import ITEMS, POOL_DIR, FilePool
from .pooltypes import (
    DEFAULT_LEASE_S,
    LEASE_ENV,
    STATUSES,
    Claim,
    Outcome,
    TaskRow,
    default_lease,
)
from .sqlitepool import POOL_FILE, SqlitePool

__all__ = [
    "DEFAULT_LEASE_S",
    "LEASE_ENV",
    "POOL_DIR",
    "POOL_FILE",
    "STATUSES",
    "Claim",
    "Outcome",
    "TaskPool",
    "TaskRow",
    "default_lease",
    "has_pool",
]


def has_pool(folder: str | os.PathLike[str]) -> bool:
    """Whether `folder` (a run folder) holds a task pool, of either kind: it is a batch."""
    return (Path(folder) / POOL_FILE).is_file() or (Path(folder) / POOL_DIR / ITEMS).is_file()


class TaskPool:
    """The tasks of one batch, in the parent run folder (SQLite or files, see above)."""

    def __init__(self, backend: SqlitePool | FilePool) -> None:
        self.backend = backend

    @property
    def path(self) -> Path:
        return self.backend.path

    @property
    def lease_s(self) -> float:
        return self.backend.lease_s

    @lease_s.setter
    def lease_s(self, value: float) -> None:
        self.backend.lease_s = value

    @property
    def kind(self) -> str:
        """`sqlite` or `files`."""
        return "files" if isinstance(self.backend, FilePool) else "sqlite"

    # -- creation ---------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        folder: str | os.PathLike[str],
        items: Sequence[Any],
        meta: dict[str, Any] | None = None,
        lease_s: float | None = None,
    ) -> TaskPool:
        if has_pool(folder):
            raise TetherError(f"{folder} holds a task pool already: it is a batch run")
        kind = FilePool if is_shared(folder) else SqlitePool
        return cls(kind.create(folder, items, meta=meta, lease_s=lease_s))

    @classmethod
    def open(cls, folder: str | os.PathLike[str], lease_s: float | None = None) -> TaskPool:
        if (Path(folder) / POOL_DIR / ITEMS).is_file():
            return cls(FilePool.open(folder, lease_s))
        return cls(SqlitePool.open(folder, lease_s))

    def close(self) -> None:
        self.backend.close()

    def meta(self) -> dict[str, Any]:
        return self.backend.meta()

    def set_meta(self, key: str, value: Any) -> None:
        self.backend.set_meta(key, value)

    def set_prepared(self, runs: dict[int, str]) -> None:
        """Child runs made ahead (status `queued`) for tasks not yet started."""
        self.backend.set_prepared(runs)

    # -- claims -----------------------------------------------------------------------------
    def claim(
        self,
        worker: str,
        finished: tuple[Claim, Outcome] | None = None,
        new_run: str | None = None,
    ) -> Claim | None:
        """Record how the previous task ended (if given) and claim the next one. `new_run` is
        the id the attempt's run gets unless the task has a run already (made ahead, or left
        by an interrupted attempt). None when nothing is claimable now (see `wait_hint`)."""
        return self.backend.claim(worker, finished, new_run)

    def claim_many(
        self,
        worker: str,
        finished: Sequence[tuple[Claim, Outcome]],
        new_runs: Sequence[str | None],
    ) -> list[Claim]:
        """Record how the `finished` attempts ended and claim up to `len(new_runs)` tasks at
        once (one transaction in SQLite; one at a time in files, whose claims are one file each
        anyway). No `new_runs`: only the record."""
        claim_many = getattr(self.backend, "claim_many", None)
        if claim_many is not None:
            claims: list[Claim] = claim_many(worker, finished, new_runs)
            return claims
        for done in finished:
            self.backend.finish(*done)
        one = self.backend.claim(worker, None, new_runs[0]) if new_runs else None
        return [one] if one is not None else []

    def unclaim(self, claims: Sequence[Claim]) -> None:
        """Hand back claims never started (a worker that claimed several tasks at once stops):
        pending again, as if never claimed."""
        unclaim = getattr(self.backend, "unclaim", None)
        if unclaim is not None:
            unclaim(claims)
            return
        for claim in claims:  # not reached: a file pool hands out one claim at a time
            self.backend.finish(claim, Outcome("terminated", claim.run))

    def heartbeat(self, claims: Sequence[Claim]) -> list[Claim]:
        """Renew the leases of these claims; the claims this worker no longer holds."""
        return self.backend.heartbeat(claims)

    def finish(self, claim: Claim, outcome: Outcome) -> bool:
        """Record how an attempt ended; False when the claim was no longer this worker's (its
        lease expired and another worker took the task over: that worker's result counts)."""
        return self.backend.finish(claim, outcome)

    # -- reading ----------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        return self.backend.counts()

    def unfinished(self) -> int:
        return self.backend.unfinished()

    def wait_hint(self) -> float | None:
        """Seconds until the earliest lease of a running task expires (None: none running)."""
        return self.backend.wait_hint()

    def rows(self) -> list[TaskRow]:
        return self.backend.rows()

    def attempts(self) -> list[dict[str, Any]]:
        return self.backend.attempts()

    # -- retry and abort --------------------------------------------------------------------
    def reset_for_retry(self) -> int:
        """Failed tasks, and tasks left running by workers that are gone (lease expired), back
        to pending; the number of tasks to run again (pending ones included)."""
        return self.backend.reset_for_retry()

    def release_all(self) -> list[str]:
        """The batch is being stopped: every running task back to pending; their runs."""
        return self.backend.release_all()
