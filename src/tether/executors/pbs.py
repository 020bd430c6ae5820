"""`pbs`: the batch's workers as a PBS Pro / OpenPBS job array (`qsub`, `#PBS -J`).

The settings come from the same YAML file as Slurm's (`--slurm-config FILE`), read the PBS way:
`partition` is the queue, `time` the walltime, `cpus_per_task`/`gpus_per_task`/`mem` the
`select` chunk, `array_parallelism` the `%N` limit of subjobs running at once, `additional`
extra `#PBS` lines (`-l filesystems=home`), `setup` shell lines before the worker starts.

The job script runs `python -m tether.executors.pbs WORKER.pkl`: the pickled serial worker pulls
tasks from the pool in the parent run folder. The script is rerunnable (`#PBS -r y`); on SIGTERM
(preemption, `qdel`) the worker hands its task back to the pool before it exits, and a rerun
subjob carries on with the undone tasks, continuing the interrupted task's run. `job_states`
tells `tether runs` (tether.batches.reconcile) what became of jobs whose runs still say queued
or running.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

from ..errors import ConfigError, TetherError, did_you_mean
from .base import Executor, Handle
from .slurm import JobState, minutes, read_yaml_options
from .worker import Worker

KEYS = (
    "partition",
    "time",
    "timeout_min",
    "cpus_per_task",
    "gpus_per_task",
    "mem",
    "mem_gb",
    "array_parallelism",
    "workers",
    "additional",
    "setup",
    "account",
    "job_name",
    "python",
    "lease_s",
)
WORKER_FILE = "worker.pkl"
# qstat's one-letter job states, in words; F (finished) and X (a finished subjob) are refined
# by the exit status (`ended`).
STATE_WORDS = {
    "Q": "QUEUED",
    "H": "HELD",
    "W": "WAITING",
    "T": "MOVING",
    "M": "MOVED",
    "R": "RUNNING",
    "B": "RUNNING",
    "E": "EXITING",
    "S": "SUSPENDED",
    "U": "SUSPENDED",
}


def walltime(total_minutes: int) -> str:
    return f"{total_minutes // 60:02d}:{total_minutes % 60:02d}:00"


def job_script(
    *,
    n_workers: int,
    folder: Path,
    options: dict[str, Any],
    python: str,
    workdir: Path,
    where: str = "pbs config",
) -> str:
    """The text of the qsub script for `n_workers` workers (an array when more than one)."""
    name = str(options.get("job_name") or "tether")
    lines = ["#!/bin/bash", f"#PBS -N {name}"]
    if n_workers > 1:
        limit = options.get("array_parallelism")
        throttle = f"%{int(limit)}" if limit and int(limit) < n_workers else ""
        lines.append(f"#PBS -J 0-{n_workers - 1}{throttle}")
    chunk = [f"select=1:ncpus={int(options.get('cpus_per_task') or 1)}"]
    if options.get("gpus_per_task"):
        chunk.append(f"ngpus={int(options['gpus_per_task'])}")
    if options.get("mem") is not None:
        chunk.append(f"mem={str(options['mem']).lower().removesuffix('b')}b")
    elif options.get("mem_gb") is not None:
        chunk.append(f"mem={int(options['mem_gb'])}gb")
    lines.append("#PBS -l " + ":".join(chunk))
    if options.get("time") is not None or options.get("timeout_min") is not None:
        limit_min = minutes(options.get("time", options.get("timeout_min")), where)
        lines.append(f"#PBS -l walltime={walltime(limit_min)}")
    if options.get("partition"):
        lines.append(f"#PBS -q {options['partition']}")
    if options.get("account"):
        lines.append(f"#PBS -A {options['account']}")
    lines += ["#PBS -r y", f"#PBS -o {folder}/", f"#PBS -e {folder}/"]
    extra = options.get("additional") or []
    if isinstance(extra, str):
        extra = [extra]
    if isinstance(extra, dict):
        extra = [f"-l {k}={v}" for k, v in extra.items()]
    for line in extra:
        text = str(line).strip().removeprefix("#PBS").strip()
        if text:
            lines.append(f"#PBS {text}")
    lines += ["", f"cd {shlex.quote(str(workdir))}"]
    setup = options.get("setup") or []
    lines += [setup] if isinstance(setup, str) else [str(s) for s in setup]
    worker_file = shlex.quote(str(folder / WORKER_FILE))
    lines.append(f"exec {shlex.quote(python)} -m tether.executors.pbs {worker_file}")
    return "\n".join(lines) + "\n"


class PbsHandle(Handle):
    def __init__(self, job_id: str, pool: Any) -> None:
        self.job_id = job_id
        self.pool = pool
        self._done = False
        self._last = 0.0

    def done(self) -> bool:
        if self._done:
            return True
        if time.monotonic() - self._last < 2.0:
            return False
        self._last = time.monotonic()
        proc = subprocess.run(["qstat", self.job_id], capture_output=True, text=True, check=False)
        self._done = proc.returncode != 0 or " F " in proc.stdout
        return self._done

    def wait(self, timeout: float) -> None:
        time.sleep(min(timeout, 2.0))

    def cancel(self) -> None:
        subprocess.run(["qdel", "-W", "force", self.job_id], capture_output=True, check=False)

    def describe(self) -> str:
        return f"PBS job {self.job_id}"


class PbsExecutor(Executor):
    """PBS Pro / OpenPBS: a generated job-array script submitted with qsub."""

    name: ClassVar[str] = "pbs"
    scheduler: ClassVar[bool] = True
    restarts: ClassVar[int] = 0

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        where = self.source or "pbs config"
        for key in self.options:
            if key not in KEYS:
                hint = did_you_mean(str(key), list(KEYS))
                raise ConfigError(
                    f"{where}: {key!r} is not a setting the pbs executor knows"
                    + (f" (did you mean {hint!r}?)" if hint else ""),
                    "settings: " + ", ".join(KEYS),
                )
        self.lease_s = float(self.options["lease_s"]) if self.options.get("lease_s") else None

    @classmethod
    def read_options(cls, path: str) -> dict[str, Any]:
        return read_yaml_options(path, "pbs", KEYS)

    def check(self) -> None:
        if shutil.which("qsub") is None:
            raise TetherError(
                "qsub not found: PBS is not installed on this machine",
                "run the tasks here with --executor local --n-jobs N instead",
            )

    def workers_for(self, n_tasks: int) -> int:
        n = self.n_jobs or self.options.get("workers") or self.options.get("array_parallelism")
        return max(1, min(n_tasks, int(n or n_tasks)))

    def script(self, n_workers: int, folder: Path) -> str:
        return job_script(
            n_workers=n_workers,
            folder=folder,
            options=self.options,
            python=str(self.options.get("python") or sys.executable),
            workdir=Path.cwd(),
            where=self.source or "pbs config",
        )

    def start(self, worker: Worker, n_workers: int, folder: Path) -> Handle:
        import cloudpickle

        jobs = folder / "pbs"
        jobs.mkdir(parents=True, exist_ok=True)
        (jobs / WORKER_FILE).write_bytes(cloudpickle.dumps(worker.fresh()))
        script = jobs / "job.sh"
        script.write_text(self.script(n_workers, jobs), encoding="utf-8")
        proc = subprocess.run(["qsub", str(script)], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            said = (proc.stderr or proc.stdout).strip().splitlines()
            raise TetherError(
                f"qsub refused the batch's jobs: {said[-1] if said else proc.returncode}",
                f"the job script is {script}",
            )
        job_id = proc.stdout.strip()
        worker.pool.set_meta("jobs", [job_id])
        print(f"tether: submitted PBS job {job_id} ({n_workers} workers)", file=sys.stderr)
        return PbsHandle(job_id, worker.pool)


def _key(job_id: str) -> str:
    return job_id.split(".")[0]  # without the server name


def ended(status: Any) -> str:
    """A finished PBS job's state from its exit status, in Slurm's words: COMPLETED (0),
    FAILED (a non-zero exit, or PBS could not run it: negative), CANCELLED (killed by a signal:
    256 + N, as `qdel` or a preemption does)."""
    try:
        code = int(status)
    except (TypeError, ValueError):
        return "FINISHED"
    if code == 0:
        return "COMPLETED"
    return "CANCELLED" if code > 256 else "FAILED"


def job_states(ids: list[str]) -> dict[str, list[JobState]] | None:
    """For each of `ids` (a job, an array `1234[]`, a subjob `1234[5]`, with or without the
    server), the jobs PBS knows by it (`qstat -x`, finished ones included). None when qstat
    cannot be asked."""
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return {}
    try:
        proc = subprocess.run(
            ["qstat", "-x", "-t", "-f", "-F", "json", *wanted],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        jobs = json.loads(proc.stdout or "{}").get("Jobs") or {}
    except (OSError, subprocess.TimeoutExpired, ValueError, AttributeError):
        return None
    out: dict[str, list[JobState]] = {i: [] for i in wanted}
    keys = {_key(i): i for i in wanted}
    for job_id, info in jobs.items():
        if not isinstance(info, dict):
            continue
        letter = str(info.get("job_state") or "")
        final = letter in ("F", "X")
        state = ended(info.get("Exit_status")) if final else STATE_WORDS.get(letter, letter)
        reason = str(info.get("comment") or "")
        if final and info.get("Exit_status") is not None:
            reason = f"exit status {info['Exit_status']}" + (f"; {reason}" if reason else "")
        found = JobState(_key(job_id), state, reason, final)
        for key in {_key(job_id), re.sub(r"\[\d*\]", "[]", _key(job_id))}:
            if key in keys:
                out[keys[key]].append(found)
    return out


def main(argv: list[str]) -> int:
    """The job's entry point: `python -m tether.executors.pbs WORKER.pkl`."""

    if len(argv) != 1:
        print("usage: python -m tether.executors.pbs WORKER.pkl", file=sys.stderr)
        return 2
    with open(argv[0], "rb") as fh:
        worker = pickle.load(fh)

    def stop(signum: int, frame: Any) -> None:
        worker.release()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    report = worker()
    print(
        f"tether: worker {report.worker}: {report.done} done, {report.failed} failed",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main(sys.argv[1:]))
