"""`slurm`: the batch's workers as a Slurm job array, submitted through submitit.

    python train.py --task-to seed --slurm-config slurm.yaml

`slurm.yaml` (every key optional):

    partition: gpu            # sbatch --partition
    time: 60                  # minutes, or "HH:MM:SS" / "D-HH:MM:SS" (alias: timeout_min);
                              # default 60
    cpus_per_task: 4
    gpus_per_task: 1
    mem: 16G                  # or mem_gb: 16
    array_parallelism: 8      # worker jobs running at once (the array's %N throttle)
    workers: 8                # worker jobs in the array (default: array_parallelism, at most
                              # one per task; --n-jobs N overrides)
    additional:               # more sbatch options: "--qos=high", "#SBATCH --account=x", or a
      - --qos=high            # mapping {qos: high}
    setup: [module load cuda] # shell lines run before the worker starts
    signal_delay_s: 120       # USR2 this long before the time limit: the worker checkpoints
    max_num_timeout: 3        # requeues after a timeout (preemption requeues without limit)
    lease_s: 60               # a silent worker's task is taken over after this long

Each array job is a serial worker pulling tasks from the pool in the parent run folder. On
preemption or timeout Slurm sends USR2; submitit calls the worker's `checkpoint`, the task in
flight goes back to the pool and the job requeues itself: the requeued job runs only what is
left, continuing the interrupted task's run. The children exist from submission on with status
`queued`; workers mark them running and completed as they go. submitit's files (job scripts,
logs) are kept in `<parent>/slurm/`. `job_states` tells `tether runs` (tether.batches.reconcile)
what became of jobs whose runs still say queued or running.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..errors import ConfigError, TetherError, did_you_mean
from .base import Executor, Handle
from .worker import Worker

KEYS = {
    "partition": "the partition (queue) to submit to",
    "time": "time limit: minutes, or HH:MM:SS, or D-HH:MM:SS",
    "timeout_min": "time limit in minutes",
    "cpus_per_task": "CPUs of each worker job",
    "gpus_per_task": "GPUs of each worker job",
    "gpus_per_node": "GPUs per node",
    "mem": "memory of each worker job (16G, 4000M)",
    "mem_gb": "memory of each worker job in GB",
    "array_parallelism": "worker jobs running at once",
    "workers": "worker jobs in the array",
    "additional": "more sbatch options",
    "setup": "shell lines run before the worker",
    "qos": "quality of service",
    "account": "account to charge",
    "constraint": "node features",
    "exclude": "nodes to avoid",
    "nodelist": "nodes to use",
    "job_name": "job name",
    "comment": "job comment",
    "signal_delay_s": "seconds between USR2 and the time limit",
    "max_num_timeout": "requeues after a timeout",
    "lease_s": "seconds after which a silent worker's task is taken over",
    "python": "interpreter of the worker jobs",
}
DEFAULT_ARRAY_PARALLELISM = 256
DEFAULT_TIME_MIN = 60  # submitit's own default is 5 minutes
POLL_S = 1.0
FINAL_STATES = {
    "COMPLETED",
    "CANCELLED",
    "FAILED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "BOOT_FAIL",
    "DEADLINE",
    "PREEMPTED",
    "REVOKED",
    "SPECIAL_EXIT",
}


def read_yaml_options(path: str, kind: str, known: Any = None) -> dict[str, Any]:
    """The settings in a YAML file; an unknown one is an error with a did-you-mean."""
    known = list(known if known is not None else KEYS)
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(
            f"{kind} config {path} not found" if not p.exists() else f"{path} is not a file"
        )
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: a {kind} config is a mapping of settings (partition: ..., time: ...)"
        )
    for key in data:
        if key not in known:
            hint = did_you_mean(str(key), known)
            raise ConfigError(
                f"{path}: unknown {kind} setting {key!r}"
                + (f" (did you mean {hint!r}?)" if hint else ""),
                "settings: " + ", ".join(sorted(known)),
            )
    return dict(data)


def minutes(value: Any, where: str) -> int:
    """A time limit in minutes from 90, "90", "01:30:00", "1-00:00:00" or "30:00"."""
    if isinstance(value, bool):
        raise ConfigError(f"{where}: time must be minutes or HH:MM:SS, got {value!r}")
    if isinstance(value, (int, float)):
        if value <= 0:
            raise ConfigError(f"{where}: time must be positive, got {value!r}")
        return max(1, round(value))
    text = str(value).strip()
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text)
    if not m:
        raise ConfigError(f"{where}: time {text!r} is not minutes, HH:MM:SS or D-HH:MM:SS")
    days, a, b, c = m.groups()
    total: float
    if b is None and c is None and days is None:
        total = int(a)  # plain minutes
    elif c is None and days is None:
        total = int(a) + int(b or 0) / 60  # MM:SS
    else:
        total = int(days or 0) * 1440 + int(a) * 60 + int(b or 0) + int(c or 0) / 60
    if total <= 0:
        raise ConfigError(f"{where}: time must be positive, got {text!r}")
    return max(1, round(total + 0.49))


def sbatch_options(value: Any, where: str) -> dict[str, Any]:
    """`additional:` as submitit's additional_parameters: from a mapping or sbatch lines."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k).lstrip("-").replace("-", "_"): v for k, v in value.items()}
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ConfigError(f"{where}: additional is a list of sbatch options or a mapping")
    out: dict[str, Any] = {}
    for line in value:
        text = str(line).strip()
        text = text.removeprefix("#SBATCH").strip()
        if not text:
            continue
        if not text.startswith("-"):
            text = "--" + text
        name, eq, val = text.lstrip("-").partition("=")
        if not eq and " " in name:
            name, _, val = name.partition(" ")
        out[name.strip().replace("-", "_")] = val.strip() if (eq or val) else True
    return out


class SlurmHandle(Handle):
    def __init__(self, jobs: list[Any], pool: Any) -> None:
        self.jobs = jobs
        self.ids = sorted({str(j.job_id).split("_")[0] for j in jobs})
        self.pool = pool
        self._done = False
        self._last = 0.0
        self._gone_since: float | None = None

    def done(self) -> bool:
        if self._done:
            return True
        now = time.monotonic()
        if now - self._last < POLL_S:
            return False
        self._last = now
        alive = live_jobs(self.ids)
        if os.environ.get("TETHER_SLURM_TRACE"):
            with open(os.environ["TETHER_SLURM_TRACE"], "a") as fh:
                fh.write(f"{time.time():.2f} {alive}\n")
        if alive is None:
            return False  # squeue did not answer: ask again
        if alive:
            self._gone_since = None
            return False
        # squeue can miss a job for a moment while it is requeued: be sure.
        if self._gone_since is None:
            self._gone_since = now
            return False
        if now - self._gone_since >= 2 * POLL_S:
            self._done = True
        return self._done

    def wait(self, timeout: float) -> None:
        time.sleep(min(timeout, POLL_S))

    def cancel(self) -> None:
        if self.ids:
            subprocess.run(["scancel", *self.ids], capture_output=True, check=False)

    def errors(self) -> list[str]:
        if not self.pool.unfinished():
            return []
        out = []
        for job in self.jobs[:3]:
            try:
                err = Path(job.paths.stderr).read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            lines = [ln for ln in err.splitlines() if ln.strip() and "submitit" not in ln]
            if lines:
                out.append(f"slurm job {job.job_id}: {lines[-1].strip()}")
        return out

    def describe(self) -> str:
        return f"Slurm job {', '.join(self.ids)} ({len(self.jobs)} workers)"


@dataclass(frozen=True)
class JobState:
    """One job (or array task) as the scheduler reports it."""

    job: str  # 1234, or 1234_5 for a task of an array
    state: str  # RUNNING, PENDING, CANCELLED, ... (PBS: R, Q, F, ...)
    reason: str = ""  # the scheduler's word on it, when it gives one
    final: bool = False  # it has ended

    def describe(self, scheduler: str = "Slurm") -> str:
        said = f" ({self.reason})" if self.reason and self.reason != "None" else ""
        return f"{scheduler} job {self.job} {self.state}{said}"


def live_jobs(ids: list[str]) -> dict[str, str] | None:
    """Job (or array task) id -> state for the jobs of `ids` (job or array ids) still queued,
    running or on their way to a requeue; None when squeue cannot be asked."""
    states = job_states(ids, accounting=False)
    if states is None:
        return None
    return {j.job: j.state for jobs in states.values() for j in jobs if not j.final}


def job_states(ids: list[str], *, accounting: bool = True) -> dict[str, list[JobState]] | None:
    """For each of `ids` (a job, an array, or one task of an array: `1234`, `1234_5`), the jobs
    Slurm knows by it: from squeue (which lists ended jobs for a while, MinJobAge), else, with
    `accounting`, from sacct (when accounting is on). An id neither knows maps to []. None when
    squeue cannot be asked.

    All jobs are listed and filtered here rather than asked for by id: while an array task is
    requeued, `squeue -j` can answer "Invalid job id" for a moment; and every state is kept, so
    a job being requeued (COMPLETING, REQUEUED, then PENDING) is never missed."""
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return {}
    try:
        proc = subprocess.run(
            ["squeue", "-h", "-t", "all", "-o", "%i|%A|%F|%T|%r"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    out: dict[str, list[JobState]] = {i: [] for i in wanted}
    for line in proc.stdout.splitlines():
        parts = line.split("|")
        if len(parts) < 5:
            continue
        job, unique, array, state, reason = (p.strip() for p in parts[:5])
        found = JobState(job, state, reason, state in FINAL_STATES)
        for key in {job, unique, array}:
            if key in out:
                out[key].append(found)
    missing = [i for i, jobs in out.items() if not jobs]
    if missing and accounting:
        for known in _sacct(missing):
            for key in {known.job, known.job.split("_")[0]}:
                if key in out and known not in out[key]:
                    out[key].append(known)
    return out


def _sacct(ids: list[str]) -> list[JobState]:
    """Jobs squeue no longer lists, from the accounting database (nothing when it is off)."""
    try:
        proc = subprocess.run(
            ["sacct", "-n", "-P", "-X", "-j", ",".join(ids), "-o", "JobID,State,Reason"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    if proc.returncode != 0:
        return []
    out = []
    for line in proc.stdout.splitlines():
        parts = line.split("|")
        if len(parts) >= 2 and parts[0].strip():
            state = parts[1].split()[0] if parts[1].strip() else "UNKNOWN"  # "CANCELLED by 0"
            reason = parts[2].strip() if len(parts) > 2 else ""
            out.append(JobState(parts[0].strip(), state, reason, state in FINAL_STATES))
    return out


class SlurmExecutor(Executor):
    """Slurm through submitit: one job array of serial workers (see the module doc)."""

    name: ClassVar[str] = "slurm"
    scheduler: ClassVar[bool] = True
    restarts: ClassVar[int] = 0  # Slurm requeues preempted jobs itself

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        where = self.source or "slurm config"
        opts = self.options
        unknown = [k for k in opts if k not in KEYS]
        if unknown:
            hint = did_you_mean(unknown[0], list(KEYS))
            raise ConfigError(
                f"{where}: unknown slurm setting {unknown[0]!r}"
                + (f" (did you mean {hint!r}?)" if hint else ""),
                "settings: " + ", ".join(sorted(KEYS)),
            )
        self.params: dict[str, Any] = {}
        if "time" in opts or "timeout_min" in opts:
            self.params["time"] = minutes(opts.get("time", opts.get("timeout_min")), where)
        else:
            self.params["time"] = DEFAULT_TIME_MIN
        for key in (
            "partition",
            "cpus_per_task",
            "gpus_per_task",
            "gpus_per_node",
            "qos",
            "account",
            "constraint",
            "exclude",
            "nodelist",
            "comment",
            "signal_delay_s",
        ):
            if opts.get(key) is not None:
                self.params[key] = opts[key]
        if opts.get("mem") is not None:
            self.params["mem"] = str(opts["mem"])
        elif opts.get("mem_gb") is not None:
            self.params["mem"] = f"{int(opts['mem_gb'])}GB"
        if opts.get("setup"):
            setup = opts["setup"]
            self.params["setup"] = [setup] if isinstance(setup, str) else [str(s) for s in setup]
        extra = sbatch_options(opts.get("additional"), where)
        if extra:
            self.params["additional_parameters"] = extra
        self.params["job_name"] = str(opts.get("job_name") or "tether")
        self.parallelism = int(opts.get("array_parallelism") or DEFAULT_ARRAY_PARALLELISM)
        if self.parallelism < 1:
            raise ConfigError(f"{where}: array_parallelism must be at least 1")
        self.params["array_parallelism"] = self.parallelism
        self.workers = int(opts["workers"]) if opts.get("workers") else None
        self.max_num_timeout = int(opts.get("max_num_timeout", 3))
        self.python = opts.get("python")
        self.lease_s = float(opts["lease_s"]) if opts.get("lease_s") else None

    @classmethod
    def read_options(cls, path: str) -> dict[str, Any]:
        return read_yaml_options(path, "slurm")

    def check(self) -> None:
        if shutil.which("sbatch") is None:
            raise TetherError(
                "sbatch not found: Slurm is not installed on this machine",
                "run the tasks here with --executor local --n-jobs N instead",
            )
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise TetherError(
                "--executor slurm needs submitit, which is not installed",
                "pip install 'tether[cluster]'",
            )

    def workers_for(self, n_tasks: int) -> int:
        n = self.n_jobs or self.workers or self.parallelism
        return max(1, min(n_tasks, n))

    def start(self, worker: Worker, n_workers: int, folder: Path) -> Handle:
        import submitit

        logs = folder / "slurm"
        kwargs: dict[str, Any] = {"max_num_timeout": self.max_num_timeout}
        if self.python:
            kwargs["python"] = str(self.python)
        ex = submitit.SlurmExecutor(folder=str(logs / "%j"), **kwargs)
        try:
            ex.update_parameters(**self.params)
        except ValueError as exc:
            raise ConfigError(f"{self.source or 'slurm config'}: {str(exc).splitlines()[0]}")
        try:
            if n_workers == 1:
                jobs = [ex.submit(worker.fresh(), 0)]
            else:
                jobs = ex.map_array(worker.fresh(), list(range(n_workers)))
        except Exception as exc:
            raise self._submit_error(exc)
        handle = SlurmHandle(jobs, worker.pool)
        try:
            worker.pool.set_meta("jobs", handle.ids)
        except Exception:
            traceback.print_exc()
        print(f"tether: submitted {handle.describe()}", file=sys.stderr)
        return handle

    def _submit_error(self, exc: Exception) -> TetherError:
        text = str(exc)
        lines = [ln.strip() for ln in text.splitlines() if "sbatch" in ln or "error" in ln.lower()]
        said = next((ln for ln in lines if ln.startswith("sbatch:")), lines[-1] if lines else text)
        hint = None
        if "partition" in said.lower() and self.params.get("partition"):
            hint = (
                f"partition {self.params['partition']!r} in {self.source or 'the slurm config'}: "
                "`sinfo -s` lists this cluster's partitions"
            )
        return TetherError(f"sbatch refused the batch's jobs: {said}", hint)

    def record(self) -> dict[str, Any]:
        out = super().record()
        out["options"] = {k: v for k, v in self.options.items()}
        return out
