"""Runs from Python: `with tether.start_run(cfg) as run:`, and the call of a decorated main.

Both create the same record: run folder, run.lock (resolved config, command, environment,
source snapshot, data digests, upstream stages; session.prepare), state.json moving pending ->
running -> completed/failed/terminated and output teed into output.log (session.lifecycle),
and an index row kept in step. In a process tether started for a run (`TETHER_RUN_DIR` set),
both attach to that run instead (session.attach); `attach=False` makes a new run all the same,
a child of that one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from ..capture.snapshot import EarlySnapshot
from ..context import current_run, run_env_of
from ..debug import post_mortem
from ..store import open_store
from .exits import Skipped
from .lifecycle import announce, lifecycle
from .naming import function_run_name
from .options import RunOptions, SnapshotOptions
from .prepare import drop_snapshot_ref, prepare
from .resolve import copy_config
from .run import Run


@contextlib.contextmanager
def start_run(
    cfg: Any = None,
    *,
    name: str | None = None,
    runs_dir: str | os.PathLike[str] | None = None,
    snapshot: bool | SnapshotOptions = True,
    data: list[str] | tuple[str, ...] = (),
    track: list[str] | tuple[str, ...] = (),
    stages: dict[str, str | None] | None = None,
    background_hash: bool = False,
    needed: bool = False,
    label: str | None = None,
    tags: tuple[str, ...] | list[str] = (),
    parent: str | None = None,
    capture_output: bool = True,
    command: list[str] | None = None,
    on_error: Callable[[BaseException], None] | None = None,
    options: RunOptions | None = None,
    early_snapshot: EarlySnapshot | None = None,
    attach: bool = True,
    flags: dict[str, Any] | None = None,
) -> Iterator[Run]:
    """Create a run for `cfg` (a DictConfig or dict) and record how it ends.

    `save_dir` in the config, when set, is the run folder; when absent or `???` tether fills it
    with the run folder so the code can write its outputs there. With `needed=True`, a completed
    run with the same inputs raises `Skipped` (its id in `.twin`) instead of running again.

    In a process tether started for a run (`TETHER_RUN_DIR` set: an operation's exec, a rank
    of `tether launch`, a batch trial) the block attaches to that run instead of creating one
    (tether.session.attach): the config, data and stages join its run.lock, the metrics its
    files; its status stays its owner's. `attach=False` creates a new run all the same, whose
    parent is that run. `flags`: an operation's flag values (run.lock `flags`).
    """
    if attach and run_env_of() is not None:
        # A process tether started for a run: the attaching machinery (History, the rank
        # records) loads only there.
        from .attach import attach_run  # noqa: PLC0415
        from .attach import target as attach_target  # noqa: PLC0415

        found = attach_target()
        if found is not None:
            own = options or RunOptions(
                data_keys=list(data),
                data_paths=list(track),
                background_hash=background_hash,
                stages=dict(stages or {}),
                label=label,
                tags=list(tags),
            )
            yield from attach_run(found, cfg, own, on_error=on_error)
            return
    if parent is None:
        # A run started inside an attached one (or inside any run's process) is its child.
        parent = _attached_parent()
    opts = options or RunOptions(
        name=name,
        snapshot=snapshot if isinstance(snapshot, SnapshotOptions) else SnapshotOptions(snapshot),
        data_keys=list(data),
        data_paths=list(track),
        background_hash=background_hash,
        stages=dict(stages or {}),
        needed=needed,
        label=label,
        tags=list(tags),
    )
    if flags is not None:
        opts = dataclasses.replace(opts, flags=dict(flags))
    store = open_store(runs_dir)
    store.ensure_root()
    # The run fills in save_dir and upstream folders on its own copy: the caller's config stays
    # as it was, so one dict can start many runs.
    cfg = copy_config(cfg)
    lock, explicit_dir, folders, pending = prepare(
        cfg, opts, store, command, parent, early_snapshot
    )
    if opts.needed:
        twin = store.index.completed_twin(lock.digest())
        if twin is not None:
            drop_snapshot_ref(lock)
            raise Skipped(twin)
    record = store.create(lock, run_dir=explicit_dir)
    run = Run(store, record, cfg, folders)
    if opts.label:
        run.set_label(opts.label)
    if opts.tags:
        run.add_tag(*opts.tags)
    if pending:
        # heavy: blake3 and the hash walker, only for a background hash
        from ..capture.datahash.background import hash_data_background  # noqa: PLC0415

        hash_data_background(record.dir, [e.path for e in pending])
    announce(record)
    yield from lifecycle(store, record, run, capture_output, on_error)


# -- the call of a decorated function ---------------------------------------------------------
def run_for_call(
    func: Callable[..., Any],
    opts: RunOptions,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    runs_dir: str | os.PathLike[str] | None = None,
    debug: bool = True,
    new_run: bool = False,
    early: EarlySnapshot | None = None,
) -> Any:
    """Call `func(cfg[, run])` inside a run (or inside the current one, if any)."""
    cfg = args[0] if args else None
    wants_run = len(inspect.signature(func).parameters) >= 2
    active = current_run()
    if active is not None and not new_run:
        # Already inside a run (a decorator used alone, under experiment): just call.
        return func(*args, **kwargs) if not wants_run else func(cfg, active)
    opts = dataclasses.replace(opts, name=opts.name or function_run_name(func))
    if os.environ.get("TETHER_NEEDED") == "1":
        opts.needed = True
    try:
        with start_run(
            cfg,
            runs_dir=runs_dir,
            options=opts,
            on_error=post_mortem if debug else None,
            early_snapshot=early,
        ) as run:
            return func(run.cfg, run) if wants_run else func(run.cfg, *args[1:], **kwargs)
    except Skipped as skip:
        print(
            f"tether: skipped: run {skip.twin} already completed with the same config, "
            "code and data (--needed)",
            file=sys.stderr,
        )
        return None


def _attached_parent() -> str | None:
    """The run this process attached to or was started for, if any. session.attach is loaded
    only where that can be: a process with the run variables, or one that attached already
    (`History()`, `open_run()`, a run's block)."""
    if run_env_of() is None and "tether.session.attach" not in sys.modules:
        return None
    from .attach import attached_parent  # noqa: PLC0415

    return attached_parent()
