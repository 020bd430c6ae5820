"""The task pool on a shared filesystem: one small file per event, claims made by creating names.

Workers of one batch run on several hosts (Slurm or PBS jobs on many nodes) and the parent run
folder is on NFS, Lustre, GPFS, ...: SQLite is unsafe there (see tether.mounts), so the pool is
plain files, each written once, in `<parent run folder>/tasks/`:

    items.json        the task list, written once when the pool is made
    meta/<key>.json   the batch's facts (executor, job ids), each rewritten atomically
    claims/<i>.<a>    attempt a at task i: who holds it, its run, its first lease
    leases/<i>.<a>    the lease the holder renews while the task runs
    ends/<i>.<a>      how attempt a ended: completed, failed, terminated (handed back) or lost
    resets/<i>.<a>    a failed attempt forgiven by a retry: the task is pending again
    prepared/<i>      a run made ahead (queued) for the task's next attempt

Every decision is the exclusive creation of a name (tether.mounts: link(2) or symlink(2), one
request to the server, EEXIST for all but one writer), so it needs no lock:

- claiming attempt a of task i is creating `claims/<i>.<a>`, where a-1 is the task's last
  attempt and has ended (or a = 1): of many workers exactly one gets it;
- ending attempt a is creating `ends/<i>.<a>`, by its holder (the outcome), by a worker that
  found the lease run out (lost: it then claims attempt a+1) or by a batch being stopped
  (terminated). Exactly one of them wins, so a holder whose lease ran out learns that its
  result does not count, and a task that completed is never taken over.

A task's state is its last attempt's: none (pending), not ended (running), ended completed or
failed, pending again when handed back, lost, or failed and reset. A worker claims fresh tasks
walking up from the lowest unclaimed index it saw (no listing per claim); once those are gone
it lists the folders for tasks handed back and for leases that ran out. Leases compare
`time.time()` across hosts, as the SQLite pool does: the hosts' clocks are assumed in step
(NTP) to well within a lease.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import TetherError
from ..fsio import atomic_write_json, atomic_write_text
from ..mounts import create_exclusive, create_small, read_small
from .pooltypes import STATUSES, Claim, Outcome, TaskRow, default_lease, json_or_none

POOL_DIR = "tasks"
ITEMS = "items.json"
_FOLDERS = ("meta", "claims", "leases", "ends", "resets", "prepared")
_NAME = re.compile(r"([0-9]+)\.([0-9]+)")
_SAFE_KEY = re.compile(r"[A-Za-z0-9_.-]+")
_WALK_BEFORE_LISTING = 8  # taken names in a row before a worker lists claims/ to jump ahead


@dataclass
class _Task:
    """What the files say about one task (attempt 0: never claimed)."""

    attempt: int = 0
    ended: dict[str, Any] | None = None  # the last attempt's end, once it has one
    reset: bool = False
    attempts: set[int] = field(default_factory=set)

    @property
    def status(self) -> str:
        if self.attempt == 0:
            return "pending"
        if self.ended is None:
            return "running"
        status = self.ended.get("status")
        if status == "completed":
            return "completed"
        if status == "failed" and not self.reset:
            return "failed"
        return "pending"  # handed back, lost, or a failure reset for a retry


def _key_file(key: str) -> str:
    return f"{key}.json" if _SAFE_KEY.fullmatch(key) else f"_{key.encode().hex()}.json"


def _key_of(name: str) -> str:
    stem = name[: -len(".json")]
    return bytes.fromhex(stem[1:]).decode() if stem.startswith("_") else stem


class FilePool:
    """The tasks of one batch, in `<parent run folder>/tasks/` (see the module's text)."""

    def __init__(self, path: str | os.PathLike[str], lease_s: float | None = None) -> None:
        self.path = Path(path)
        self.lease_s = lease_s if lease_s is not None else default_lease()
        self._reset_caches()

    def _reset_caches(self) -> None:
        self._items: list[Any] | None = None
        self._cursor: int | None = None  # tasks below it have been claimed at least once
        self._claims: dict[tuple[int, int], dict[str, Any]] = {}  # written once: cached
        self._ends: dict[tuple[int, int], dict[str, Any]] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "lease_s": self.lease_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path, self.lease_s = state["path"], state["lease_s"]
        self._reset_caches()

    def close(self) -> None:
        """Nothing to close (no connection); here for the TaskPool interface."""

    # -- creation ---------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        folder: str | os.PathLike[str],
        items: Sequence[Any],
        meta: dict[str, Any] | None = None,
        lease_s: float | None = None,
    ) -> FilePool:
        path = Path(folder) / POOL_DIR
        if path.exists():
            raise TetherError(f"{path} exists already: this folder holds a batch")
        # Built aside and renamed into place: a worker never sees a pool without its tasks.
        tmp = path.with_name(f".{POOL_DIR}.{os.getpid()}.{os.urandom(4).hex()}")
        tmp.mkdir()
        for name in _FOLDERS:
            (tmp / name).mkdir()
        atomic_write_text(tmp / ITEMS, json.dumps(list(items)) + "\n")
        for key, value in (meta or {}).items():
            atomic_write_json(tmp / "meta" / _key_file(key), value)
        os.rename(tmp, path)
        return cls(path, lease_s)

    @classmethod
    def open(cls, folder: str | os.PathLike[str], lease_s: float | None = None) -> FilePool:
        path = Path(folder) / POOL_DIR
        if not (path / ITEMS).is_file():
            raise TetherError(f"{folder} holds no task pool ({POOL_DIR}/): is it a batch run?")
        return cls(path, lease_s)

    def meta(self) -> dict[str, Any]:
        out = {}
        for entry in sorted(os.scandir(self.path / "meta"), key=lambda e: e.name):
            if entry.name.endswith(".json") and not entry.name.startswith("."):
                with open(entry.path, encoding="utf-8") as fh:
                    out[_key_of(entry.name)] = json.load(fh)
        return out

    def set_meta(self, key: str, value: Any) -> None:
        atomic_write_json(self.path / "meta" / _key_file(key), value)

    def set_prepared(self, runs: dict[int, str]) -> None:
        """Child runs made ahead (status `queued`) for tasks not yet started."""
        tasks = self._scan()
        for idx, run in runs.items():
            task = tasks[idx]
            if task.status == "pending":
                atomic_write_json(
                    self.path / "prepared" / str(idx), {"run": run, "attempt": task.attempt + 1}
                )

    # -- the files --------------------------------------------------------------------------
    def items(self) -> list[Any]:
        if self._items is None:
            with open(self.path / ITEMS, encoding="utf-8") as fh:
                self._items = json.load(fh)
        return self._items

    def _file(self, folder: str, idx: int, attempt: int) -> Path:
        return self.path / folder / f"{idx}.{attempt}"

    @staticmethod
    def _names(folder: Path) -> list[tuple[int, int]]:
        out = []
        for name in os.listdir(folder):
            m = _NAME.fullmatch(name)
            if m:
                out.append((int(m.group(1)), int(m.group(2))))
        return out

    def _claim_of(self, idx: int, attempt: int) -> dict[str, Any]:
        key = (idx, attempt)
        known = self._claims.get(key)
        if known is None:
            text = read_small(self._file("claims", idx, attempt))
            try:
                known = json.loads(text) if text else {}
            except ValueError:
                known = {}  # the no-symlink fallback, being written: nothing yet
            if known:
                self._claims[key] = known
        return known

    def _end_of(self, idx: int, attempt: int) -> dict[str, Any] | None:
        key = (idx, attempt)
        known = self._ends.get(key)
        if known is None:
            try:
                with open(self._file("ends", idx, attempt), encoding="utf-8") as fh:
                    known = json.loads(fh.read())
            except FileNotFoundError:
                return None
            except ValueError:
                return None  # being written in place (no hard links here): not ended yet
            self._ends[key] = known
        return known

    def _scan(self) -> list[_Task]:
        tasks = [_Task() for _ in self.items()]
        for idx, attempt in self._names(self.path / "claims"):
            if idx < len(tasks):
                task = tasks[idx]
                task.attempts.add(attempt)
                task.attempt = max(task.attempt, attempt)
        ended = set(self._names(self.path / "ends"))
        reset = set(self._names(self.path / "resets"))
        for idx, task in enumerate(tasks):
            if task.attempt and (idx, task.attempt) in ended:
                task.ended = self._end_of(idx, task.attempt)
                task.reset = (idx, task.attempt) in reset
        return tasks

    def _lease_of(self, idx: int, attempt: int) -> float:
        """When attempt's lease runs out: the renewed one, else the claim's first."""
        first = float(self._claim_of(idx, attempt).get("lease") or 0.0)
        try:
            with open(self._file("leases", idx, attempt), encoding="utf-8") as fh:
                return max(first, float(fh.read().strip() or 0.0))
        except (FileNotFoundError, ValueError):
            return first

    # -- claims -----------------------------------------------------------------------------
    def claim(
        self,
        worker: str,
        finished: tuple[Claim, Outcome] | None = None,
        new_run: str | None = None,
    ) -> Claim | None:
        """Record how the previous task ended (if given) and claim the next one. None when
        nothing is claimable now (see `wait_hint`)."""
        if finished is not None:
            self.finish(*finished)
        count = len(self.items())
        if self._cursor is not None:
            taken = 0
            while self._cursor < count:
                got = self._try(self._cursor, 1, worker, new_run, None)
                if got is not None:
                    self._cursor += 1
                    return got
                self._cursor += 1
                taken += 1
                if taken >= _WALK_BEFORE_LISTING:
                    break  # others are far ahead: list once and jump there
            if self._cursor >= count:
                self._cursor = count
        tasks = self._scan()
        fresh = [i for i, t in enumerate(tasks) if t.attempt == 0]
        self._cursor = fresh[0] if fresh else count
        for idx, task in enumerate(tasks):
            if task.status == "pending":
                got = self._try(idx, task.attempt + 1, worker, new_run, task.ended)
                if got is not None:
                    if task.attempt == 0 and idx == self._cursor:
                        self._cursor += 1
                    return got
        now = time.time()
        running = [(self._lease_of(i, t.attempt), i, t) for i, t in enumerate(tasks)]
        for lease, idx, task in sorted(x for x in running if x[2].status == "running"):
            if lease >= now:
                break
            # The holder stopped renewing: its attempt is over (and its run with it).
            self._end(idx, task.attempt, {"status": "lost", "by": worker, "stopped": now})
            ended = self._end_of(idx, task.attempt)
            if ended is not None and ended.get("status") in ("lost", "terminated"):
                got = self._try(idx, task.attempt + 1, worker, new_run, ended)
                if got is not None:
                    return got
        return None

    def _try(
        self,
        idx: int,
        attempt: int,
        worker: str,
        new_run: str | None,
        previous: dict[str, Any] | None,
    ) -> Claim | None:
        """Claim attempt `attempt` of task `idx`; None when another worker has it."""
        run, prepared = new_run, False
        made = self._prepared(idx)
        if made is not None and made.get("attempt") == attempt:
            run, prepared = made.get("run"), True
        elif previous is not None and previous.get("status") == "terminated":
            # Handed back, not done: the next attempt continues the same run.
            before = previous.get("run") or self._claim_of(idx, attempt - 1).get("run")
            if before:
                run, prepared = before, True
        now = time.time()
        text = json.dumps(
            {
                "worker": worker,
                "run": run,
                "started": now,
                "lease": now + self.lease_s,
                "prepared": prepared,
            }
        )
        if not create_small(self._file("claims", idx, attempt), text):
            return None
        return Claim(idx, self.items()[idx], attempt, worker, run, prepared)

    def _prepared(self, idx: int) -> dict[str, Any] | None:
        try:
            with open(self.path / "prepared" / str(idx), encoding="utf-8") as fh:
                value = json.load(fh)
        except (FileNotFoundError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def _end(self, idx: int, attempt: int, record: dict[str, Any]) -> bool:
        """End attempt `attempt` of task `idx` with `record`; False: it had ended already."""
        data = (json.dumps(record, default=str) + "\n").encode("utf-8")
        return create_exclusive(self._file("ends", idx, attempt), data)

    def heartbeat(self, claims: Sequence[Claim]) -> list[Claim]:
        """Renew the leases of these claims; the claims this worker no longer holds."""
        lost = []
        until = time.time() + self.lease_s
        for claim in claims:
            if os.path.lexists(self._file("ends", claim.index, claim.attempt)):
                lost.append(claim)
                continue
            atomic_write_text(
                self._file("leases", claim.index, claim.attempt), f"{until!r}\n", durable=False
            )
        return lost

    def finish(self, claim: Claim, outcome: Outcome) -> bool:
        """Record how an attempt ended; False when the claim was no longer this worker's (its
        lease ran out and another worker took the task over, or the batch was stopped)."""
        record = {
            "status": outcome.status,
            "run": outcome.run or claim.run,
            "error": outcome.error,
            "result": outcome.result if json_or_none(outcome.result) is not None else None,
            "worker": claim.worker,
            "stopped": time.time(),
        }
        return self._end(claim.index, claim.attempt, record)

    # -- reading ----------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATUSES, 0)
        for task in self._scan():
            out[task.status] += 1
        out["total"] = sum(out[s] for s in STATUSES)
        return out

    def unfinished(self) -> int:
        return sum(1 for t in self._scan() if t.status in ("pending", "running"))

    def wait_hint(self) -> float | None:
        """Seconds until the earliest lease of a running task expires (None: none running)."""
        tasks = enumerate(self._scan())
        leases = [self._lease_of(i, t.attempt) for i, t in tasks if t.status == "running"]
        return max(0.0, min(leases) - time.time()) if leases else None

    def rows(self) -> list[TaskRow]:
        out = []
        items = self.items()
        for idx, task in enumerate(self._scan()):
            status = task.status
            claim = self._claim_of(idx, task.attempt) if task.attempt else {}
            ended = task.ended or {}
            run = ended.get("run") or claim.get("run")
            made = self._prepared(idx) if status == "pending" else None
            if made is not None and made.get("attempt") == task.attempt + 1:
                run = made.get("run")
            running = status == "running"
            out.append(
                TaskRow(
                    idx,
                    items[idx],
                    status,
                    task.attempt,
                    run,
                    ended.get("error") if status == "failed" else None,
                    ended.get("result") if status in ("completed", "failed") else None,
                    claim.get("worker") if running else None,
                    self._lease_of(idx, task.attempt) if running else None,
                )
            )
        return out

    def attempts(self) -> list[dict[str, Any]]:
        out = []
        for idx, task in enumerate(self._scan()):
            for attempt in sorted(task.attempts):
                claim = self._claim_of(idx, attempt)
                ended = self._end_of(idx, attempt) or {}
                out.append(
                    {
                        "idx": idx,
                        "attempt": attempt,
                        "worker": claim.get("worker"),
                        "run": ended.get("run") or claim.get("run"),
                        "status": ended.get("status", "running"),
                        "started": claim.get("started"),
                        "stopped": ended.get("stopped"),
                    }
                )
        return out

    # -- retry and abort --------------------------------------------------------------------
    def reset_for_retry(self) -> int:
        """Failed tasks, and tasks left running by workers that are gone (lease expired), back
        to pending; the number of tasks to run again (pending ones included)."""
        now = time.time()
        for idx, task in enumerate(self._scan()):
            if task.status == "failed":
                create_small(self._file("resets", idx, task.attempt), "reset")
            elif task.status == "running" and self._lease_of(idx, task.attempt) < now:
                self._end(idx, task.attempt, {"status": "lost", "by": "retry", "stopped": now})
        return sum(1 for t in self._scan() if t.status == "pending")

    def release_all(self) -> list[str]:
        """The batch is being stopped: every running task back to pending; their runs."""
        runs = []
        now = time.time()
        for idx, task in enumerate(self._scan()):
            if task.status != "running":
                continue
            run = self._claim_of(idx, task.attempt).get("run")
            record = {"status": "terminated", "run": run, "by": "stop", "stopped": now}
            if self._end(idx, task.attempt, record) and run:
                runs.append(run)
        return runs
