"""Attaching: a process tether started for a run works for that run instead of making one.

Every process tether starts for a run (an operation's `exec`, each rank of `tether launch`, a
batch trial on an executor, a Slurm or PBS task) gets `TETHER_RUN_DIR`, `TETHER_RUN_ID` and
`TETHER_RUNS` (`tether.context.run_env`). There, `start_run` (and so `@tether.experiment`),
`History` and `open_run()` attach to that run:

- the script's resolved config (with `save_dir` = the run folder), its data digests and its
  upstream stages are merged into run.lock by one `tether.lock.update_lock` call; no second
  snapshot is taken (the owner's snapshot or source copy stands);
- its metrics go to the run's metrics.jsonl and summary.json, and the index row is refreshed
  at each History flush and when the script ends;
- `TETHER_RUN_DIR` and `TETHER_RUN_ID` are removed from this process's environment, so the
  processes it starts do not attach again; runs it starts (a batch, `@tether.parallel`, another
  `start_run`) are child runs of the attached one.

The status belongs to the owner, the process that created the run (`tether run`, `tether
launch`, a batch worker): an attached script never writes state.json. It ends, the owner sees
its exit code and records completed, failed or terminated, so a run is never `completed` while
its owner still works on it (staging outputs, retrying, other ranks). The owner also keeps
output.log; an attached process does not tee its output there again.

Several ranks (a launcher's variables say `rank`/`world size`, tether.jobenv): global rank 0 is
the writer described above. Every rank writes `ranks/<rank>/output.log` and `rank.json` (host,
pid, status, exit code), which the owner reads to name a failed rank; ranks other than 0 write
nothing else of the run, their History goes to `ranks/<rank>/metrics.jsonl` (rows reduced to
rank 0 with `reduce=True` are rank 0's to write).

`TETHER_RUN_DIR` naming a folder without a run, or a run that has finished, is a TetherError
(one line, exit 2 from a decorated main); `start_run(..., attach=False)` makes a new run.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..capture.output import OutputCapture
from ..capture.secrets import redact_config, run_policy
from ..capture.tracking import data_entries, hash_entries, mark_pending
from ..clock import now_iso
from ..context import (
    LAUNCH_ID_ENV,
    RUN_DIR_ENV,
    RUN_ID_ENV,
    consume_run_env,
    current_run,
    run_env_of,
    set_attacher,
)
from ..errors import TetherError
from ..jobenv import global_rank
from ..lock import SCHEMA, DataRecord, RunLock, StageRecord, read_lock, update_lock
from ..store import RunRecord, Store, open_store
from ..store.layout import LOCK, OUTPUT
from ..store.ranks import RankRecord, rank_dir, write_rank
from ..store.state import FINAL, hostname
from ..track.history import History
from ..track.tensorboard import rollup_into_summary
from .exits import signals_raise_terminated
from .lifecycle import Outcome, recording
from .options import RunOptions
from .prepare import upstream_stages
from .resolve import copy_config, resolve_config, set_key
from .run import Run

__all__ = ["History", "Place", "Target", "attach_run", "attached_parent", "attached_run"]

# How long a rank of `tether launch` waits for the launch's run.lock: the launch starts its
# ranks first and writes the run record while the launcher starts them up.
LAUNCH_WAIT_S = 60.0


@dataclass(frozen=True)
class Target:
    """The run this process was started for, as its environment names it."""

    run_dir: Path
    run_id: str | None
    runs_root: str | None


@dataclass(frozen=True)
class Place:
    """Where this process stands among the processes working for the run."""

    rank: int = 0
    world_size: int = 1
    ranked: bool = False  # several ranks (or a launch): keep ranks/<rank>/

    @property
    def writer(self) -> bool:
        """Global rank 0 writes the run's own files."""
        return self.rank == 0


def target(environ: dict[str, str] | None = None) -> Target | None:
    """The run named by `TETHER_RUN_DIR` (and `TETHER_RUN_ID`, `TETHER_RUNS`), or None."""
    found = run_env_of(environ)
    if found is None:
        return None
    return Target(
        Path(os.path.expanduser(found[RUN_DIR_ENV])).absolute(),
        found.get(RUN_ID_ENV),
        found.get("TETHER_RUNS"),
    )


def place() -> Place:
    rank, world = global_rank(os.environ)
    return Place(rank, world, world > 1 or bool(os.environ.get(LAUNCH_ID_ENV)))


def _wait_for_launch(t: Target) -> None:
    """A rank of `tether launch` may start before the launch has written run.lock."""
    if not t.run_id or os.environ.get(LAUNCH_ID_ENV) != t.run_id:
        return
    deadline = time.monotonic() + LAUNCH_WAIT_S
    while not (t.run_dir / LOCK).is_file() and time.monotonic() < deadline:
        time.sleep(0.05)


def open_target(t: Target) -> tuple[Store, RunRecord]:
    """The store and record of the run to attach to; TetherError when there is no such run or
    it has finished."""
    _wait_for_launch(t)
    if not (t.run_dir / LOCK).is_file():
        raise TetherError(
            f"{RUN_DIR_ENV}={t.run_dir}: no run there (no run.lock)",
            f"unset {RUN_DIR_ENV} to make a new run",
        )
    store = open_store(t.runs_root)
    record = store.load_dir(t.run_dir)
    if t.run_id and record.id != t.run_id:
        raise TetherError(
            f"{RUN_DIR_ENV}={t.run_dir} holds run {record.id}, not {RUN_ID_ENV}={t.run_id}",
            "unset both to make a new run",
        )
    if record.state.status in FINAL:
        raise TetherError(
            f"{RUN_DIR_ENV}={t.run_dir}: run {record.id[:13]} ({record.name}) is "
            f"{record.state.status}",
            f"a finished run takes no more processes; unset {RUN_DIR_ENV} "
            "(tether.open_run adds metrics to a finished run)",
        )
    return store, record


# -- the run.lock update ----------------------------------------------------------------------
def merge_into_lock(
    run_dir: Path, config: dict[str, Any], data: list[DataRecord], stages: list[StageRecord]
) -> RunLock:
    """The attached script's config, data and stages into run.lock: one locked update."""

    def mutate(lock: RunLock) -> RunLock:
        lock.schema = SCHEMA
        lock.config = config
        for entry in data:
            same = [
                i for i, d in enumerate(lock.data) if (d.path, d.key) == (entry.path, entry.key)
            ]
            if same:
                lock.data[same[0]] = entry
            else:
                lock.data.append(entry)
        for stage in stages:
            same = [i for i, s in enumerate(lock.stages) if s.name == stage.name]
            if same:
                lock.stages[same[0]] = stage
            else:
                lock.stages.append(stage)
        return lock

    return update_lock(run_dir, mutate)


# -- attaching with a config: start_run, @tether.experiment -----------------------------------
def attach_run(
    t: Target,
    cfg: Any,
    opts: RunOptions,
    *,
    on_error: Callable[[BaseException], None] | None = None,
) -> Iterator[Run]:
    """The body of `start_run` in a process started for a run (a generator for
    contextlib.contextmanager): attach, yield the Run, record this process's part."""
    store, record = open_target(t)
    consume_run_env()
    where = place()
    cfg = copy_config(cfg)
    if where.writer:
        container, collected = resolve_config(cfg, str(store.root))
        set_key(cfg, container, "save_dir", str(record.dir))
        stages, folders = upstream_stages(store, opts, cfg, container, collected)
        entries = data_entries(container, opts.data_keys, [*opts.data_paths, *collected.tracked])
        background = opts.background_hash
        if background:
            mark_pending(entries)
        else:
            hash_entries(entries)
        recorded = redact_config(container, run_policy(opts.secrets))  # the code keeps cfg
        with store.changing(record, "lock"):
            record.lock = merge_into_lock(record.dir, recorded, entries, stages)
        if background and entries:
            # heavy: blake3 and the hash walker, only for a background hash
            from ..capture.datahash.background import hash_data_background  # noqa: PLC0415

            hash_data_background(record.dir, [e.path for e in entries])
    else:
        # Rank 0 records the config; this rank resolves its own copy and changes nothing.
        container, _ = resolve_config(cfg, str(store.root))
        set_key(cfg, container, "save_dir", str(record.dir))
        folders = {st.name: store.run_dir(st.run) for st in record.lock.stages}
    run = Run(store, record, cfg, folders)
    run.attached = True
    if not where.writer:
        run.rank_dir = rank_dir(record.dir, where.rank)
    if opts.label:
        run.set_label(opts.label)
    if opts.tags:
        run.add_tag(*opts.tags)
    yield from attached_lifecycle(store, record, run, where, on_error)


def attached_lifecycle(
    store: Store,
    record: RunRecord,
    run: Run,
    where: Place,
    on_error: Callable[[BaseException], None] | None,
) -> Iterator[Run]:
    """Yield the attached run as the current run; state.json stays the owner's."""
    capture, rank = None, None
    if where.ranked:
        folder = rank_dir(record.dir, where.rank)
        folder.mkdir(parents=True, exist_ok=True)
        capture = OutputCapture(folder / OUTPUT)
        capture.start()
        rank = RankRecord(where.rank, where.world_size, hostname(), os.getpid(), started=now_iso())
        write_rank(record.dir, rank)
    outcome = Outcome()
    with signals_raise_terminated() as disarm:
        try:
            with recording(run, capture, on_error, outcome, disarm):
                yield run
        finally:
            status, exit_code, error = outcome.status, outcome.exit_code, outcome.error
            try:
                run._close(status)  # flush and close its History: metrics, summary, index row
                if where.writer:
                    rollup_into_summary(store, record)
            finally:
                if capture is not None:
                    capture.stop()
                if rank is not None:
                    rank.status, rank.exit_code, rank.error = status, exit_code, error
                    rank.stopped = now_iso()
                    write_rank(record.dir, rank)
                if where.writer:
                    with contextlib.suppress(TetherError, OSError):
                        store.refresh(record)
                store.index.close()


# -- attaching without a config: History(), open_run() ----------------------------------------
_bare: Run | None = None  # the run a History or open_run() of this process attached to


def attached_run() -> Run | None:
    """The run this process was started for, attached on first use (its metrics only: no
    config is merged); None when no run contract variables are set. `tether.History()` finds
    it through `tether.context.current_or_attached_run`."""
    global _bare
    if _bare is not None:
        core = _bare._history_core
        if core is not None and core.closed:
            # Closed (open_run's block ended): a new History starts from the files as they are.
            _bare._history_core = None
            with contextlib.suppress(TetherError, OSError):
                _bare.record = _bare.store.load_dir(_bare.dir)
        return _bare
    t = target()
    if t is None:
        return None
    store, record = open_target(t)
    consume_run_env()
    where = place()
    stages = {st.name: store.run_dir(st.run) for st in record.lock.stages}
    run = Run(store, record, dict(record.lock.config), stages)
    run.attached = True
    if not where.writer:
        run.rank_dir = rank_dir(record.dir, where.rank)
    _bare = run
    return run


def attached_parent() -> str | None:
    """The parent of a run this process starts: the run it attached to, or the run its
    environment names (a run started with `attach=False` there is a child of that one)."""
    run = current_run()
    if run is not None and getattr(run, "attached", False):
        return str(run.id)
    if _bare is not None:
        return _bare.id
    t = target()
    if t is None:
        return None
    if t.run_id:
        return t.run_id
    try:
        return read_lock(t.run_dir).id
    except TetherError:
        return None


set_attacher(attached_run)
