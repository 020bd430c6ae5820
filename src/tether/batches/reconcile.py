"""Children of Slurm batches brought in step with their jobs (for `tether runs`).

A Slurm job that is cancelled, or dies with its node, writes nothing more: its children stay
`queued` or `running` in the store. `reconcile` asks squeue whether any of a batch's jobs is
still queued or running; when none is, those children get the state they really have.
"""

from __future__ import annotations

from typing import Any

from ..clock import now_iso
from ..executors.slurm import live_jobs
from ..executors.taskpool import POOL_FILE, TaskPool
from ..store.state import read_state


def reconcile(store: Any, rows: list[Any] | None = None) -> int:
    """Bring `queued`/`running` children of Slurm batches in step with the jobs: when none of a
    batch's jobs is queued or running any more (`squeue`), its children still `queued` end
    `terminated` (their task never started) and those still `running` become `unknown` (the
    job vanished without a word); their tasks stay undone in the pool, for `--retry-failed`.
    The number of runs changed. Meant for `tether runs` (cheap when nothing is in flight).
    """
    rows = rows if rows is not None else store.list()
    by_parent: dict[str, list[Any]] = {}
    for row in rows:
        if row.parent and row.status in ("queued", "running"):
            by_parent.setdefault(row.parent, []).append(row)
    changed = 0
    for parent_id, children in by_parent.items():
        folder = store.run_dir(parent_id)
        if not (folder / POOL_FILE).is_file():
            continue
        try:
            meta = TaskPool.open(folder).meta()
        except Exception:
            continue
        if meta.get("executor") != "slurm" or not meta.get("jobs"):
            continue
        alive = live_jobs([str(j) for j in meta["jobs"]])
        if alive is None or alive:
            continue
        for row in children:
            try:
                record = store.load(row.id)
            except Exception:
                continue
            state = read_state(record.dir)
            if state.status == "queued":
                state.status, state.error = "terminated", "its Slurm job ended before it started"
            elif state.status == "running":
                state.status, state.error = "unknown", "its Slurm job ended without recording it"
            else:
                continue
            state.stopped = state.stopped or now_iso()
            store.set_state(record, state)
            changed += 1
    return changed
