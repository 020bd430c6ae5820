"""The MLflow sync after a run: a background process, so that a run never waits for MLflow.

A run logged with the `mlflow` sink (unless it is live) sends nothing to MLflow while it runs
and never imports it. At its end, once its record is complete (final state.json, manifest:
`Sink.ended`), its process starts `python -m tether.sync.mlflow --after RUN_DIR ...` through
`tether.process.detach` and goes on; that process imports MLflow, syncs the finished run from
its files exactly as `tether mlflow sync` does (params from run.lock, every row of
metrics.jsonl, the artifacts, the final status) and records the result in summary.json under
that store (`pending` until then).

One sync of a run at a time: `.mlflow-sync.lock` in the run folder is an flock that the run's
process takes before it starts the background sync and hands to it (the same open file, so the
lock is never free in between); it is held until that sync ends. `tether mlflow sync` takes it
too: a run whose sync is in progress is skipped, or waited for with `--wait`
(`wait_for_sync`, which tests use as well).

A batch job ends by killing what its processes started (Slurm's cgroup, PBS): in one
(`SLURM_JOB_ID` or `PBS_JOBID` set) the run's process waits at its exit for the syncs it
started, at most `TETHER_MLFLOW_WAIT` seconds (default 600). A sync cut short leaves its store
`pending`, and the next `tether mlflow sync` completes it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ...context import RUN_DIR_ENV, RUN_ID_ENV
from ...process import detach
from ...store.state import SCHEDULER_JOB_VARS

SYNC_LOCK = ".mlflow-sync.lock"  # in the run folder: held while a sync of the run runs
MODULE = "tether.sync.mlflow"  # what the background process runs (`python -m`)
POLL_S = 0.05  # how often a waiting sync looks at the lock again

_started: list[subprocess.Popen[bytes]] = []


@dataclass
class Held:
    """The sync lock of one run: `acquired`, or held by `holder` (its pid, when known)."""

    acquired: bool
    holder: str = ""


def _take(fd: int, wait: float | None) -> bool:
    import fcntl  # noqa: PLC0415 (POSIX only, as the other file locks: loaded where one is taken)

    deadline = time.monotonic() + (wait or 0.0)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if wait is None or time.monotonic() >= deadline:
                return False
            time.sleep(POLL_S)


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError):
        return os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return ""


@contextlib.contextmanager
def sync_lock(run_dir: Path, wait: float | None = None) -> Iterator[Held]:
    """Hold the run's sync lock for the block; `wait`: seconds to wait while another sync holds
    it (None: not at all). A folder where the lock cannot be made is synced unlocked."""
    try:
        fd = os.open(Path(run_dir) / SYNC_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield Held(True)
        return
    try:
        if not _take(fd, wait):
            yield Held(False, _holder(fd))
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield Held(True)
    finally:
        os.close(fd)  # and the lock with it


def wait_for_sync(run_dir: Path, timeout: float) -> bool:
    """Wait until no sync of the run is in progress (at most `timeout` seconds); False when
    one still is."""
    try:
        fd = os.open(Path(run_dir) / SYNC_LOCK, os.O_RDWR)
    except FileNotFoundError:
        return True  # no sync was ever started
    except OSError:
        return True
    try:
        return _take(fd, timeout)
    finally:
        os.close(fd)


def start_sync(run_dir: Path, runs_root: Path, uri: str, experiment: str) -> int | None:
    """Start the background sync of a finished run into the store `uri`; its pid, or None when
    the lock file cannot be made (then `tether mlflow sync` does it later)."""
    try:
        fd = os.open(Path(run_dir) / SYNC_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return None
    try:
        # A sync of an earlier attempt may still run: the new one then waits for it itself.
        handed = _take(fd, None)
        argv = [
            sys.executable,
            "-m",
            MODULE,
            "--after",
            str(run_dir),
            "--runs-root",
            str(runs_root),
            "--tracking-uri",
            uri,
            "--experiment",
            experiment,
        ]
        if handed:
            argv += ["--lock-fd", str(fd)]
        env = dict(os.environ)
        # It syncs MLflow only (the run's other sinks had their turn), for this run only.
        for key in ("TETHER_SINKS", RUN_DIR_ENV, RUN_ID_ENV):
            env.pop(key, None)
        # `-m` would put the working folder first on sys.path: a folder or file named
        # `mlflow` there would shadow MLflow (Python >= 3.11 honours this).
        env["PYTHONSAFEPATH"] = "1"
        debug = os.environ.get("TETHER_DEBUG") == "1"
        proc = detach(argv, env=env, pass_fds=(fd,) if handed else (), quiet=not debug)
        if handed:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{proc.pid}\n".encode(), 0)
    finally:
        os.close(fd)  # the lock stays held: the background process has the same open file
    _started[:] = [p for p in _started if p.poll() is None]
    _started.append(proc)
    return proc.pid


def _in_batch_job() -> bool:
    return any(os.environ.get(var) for _, var in SCHEDULER_JOB_VARS)


def _wait_at_exit() -> None:
    """In a batch job, wait for the syncs this process started (the job's end kills them)."""
    running = [p for p in _started if p.poll() is None]
    if not running or not _in_batch_job():
        return
    try:
        limit = float(os.environ.get("TETHER_MLFLOW_WAIT", "600"))
    except ValueError:
        limit = 600.0
    with contextlib.suppress(Exception):
        print(
            f"tether: waiting for the MLflow sync of {len(running)} run(s) "
            f"(at most {limit:g} s: the job's end would stop it)",
            file=sys.stderr,
            flush=True,
        )
    deadline = time.monotonic() + limit
    for proc in running:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))


atexit.register(_wait_at_exit)
