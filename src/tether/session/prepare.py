"""Everything about a run that is known before it starts, as an unsaved run.lock: its resolved
config, command, environment, upstream stages, data digests and source snapshot."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from .. import git
from ..capture.environment import capture_environment
from ..capture.lineage import find_upstream, stage_record
from ..capture.notebook import capture_notebook
from ..capture.secrets import redact_argv, redact_config, redact_flat, run_policy
from ..capture.snapshot import EarlySnapshot, publish_snapshot, take_snapshot
from ..capture.tracking import data_entries, hash_entries, mark_pending
from ..errors import TetherError
from ..lock import DataRecord, RunLock, StageRecord
from ..store import Store
from ..store.safety import check_save_dir
from ..workspace import project_id
from .naming import default_name
from .options import RunOptions
from .replay import claim as claim_reproduction
from .resolve import MISSING_MARKS, get_key, resolve_config, set_key


def prepare(
    cfg: Any,
    opts: RunOptions,
    store: Store,
    command: list[str] | None,
    parent: str | None,
    early: EarlySnapshot | None = None,
) -> tuple[RunLock, Path | None, dict[str, Path], list[DataRecord]]:
    """(the unsaved lock, the explicit run folder (`save_dir`) if any, the upstream folders by
    stage name, the data entries left for a background hash)."""
    container, collected = resolve_config(cfg, str(store.root))
    secrets = run_policy(opts.secrets)
    explicit_dir = (
        None
        if container.get("save_dir") in MISSING_MARKS
        else Path(os.path.expanduser(str(container["save_dir"]))).absolute()
    )
    lock = store.new_lock(
        opts.name or default_name(),
        command=command if command is not None else [Path(sys.executable).name, *sys.argv],
        env=capture_environment(),
        parent=parent,
        project_id=project_id(),
    )
    if early is not None and early.usable(opts.snapshot):
        lock.id = early.run_id  # the early snapshot's commit message names this id
    if explicit_dir is not None:
        check_save_dir(explicit_dir, store.root, lock.id)  # before anything is written there
    run_dir = explicit_dir or store.run_dir(lock.id)
    set_key(cfg, container, "save_dir", str(run_dir))
    lock.stages, folders = upstream_stages(store, opts, cfg, container, collected)
    # The record holds secrets redacted; the code keeps the real values (cfg, container).
    lock.config = redact_config(container, secrets)
    lock.flags = redact_flat(opts.flags, secrets)
    lock.command = redact_argv(lock.command, secrets)  # after: the values seen above as well
    entries = data_entries(container, opts.data_keys, [*opts.data_paths, *collected.tracked])
    background = opts.background_hash and not opts.needed
    if background:
        mark_pending(entries)
    else:
        hash_entries(entries)
    lock.data = [*entries, *opts.data_records]  # records known without hashing: as given
    if opts.snapshot.enabled:
        if early is not None and early.usable(opts.snapshot):
            lock.sources = early.result()
        else:
            lock.sources = take_snapshot(lock.id, opts.snapshot, run_dir, store.root)
        for src in lock.sources:
            publish_snapshot(src, lock.id)
        lock.sources += capture_notebook(run_dir)  # started from Jupyter: its cells so far
    claim_reproduction(store, lock, folders)  # under `tether reproduce`: its inputs and layout
    return lock, explicit_dir, folders, entries if background else []


def upstream_stages(
    store: Store, opts: RunOptions, cfg: Any, container: dict[str, Any], collected: Any
) -> tuple[list[StageRecord], dict[str, Path]]:
    """The upstream runs this run consumes (by config key, by chosen id, or named by a
    `${tether.stage:...}` resolver), and their folders by stage name."""
    records, folders = [], {}
    for name, key in opts.stages.items():
        ref = get_key(container, key) if key else None
        upstream = find_upstream(store, str(ref) if ref not in MISSING_MARKS else name)
        records.append(stage_record(name, upstream))
        folders[name] = upstream.dir
        if key:
            set_key(cfg, container, key, str(upstream.dir))
    for name, run_id in opts.stage_runs.items():
        upstream = store.load(run_id)
        if upstream.status != "completed":
            raise TetherError(
                f"upstream run {run_id[:13]} ({upstream.name}) is {upstream.status}, not completed"
            )
        records.append(stage_record(name, upstream))
        folders[name] = upstream.dir
    for run_id in collected.stages.values():
        if run_id in {r.run for r in records}:
            continue
        upstream = store.load(run_id)
        records.append(stage_record(upstream.name, upstream))
        folders.setdefault(upstream.name, upstream.dir)
    return records, folders


def drop_snapshot_ref(lock: RunLock) -> None:
    """A skipped run leaves no snapshot ref behind, in any of its repositories."""
    for src in lock.sources:
        if src.commit and src.root:
            with contextlib.suppress(TetherError):
                git.run(src.root, "update-ref", "-d", git.SNAPSHOT_REF + lock.id)
