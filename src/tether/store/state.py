"""state.json: the mutable status of a run, whether its process is still alive, and its attempts.

A run may be worked on by more than one process start: a batch task requeued by Slurm (submitit's
checkpoint) or rerun by PBS continues its run, and so does `tether run --restart RUN`. Each start
is one `Attempt` (host, pid, scheduler job id, start, stop, exit code, how it ended) in the
run's `attempts`; `started` stays the first attempt's start, `stopped` the last one's stop.
A state.json written before attempts existed reads with none.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..clock import iso_from_timestamp, now_iso
from ..fsio import atomic_write_json
from .layout import METRICS, STATE

# The status values of a run, and the one place their subsets are written.
STATUSES = ("pending", "queued", "running", "completed", "failed", "terminated", "unknown")
BUSY = ("pending", "queued", "running")  # not done yet: leave it alone (delete, sync, stop)
LIVE = ("pending", "running")  # a process on some host should be alive for it
FINAL = ("completed", "failed", "terminated")  # written once, by the run's end
FINISHED = (*FINAL, "unknown")  # no process will write to it again
IN_FLIGHT = ("queued", "running")  # a scheduler job may hold it (`tether runs` reconciles)

# The job this process runs in: (scheduler, variable); Slurm array tasks read as `JOB_TASK`,
# the id squeue shows for them and keeps across requeues.
SCHEDULER_JOB_VARS = (("slurm", "SLURM_JOB_ID"), ("pbs", "PBS_JOBID"))


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


def sql_status(status: Any, host: Any, pid: Any, proc_start: Any) -> Any:
    """The status `--where` sees (SQLite function `tether_status`): `unknown` for a live run
    whose process is gone from this host, as `tether runs` shows it."""
    if status not in LIVE or not isinstance(pid, int) or not pid or host != hostname():
        return status
    return (
        status if pid_alive(pid, proc_start if isinstance(proc_start, int) else None) else "unknown"
    )


def scheduler_job(environ: dict[str, str] | None = None) -> tuple[str | None, str | None]:
    """(scheduler, job id) of the batch job this process runs in; (None, None) outside one."""
    env = os.environ if environ is None else environ
    array, task = env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return "slurm", f"{array}_{task}"
    for scheduler, var in SCHEDULER_JOB_VARS:
        if env.get(var):
            return scheduler, env[var]
    return None, None


@dataclass
class Attempt:
    """One process start of a run: where, in which scheduler job, when, and how it ended."""

    host: str | None = None
    pid: int | None = None
    job_id: str | None = None
    scheduler: str | None = None
    start: str | None = None
    stop: str | None = None  # None while the attempt runs
    exit_code: int | None = None
    status: str | None = None  # how the attempt ended: completed, failed, terminated, ...
    error: str | None = None

    @classmethod
    def from_dict(cls, raw: Any) -> Attempt | None:
        if not isinstance(raw, dict):
            return None
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


@dataclass
class RunState:
    """state.json: where a run is in its life (status, process, times, exit code and attempts)."""

    status: str = "pending"
    pid: int | None = None
    host: str | None = None
    started: str | None = None
    stopped: str | None = None
    exit_code: int | None = None
    proc_start: int | None = None
    updated: str | None = None
    error: str | None = None
    attempts: list[Attempt] = field(default_factory=list)

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

    def end(self, run_dir: Path | None = None) -> str | None:
        """When the run stopped, for its duration: `stopped`, or for a run shown as `unknown`
        (its process died without a word) its last sign of life: the latest of `updated`, its
        start and its metrics file's last write. None while it runs."""
        if self.stopped:
            return self.stopped
        if self.effective_status() != "unknown":
            return None
        times = [t for t in (self.started, self.updated) if t]
        if run_dir is not None:
            try:
                times.append(iso_from_timestamp(os.stat(Path(run_dir) / METRICS).st_mtime))
            except OSError:
                pass
        return max(times) if times else None

    def to_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: its deep copy costs more than the whole write of a child run.
        out = dict(vars(self))
        out["attempts"] = [dict(vars(a)) for a in self.attempts]
        return out

    def copy(self) -> RunState:
        return RunState.from_dict(self.to_dict())

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunState:
        known = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in raw.items() if k in known}
        attempts = fields.pop("attempts", None)
        state = cls(**fields)
        if isinstance(attempts, list):
            state.attempts = [a for a in map(Attempt.from_dict, attempts) if a is not None]
        return state

    @property
    def open_attempt(self) -> Attempt | None:
        """The attempt still running (not stopped), if any."""
        last = self.attempts[-1] if self.attempts else None
        return last if last is not None and last.stop is None else None


def start_attempt(previous: RunState | None = None, *, status: str = "running") -> RunState:
    """The state of a run whose process starts now, in this process: `status` (running), this
    host and pid, and one more attempt after `previous`'s. An attempt `previous` left open (its
    process died without a word) is closed first, as `unknown`."""
    pid = os.getpid()
    now = now_iso()
    attempts = [dataclasses.replace(a) for a in previous.attempts] if previous else []
    if previous is not None and not attempts and previous.started:
        # It ran before attempts were recorded: its state says how that one went.
        attempts.append(
            Attempt(
                host=previous.host,
                pid=previous.pid,
                start=previous.started,
                stop=previous.stopped,
                exit_code=previous.exit_code,
                status=previous.status if previous.stopped else None,
                error=previous.error,
            )
        )
    if attempts and attempts[-1].stop is None:
        stale = attempts[-1]
        stale.stop = (previous.updated if previous else None) or now
        stale.status = "unknown"
        stale.error = stale.error or "its process ended without recording how"
    scheduler, job_id = scheduler_job()
    host = hostname()
    attempts.append(Attempt(host=host, pid=pid, job_id=job_id, scheduler=scheduler, start=now))
    return RunState(
        status=status,
        pid=pid,
        host=host,
        started=(previous.started if previous and previous.started else now),
        proc_start=_own_start(pid),
        attempts=attempts,
    )


_own: tuple[int, int | None] | None = None  # (pid, its start time): read once per process


def _own_start(pid: int) -> int | None:
    """This process's start time, read from /proc once (a batch worker starts thousands of
    attempts); a forked child has another pid and reads its own."""
    global _own
    if _own is None or _own[0] != pid:
        _own = (pid, proc_start_time(pid))
    return _own[1]


def end_attempt(
    state: RunState,
    status: str | None = None,
    exit_code: int | None = None,
    error: str | None = None,
    stop: str | None = None,
) -> None:
    """Close the open attempt: how it ended (by default, as the run's state says)."""
    attempt = state.open_attempt
    if attempt is None:
        return
    attempt.stop = stop or state.stopped or now_iso()
    attempt.status = status or state.status
    attempt.exit_code = exit_code if exit_code is not None else state.exit_code
    attempt.error = error if error is not None else state.error


def write_state(run_dir: Path, state: RunState) -> None:
    """Atomic always; fsynced only for a final status. pending and running are superseded within
    moments, and after a crash a missing or older state.json reads as `unknown` anyway."""
    state.updated = now_iso()
    if state.status not in LIVE:
        end_attempt(state)  # the run's end (or hand-back) is its last attempt's end too
    atomic_write_json(run_dir / STATE, state.to_dict(), durable=state.status in FINAL)


def read_state(run_dir: Path) -> RunState:
    try:
        with open(run_dir / STATE, encoding="utf-8") as fh:
            return RunState.from_dict(json.load(fh))
    except FileNotFoundError:
        return RunState(status="unknown")
    except (ValueError, TypeError):
        return RunState(status="unknown", error="state.json unreadable")
