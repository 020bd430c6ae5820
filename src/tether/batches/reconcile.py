"""Runs of scheduler jobs brought in step with their jobs, for `tether runs`.

A Slurm or PBS job that is cancelled before it starts, dies with its node, or is killed without
a word writes nothing more: its runs would stay `queued` or `running` in the store. `reconcile`
asks the scheduler, once, about the jobs of the runs that still say so, and gives those whose
jobs have ended the state they really have, with the scheduler's word in state.json's `error`:

- a run `queued` in a batch whose jobs have all ended (its task never started, or was handed
  back and never picked up again): `terminated` when the jobs were cancelled, preempted or
  timed out, `failed` when they failed;
- a run `running` in a job (its open attempt names the job) that has ended: `terminated` or
  `failed` likewise, `unknown` when the job ended "completed" or is known no more.

It is cheap when nothing is in flight: one query of the index (runs `queued` or `running`),
no folder read beyond the state.json of those runs and the task pool of their batches, and no
scheduler call unless one of them belongs to a scheduler job. Their tasks stay undone in the
pool, for `--retry-failed`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..clock import now_iso
from ..executors import pbs, slurm
from ..executors.slurm import JobState
from ..executors.taskpool import TaskPool, has_pool
from ..store.state import FINISHED, IN_FLIGHT, RunState, read_state

SCHEDULERS: dict[str, tuple[str, Callable[[list[str]], dict[str, list[JobState]] | None]]] = {
    "slurm": ("Slurm", slurm.job_states),
    "pbs": ("PBS", pbs.job_states),
}
# Scheduler states (Slurm's words; PBS's are mapped to them) of a job that was stopped rather
# than one that failed.
STOPPED = {"CANCELLED", "PREEMPTED", "TIMEOUT", "DEADLINE", "REVOKED"}


@dataclass
class Waiting:
    """A run in flight, the scheduler and jobs it depends on, and whether its task began."""

    run_id: str
    dir: Path
    state: RunState
    scheduler: str
    jobs: list[str]
    began: bool  # its open attempt runs in `jobs`; else it waits for any of them
    found: list[JobState] = field(default_factory=list)


def in_flight(store: Any) -> list[Any]:
    """Index rows of the runs that say `queued` or `running` (one query, no folder read)."""
    if not store.root.is_dir():
        return []
    marks = ", ".join("?" * len(IN_FLIGHT))
    return list(store.index.rows(where_sql=f"runs.status IN ({marks})", params=list(IN_FLIGHT)))


def _batch_jobs(store: Any, parent: str, cache: dict[str, tuple[str, list[str]] | None]) -> Any:
    """(scheduler, job ids) of the batch `parent` ran on a scheduler, from its task pool (no
    job ids: none was submitted)."""
    if parent not in cache:
        cache[parent] = None
        folder = store.run_dir(parent)
        if has_pool(folder):
            try:
                meta = TaskPool.open(folder).meta()
            except Exception:
                meta = {}
            if meta.get("executor") in SCHEDULERS:
                cache[parent] = (str(meta["executor"]), [str(j) for j in meta.get("jobs") or []])
    return cache[parent]


def _batch_over(store: Any, parent: str) -> bool:
    """The batch's own process is gone (it ended, or died)."""
    return read_state(store.run_dir(parent)).effective_status() in FINISHED


def waiting_runs(store: Any, rows: list[Any]) -> list[Waiting]:
    """The runs among `rows` whose fate a scheduler knows: a running attempt in a job, or a
    place in a batch on a scheduler."""
    out: list[Waiting] = []
    batches: dict[str, tuple[str, list[str]] | None] = {}
    for row in rows:
        run_dir = Path(row.dir)
        state = read_state(run_dir)
        if state.status not in IN_FLIGHT:
            continue  # it moved on since the index row was written
        attempt = state.open_attempt
        if state.status == "running" and attempt is not None and attempt.job_id:
            if attempt.scheduler in SCHEDULERS:
                out.append(
                    Waiting(row.id, run_dir, state, attempt.scheduler, [attempt.job_id], True)
                )
            continue
        batch = _batch_jobs(store, row.parent, batches) if row.parent else None
        if batch is not None and (batch[1] or _batch_over(store, row.parent)):
            out.append(Waiting(row.id, run_dir, state, batch[0], batch[1], False))
    return out


def verdict(w: Waiting, name: str) -> tuple[str, str] | None:
    """(status, error) for a run whose jobs have all ended; None while one is still alive."""
    if not w.jobs:
        return "terminated", "its batch ended before its jobs were submitted"
    if any(not j.final for j in w.found):
        return None
    said = "; ".join(j.describe(name) for j in w.found[:3])
    jobs = ", ".join(w.jobs)
    states = {j.state for j in w.found}
    if w.began:
        if not w.found:
            return "unknown", f"its {name} job {jobs} is gone without a word"
        if states <= STOPPED:
            return "terminated", f"its {name} job ended: {said}"
        if states <= {"COMPLETED"}:
            return "unknown", f"its {name} job ended ({said}) without recording the run's end"
        return "failed", f"its {name} job ended: {said}"
    if w.state.status == "running":  # from before attempts were recorded
        return "unknown", f"its {name} jobs ended without recording it ({said or jobs})"
    if not w.found or states <= STOPPED | {"COMPLETED"}:
        what = said or f"{name} job {jobs} is gone"
        return "terminated", f"its batch's jobs ended before its task ran ({what})"
    return "failed", f"its batch's jobs failed before its task ran ({said})"


def reconcile(store: Any, rows: list[Any] | None = None) -> int:
    """Bring the runs of ended scheduler jobs in step (see the module doc); the number of runs
    changed. `rows`: the index rows to look at (default: every run queued or running)."""
    if not store.root.is_dir():
        return 0
    rows = in_flight(store) if rows is None else [r for r in rows if r.status in IN_FLIGHT]
    if not rows:
        return 0
    waiting = waiting_runs(store, rows)
    changed = 0
    for scheduler, (name, ask) in SCHEDULERS.items():
        mine = [w for w in waiting if w.scheduler == scheduler]
        if not mine:
            continue
        ids = [j for w in mine for j in w.jobs]
        states = ask(ids) if ids else {}
        if states is None:
            continue  # the scheduler does not answer: nothing is known
        for w in mine:
            w.found = [j for job in w.jobs for j in states.get(job, [])]
            outcome = verdict(w, name)
            if outcome is not None and _settle(store, w, *outcome):
                changed += 1
    return changed


def _settle(store: Any, w: Waiting, status: str, error: str) -> bool:
    """Record the run's end, unless it moved on while the scheduler was asked."""
    current = read_state(w.dir)
    if current.status != w.state.status or current.updated != w.state.updated:
        return False
    try:
        record = store.load(w.run_id)
    except Exception:
        return False
    current.status, current.error = status, error
    current.stopped = current.stopped or now_iso()
    store.set_state(record, current)
    return True
