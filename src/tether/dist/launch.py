"""`tether launch`: templates, command assembly, and running the job.

Three steps, each usable alone:

1. `apply_template(spec, name)` merges a shipped (or user) TOML template under the user's flags;
2. `resolve(spec, env)` picks the scheduler plug-in, reads the hosts (hostfile, Slurm node list,
   PBS nodefile), does the rank arithmetic, detects the MPI flavour from `mpiexec --version`,
   and notes root and cores; `scheduler.build(spec)` then gives the argv, a pure function of the
   resolved spec;
3. `run_launch(...)` runs that argv as a run in the store (op `launch`): output streamed to the
   console and output.log (with `[rank]` prefixes if asked), an idle-output watchdog, retries
   with exponential backoff, and `launch.json` (command, hosts, each attempt's exit code and
   duration, outcome) in the run folder and wherever `json_out` says. Its exit code is the
   job's (124 when the watchdog stopped it, as with timeout(1)).
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar

from ..errors import TetherError
from .spec import LaunchSpec

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
TEMPLATE_KEYS = (
    "description",
    "scheduler",
    "launcher",
    "mpi",
    "ppn",
    "cpu-bind",
    "args",
    "env",
    "forward",
)
RDZV_PORT = 29400  # torchrun's own default c10d port
IDLE_EXIT = 124  # exit code when the watchdog stops a silent job (as timeout(1) does)
STOP_GRACE_S = 5.0  # after SIGTERM to the job's process group, before SIGKILL
MAX_BACKOFF_S = 300.0
LAUNCH_JSON = "launch.json"
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")


# -- templates --------------------------------------------------------------------------------
def _toml() -> Any:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    return tomllib


def template_names() -> list[str]:
    return sorted(p.stem for p in TEMPLATES_DIR.glob("*.toml"))


def template_path(name: str) -> Path:
    """A shipped template by name, or a TOML file by path."""
    if name.endswith(".toml") or os.sep in name:
        path = Path(name).expanduser()
        if not path.is_file():
            raise TetherError(f"template file {name} does not exist")
        return path
    path = TEMPLATES_DIR / f"{name}.toml"
    if not path.is_file():
        from ..errors import did_you_mean

        hint = did_you_mean(name, template_names())
        raise TetherError(
            f"no launch template {name!r}",
            (f"did you mean {hint!r}? " if hint else "")
            + "see `tether launch --list-templates`, or give a path to a .toml file",
        )
    return path


def load_template(name: str) -> dict[str, Any]:
    path = template_path(name)
    try:
        data: dict[str, Any] = _toml().loads(path.read_text(encoding="utf-8"))
    except Exception as exc:
        raise TetherError(f"template {path}: {exc}")
    unknown = sorted(set(data) - set(TEMPLATE_KEYS))
    if unknown:
        raise TetherError(
            f"template {path}: unknown key {unknown[0]!r}",
            f"known keys: {', '.join(TEMPLATE_KEYS)}",
        )
    types: dict[str, type | tuple[type, ...]] = {
        "description": str,
        "scheduler": str,
        "launcher": str,
        "mpi": str,
        "ppn": int,
        "cpu-bind": str,
        "args": list,
        "env": dict,
        "forward": list,
    }
    for key, value in data.items():
        if not isinstance(value, types[key]) or isinstance(value, bool):
            raise TetherError(f"template {path}: {key} must be a {types[key].__name__}")  # type: ignore[union-attr]
    return data


def apply_template(spec: LaunchSpec, name: str) -> LaunchSpec:
    """The template's values under the user's: a flag the user gave wins; launcher args from
    the template come first; env merges with the user's values winning."""
    t = load_template(name)
    if "mpi" in t and t["mpi"] not in _flavour_names():
        raise TetherError(f"template {name}: mpi {t['mpi']!r} is not one of {_flavour_names()}")
    return spec.replace(
        launcher=spec.launcher or t.get("launcher"),
        mpi=spec.mpi or t.get("mpi"),
        ppn=spec.ppn if spec.ppn is not None else _template_ppn(spec, t),
        cpu_bind=spec.cpu_bind or t.get("cpu-bind"),
        extra_args=[*(str(a) for a in t.get("args", [])), *spec.extra_args],
        env={**{k: str(v) for k, v in t.get("env", {}).items()}, **spec.env},
        forward=list(dict.fromkeys([*(str(f) for f in t.get("forward", [])), *spec.forward])),
    )


def _template_ppn(spec: LaunchSpec, t: dict[str, Any]) -> int | None:
    ppn = t.get("ppn")
    if ppn is None:
        return None
    # -n with --nhosts already fixes the ranks per host: the template's default steps aside.
    if spec.nprocs is not None and spec.nhosts is not None:
        return None
    return int(ppn)


def template_summaries() -> list[tuple[str, str]]:
    return [(n, str(load_template(n).get("description", ""))) for n in template_names()]


def _flavour_names() -> list[str]:
    from .mpi import FLAVOURS

    return list(FLAVOURS)


# -- command assembly -------------------------------------------------------------------------
class Launcher:
    """Builds the argv of one launcher program for a resolved spec."""

    name: ClassVar[str]

    def argv(self, spec: LaunchSpec) -> list[str]:
        raise NotImplementedError

    def relabel(self, spec: LaunchSpec, line: str) -> str | None:
        return None

    def labeller(self, spec: LaunchSpec) -> Any:
        """Rebuilds `[rank] line` from the launcher's labelled output (--rank-prefix)."""
        from .mpi import LineLabeller

        return LineLabeller(lambda line: self.relabel(spec, line))


class Mpiexec(Launcher):
    name = "mpiexec"

    def argv(self, spec: LaunchSpec) -> list[str]:
        from .mpi import flavour

        if not spec.flavour:
            raise TetherError("the MPI flavour is not known; resolve the spec first")
        return flavour(spec.flavour).argv(spec)

    def relabel(self, spec: LaunchSpec, line: str) -> str | None:
        from .mpi import flavour

        return flavour(spec.flavour).relabel(line) if spec.flavour else None

    def labeller(self, spec: LaunchSpec) -> Any:
        from .mpi import flavour

        return flavour(spec.flavour).labeller() if spec.flavour else super().labeller(spec)


class Srun(Launcher):
    name = "srun"
    _label = re.compile(r"\s*(\d+): ?")

    def argv(self, spec: LaunchSpec) -> list[str]:
        argv = [
            "srun",
            f"--nodes={spec.nhosts}",
            f"--ntasks={spec.nprocs}",
            f"--ntasks-per-node={spec.ppn}",
        ]
        if spec.name_hosts or spec.hostfile_arg:
            argv.append(f"--nodelist={','.join(spec.hosts)}")
        if spec.cpu_bind:
            argv.append(f"--cpu-bind={spec.cpu_bind}")
        if spec.rank_prefix:
            argv.append("--label")
        return [*argv, *spec.extra_args, *spec.command]

    def relabel(self, spec: LaunchSpec, line: str) -> str | None:
        m = self._label.match(line)
        return f"[{m.group(1)}] {line[m.end() :]}" if m else None


_PYTHON = re.compile(r"^python(\d+(\.\d+)?)?$")


class Torchrun(Launcher):
    """One torchrun per host. On one host: `--standalone`. On several: the scheduler's own
    launcher starts one torchrun per host (`spec.fanout`), meeting at a c10d rendezvous on the
    first host."""

    name = "torchrun"
    _label = re.compile(r"\[[A-Za-z_]*(\d+)\]:")

    def argv(self, spec: LaunchSpec) -> list[str]:
        n, ppn, nhosts = spec.nprocs or 1, spec.ppn or 1, spec.nhosts or 1
        if n != ppn * nhosts:
            raise TetherError(
                f"torchrun starts the same number of ranks on every host: -n {n} is not "
                f"-ppn {ppn} x --nhosts {nhosts} = {ppn * nhosts}",
                f"give -n {ppn * nhosts}, or use --launcher mpiexec",
            )
        if spec.cpu_bind:
            raise TetherError(
                "--cpu-bind does not apply to torchrun", "use --launcher mpiexec or srun"
            )
        inner = ["torchrun"]
        if nhosts == 1:
            inner += ["--standalone", "--nnodes=1"]
        else:
            job = spec.job_id or "tether"
            inner += [
                f"--nnodes={nhosts}",
                "--rdzv-backend=c10d",
                f"--rdzv-endpoint={spec.hosts[0]}:{RDZV_PORT}",
                f"--rdzv-id={job}",
            ]
        inner.append(f"--nproc-per-node={ppn}")
        if spec.rank_prefix:
            inner += ["--tee=3"]
        inner += [*spec.extra_args, *self.program(spec.command)]
        if nhosts == 1:
            return inner
        if not spec.fanout or spec.fanout == "torchrun":
            raise TetherError("torchrun on several hosts needs mpiexec or srun to start it")
        outer = spec.replace(
            launcher=spec.fanout,
            nprocs=nhosts,
            ppn=1,
            command=inner,
            extra_args=[],
            rank_prefix=False,
            cpu_bind=None,
        )
        return LAUNCHERS[spec.fanout]().argv(outer)

    @staticmethod
    def program(command: list[str]) -> list[str]:
        """torchrun runs a script with its own Python: `python train.py a` -> `train.py a`,
        `python -m pkg` -> `-m pkg`; anything else runs as is (--no-python)."""
        if len(command) >= 2 and _PYTHON.match(os.path.basename(command[0])):
            if command[1] == "-m" and len(command) >= 3:
                return command[1:]
            if not command[1].startswith("-"):
                return command[1:]
        return ["--no-python", *command]

    def relabel(self, spec: LaunchSpec, line: str) -> str | None:
        m = self._label.match(line)
        return f"[{m.group(1)}] {line[m.end() :]}" if m else None


LAUNCHERS: dict[str, type[Launcher]] = {c.name: c for c in (Mpiexec, Srun, Torchrun)}


def build_command(spec: LaunchSpec) -> list[str]:
    """The argv for a resolved spec with the launcher it names (what `Scheduler.build` does
    unless a plug-in spells its own)."""
    if not spec.resolved or not spec.launcher:
        raise TetherError("build_command needs a resolved spec (tether.dist.launch.resolve)")
    return LAUNCHERS[spec.launcher]().argv(spec)


# -- resolving --------------------------------------------------------------------------------
def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def resolve(
    spec: LaunchSpec,
    env: Mapping[str, str] | None = None,
    *,
    scheduler: Any = None,
    detect_mpi: Callable[..., Any] | None = None,
    as_root: bool | None = None,
    cores: int | None = None,
) -> tuple[LaunchSpec, Any]:
    """(resolved spec, scheduler plug-in). `env` defaults to os.environ; the keyword arguments
    replace facts of this machine (for tests and dry runs elsewhere)."""
    from . import schedulers
    from .hostfile import read_hostfile
    from .schedulers.local import this_host

    env = os.environ if env is None else env
    sched = scheduler or schedulers.select(env, spec.scheduler)
    hostfile_arg: str | None
    if spec.hostfile:
        parsed = read_hostfile(spec.hostfile)
        all_hosts, slots, hostfile_arg = parsed.hosts, parsed.slots, spec.hostfile
        values = set(slots.values()) if slots else set()
        hint = values.pop() if len(values) == 1 else None
    else:
        all_hosts = list(sched.hosts(env))
        hostfile_arg = sched.hostfile(env)
        slots = sched.slots(env)
        hint = sched.ranks_per_host(env)
    if not all_hosts:
        all_hosts = [this_host()]
    n, ppn, nhosts = _counts(spec, len(all_hosts), hint, slots)
    hosts = all_hosts[:nhosts]
    subset = nhosts < len(all_hosts)
    launcher = spec.launcher or sched.default_launcher
    fanout = None
    if launcher == "torchrun" and nhosts > 1:
        fanout = sched.default_launcher if sched.default_launcher != "torchrun" else "mpiexec"
    flavour = None
    if "mpiexec" in (launcher, fanout):
        flavour = _flavour(spec, env, detect_mpi)
    here = {this_host(), *LOCAL_NAMES}
    resolved = spec.replace(
        nprocs=n,
        ppn=ppn,
        nhosts=nhosts,
        launcher=launcher,
        resolved=True,
        scheduler_name=getattr(sched, "name", None) or type(sched).__name__.lower(),
        job_id=sched.job_id(env),
        hosts=hosts,
        slots={h: slots[h] for h in hosts} if slots else None,
        hostfile_arg=None if subset else hostfile_arg,
        name_hosts=subset,
        flavour=flavour,
        as_root=_is_root() if as_root is None else as_root,
        cores=_cores() if cores is None else cores,
        local=all(h in here for h in hosts),
        forward=[f for f in spec.forward if f in env or f in spec.env],
        fanout=fanout,
    )
    return resolved, sched


def _counts(
    spec: LaunchSpec, available: int, hint: int | None, slots: dict[str, int] | None
) -> tuple[int, int, int]:
    from .spec import counts

    return counts(spec, available, hint, slots)


def _flavour(
    spec: LaunchSpec, env: Mapping[str, str], detect_mpi: Callable[..., Any] | None
) -> str:
    from . import mpi

    # The same PATH the job gets (this Python's bin/ first): a venv may hold its own mpiexec
    # (the mpich and impi-rt wheels install one), and that is the one that will run.
    found = (detect_mpi or mpi.detect)("mpiexec", {**env, "PATH": _job_path(env)})
    if found.flavour:
        return str(found.flavour)
    if spec.mpi:
        return spec.mpi
    raise TetherError(
        f"cannot tell which MPI runs the job: {found.error}",
        "install one (Debian: apt install openmpi-bin), give --mpi "
        + "|".join(mpi.FLAVOURS)
        + " for a dry run, or use --launcher srun|torchrun",
    )


# -- running ----------------------------------------------------------------------------------
@dataclass
class Attempt:
    attempt: int
    started: str
    exit_code: int | None = None
    duration_s: float = 0.0
    outcome: str = "running"  # completed | failed | idle-timeout | terminated
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "started": self.started,
            "exit_code": self.exit_code,
            "duration_s": round(self.duration_s, 3),
            "outcome": self.outcome,
            "message": self.message,
        }


@dataclass
class LaunchResult:
    exit_code: int
    outcome: str
    attempts: list[Attempt] = field(default_factory=list)
    run_id: str | None = None
    run_dir: str | None = None


def display(argv: list[str]) -> str:
    return shlex.join(argv)


def child_env(spec: LaunchSpec, base: Mapping[str, str], run_id: str) -> dict[str, str]:
    """The ranks' environment: the caller's, with this interpreter's bin/ first on PATH (so
    `python` is the one tether runs in, as with `tether run`), the spec's variables, and
    TETHER_LAUNCH_ID naming the launch run (`tether.open_run(id)` finds its folder)."""
    env = dict(base)
    for key in ("TETHER_RUN_ID_FILE", "TETHER_REPRODUCE_CONFIG", "TETHER_NEEDED"):
        env.pop(key, None)  # meant for this tether, not for the ranks
    env["PATH"] = _job_path(env)
    env.update(spec.env)
    env["TETHER_LAUNCH_ID"] = run_id
    # Python ranks print as they go (into a pipe they would buffer for KBs): the output streams,
    # and the idle watchdog sees a live job. A value the user set stays.
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _job_path(env: Mapping[str, str]) -> str:
    """PATH with this Python's bin/ first, as the ranks (and the launcher) get it."""
    bin_dir = str(Path(sys.executable).parent)
    path = env.get("PATH", "")
    if path.split(os.pathsep)[0] == bin_dir:
        return path
    return bin_dir + (os.pathsep + path if path else "")


def launch_record(
    spec: LaunchSpec,
    argv: list[str],
    attempts: list[Attempt],
    outcome: str,
    exit_code: int | None,
    run_id: str | None,
    run_dir: str | None,
    duration_s: float,
    template: str | None = None,
) -> dict[str, Any]:
    """The content of launch.json."""
    failed = [a.attempt for a in attempts if a.outcome not in ("completed", "running")]
    return {
        "schema": 1,
        "run": run_id,
        "run_dir": run_dir,
        "outcome": outcome,
        "exit_code": exit_code,
        "command": argv,
        "display": display(argv),
        "user_command": spec.command,
        "launcher": spec.launcher,
        "mpi": spec.flavour,
        "scheduler": spec.scheduler_name,
        "job_id": spec.job_id,
        "template": template,
        "hosts": spec.hosts,
        "nprocs": spec.nprocs,
        "ppn": spec.ppn,
        "nhosts": spec.nhosts,
        "attempts": [a.as_dict() for a in attempts],
        "failed_attempts": failed,
        "duration_s": round(duration_s, 3),
    }


def write_launch_json(record: dict[str, Any], paths: list[Path]) -> None:
    from ..fsio import atomic_write_json

    for path in paths:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Atomic (a reader sees the old file or the new one), not fsynced: readers are on
            # this machine, and state.json already holds the outcome durably.
            atomic_write_json(path, record, durable=False)
        except OSError as exc:
            print(f"tether: launch: cannot write {path}: {exc.strerror}", file=sys.stderr)


def _now_iso() -> str:
    """UTC time as the store writes it (without importing the store before the job starts)."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


def _say(text: str, stream: IO[Any]) -> None:
    print(f"tether: launch: {text}", file=stream, flush=True)


class _Job:
    """One attempt: the process (its own process group), its output pumps, the watchdog."""

    def __init__(
        self,
        argv: list[str],
        env: dict[str, str],
        log: Any,
        labels: Callable[[], Any] | None,
        stdout: IO[Any],
        stderr: IO[Any],
    ) -> None:
        self.argv = argv
        self.env = env
        self.log = log
        self.labels = labels  # makes one labeller per pipe (--rank-prefix), or None
        self.streams = {"stdout": stdout, "stderr": stderr}
        self.last_output = time.monotonic()
        self.console_lock = threading.Lock()
        self.proc: subprocess.Popen[bytes] | None = None
        self.pumps: list[threading.Thread] = []

    def start(self) -> None:
        try:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own process group: the watchdog stops it whole
            )
        except OSError as exc:
            raise TetherError(
                f"cannot start {self.argv[0]!r}: {exc.strerror}",
                "is the launcher installed and on PATH? `tether doctor` checks",
            )
        self.last_output = time.monotonic()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        for name, pipe in (("stdout", self.proc.stdout), ("stderr", self.proc.stderr)):
            t = threading.Thread(target=self._pump, args=(pipe, name), daemon=True)
            t.start()
            self.pumps.append(t)

    def _emit(self, name: str, text: str) -> None:
        console = self.streams[name]
        with self.console_lock:
            try:
                console.write(text)
                console.flush()
            except (OSError, ValueError):
                pass  # a closed console must not stop the log
        self.log.write(name, text)

    def _pump(self, pipe: IO[bytes], name: str) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        labeller = self.labels() if self.labels is not None else None
        fd = pipe.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            self.last_output = time.monotonic()
            text = decoder.decode(chunk)
            if labeller is not None:
                text = labeller.feed(text)
            if text:
                self._emit(name, text)
        rest = decoder.decode(b"", final=True)
        if labeller is not None:
            rest = labeller.feed(rest) + labeller.flush()
        if rest:
            self._emit(name, rest)
        with contextlib.suppress(OSError):
            pipe.close()

    def wait(self, idle_timeout: float | None) -> tuple[int, bool]:
        """(exit code, stopped by the watchdog). 128+N when signal N ended it."""
        proc = self.proc
        assert proc is not None
        idle = False
        if not idle_timeout:
            raw = proc.wait()
        else:
            while True:
                left = idle_timeout - (time.monotonic() - self.last_output)
                if left <= 0:
                    idle = True
                    self.stop()
                    raw = proc.wait()
                    break
                try:
                    raw = proc.wait(timeout=min(left + 0.01, 1.0))
                    break
                except subprocess.TimeoutExpired:
                    continue
        self.drain()
        return (raw if raw >= 0 else 128 - raw), idle

    def stop(self) -> None:
        """SIGTERM to the job's process group, SIGKILL after a grace period."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        for sig, grace in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, None)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                continue

    def drain(self, timeout: float = 5.0) -> None:
        for t in self.pumps:
            t.join(timeout=timeout)


class Attempts:
    """Runs argv up to 1 + retries times, with backoff, recording each attempt.

    `begin()` starts the first attempt (so the job can start while the run record is being
    written); `finish()` waits for it and runs the retries; `abort()` stops a running job
    (Ctrl-C, SIGTERM, an error while recording)."""

    def __init__(
        self,
        argv: list[str],
        env: dict[str, str],
        log: Any,
        *,
        labels: Callable[[], Any] | None = None,
        idle_timeout: float | None = None,
        retries: int = 0,
        backoff: float = 2.0,
        on_change: Callable[[list[Attempt]], None] | None = None,
        say: Callable[[str], None] | None = None,
        stdout: IO[Any] | None = None,
        stderr: IO[Any] | None = None,
    ) -> None:
        if retries < 0:
            raise TetherError(f"--retries {retries} is negative")
        if idle_timeout is not None and idle_timeout <= 0:
            raise TetherError(f"--idle-timeout {idle_timeout:g} must be more than 0 seconds")
        if backoff < 0:
            raise TetherError(f"--backoff {backoff:g} is negative")
        self.argv, self.env, self.log = argv, env, log
        self.labels, self.idle_timeout = labels, idle_timeout
        self.retries, self.backoff = retries, backoff
        self.on_change = on_change
        self.stdout, self.stderr = stdout, stderr
        self.say = say or (lambda text: _say(text, self.stderr or sys.stderr))
        self.attempts: list[Attempt] = []
        self.job: _Job | None = None
        self._t0 = 0.0

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self.attempts)

    def _start(self) -> None:
        number = len(self.attempts) + 1
        self.attempts.append(Attempt(number, _now_iso()))
        self.log.write(
            "tether", f"$ {display(self.argv)}  (attempt {number} of {self.retries + 1})\n"
        )
        self.job = _Job(
            self.argv,
            self.env,
            self.log,
            self.labels,
            self.stdout or sys.stdout,
            self.stderr or sys.stderr,
        )
        self._t0 = time.monotonic()
        self.job.start()

    def begin(self) -> None:
        self._start()

    def _wait(self) -> str:
        assert self.job is not None
        attempt = self.attempts[-1]
        code, idle = self.job.wait(self.idle_timeout)
        attempt.exit_code = code
        attempt.duration_s = time.monotonic() - self._t0
        if idle:
            attempt.outcome = "idle-timeout"
            attempt.message = f"no output for {self.idle_timeout:g} s; stopped (exit {code})"
            self.say(
                f"no output for {self.idle_timeout:g} s (--idle-timeout): stopped the job "
                f"(attempt {attempt.attempt})"
            )
        elif code == 0:
            attempt.outcome = "completed"
        else:
            attempt.outcome, attempt.message = "failed", f"exit {code}"
        self.log.write("tether", f"attempt {attempt.attempt}: {attempt.outcome} (exit {code})\n")
        self._changed()
        return attempt.outcome

    def finish(self) -> tuple[int, str, list[Attempt]]:
        """(exit code, outcome, attempts); the exit code is the job's, 124 after the watchdog."""
        if self.job is None:
            self._start()
        self._changed()
        while True:
            outcome = self._wait()
            number = len(self.attempts)
            if outcome == "completed" or number > self.retries:
                break
            delay = min(MAX_BACKOFF_S, self.backoff * 2 ** (number - 1))
            self.say(
                f"attempt {number} of {self.retries + 1} {outcome} ({self.attempts[-1].message})"
                f"; retrying in {delay:g} s"
            )
            time.sleep(delay)
            self._start()
            self._changed()
        last = self.attempts[-1]
        if last.outcome != "completed" and number > 1:
            self.say(f"all {number} attempts failed")
        code = IDLE_EXIT if last.outcome == "idle-timeout" else (last.exit_code or 0)
        return code, last.outcome, self.attempts

    def abort(self, exc: BaseException) -> None:
        """Stop the running job and record the attempt as terminated."""
        job = self.job
        if job is None or not self.attempts:
            return
        job.stop()
        job.drain(timeout=1.0)
        attempt = self.attempts[-1]
        if attempt.outcome == "running":
            attempt.outcome = "terminated"
            attempt.duration_s = time.monotonic() - self._t0
            attempt.message = f"{type(exc).__name__}: {exc}".rstrip(": ")
            rc = job.proc.returncode if job.proc is not None else None
            if rc is not None:
                attempt.exit_code = rc if rc >= 0 else 128 - rc
            self._changed()


def run_launch(
    spec: LaunchSpec,
    argv: list[str],
    *,
    runs_dir: str | None = None,
    command: list[str] | None = None,
    json_out: str | None = None,
    idle_timeout: float | None = None,
    retries: int = 0,
    backoff: float = 2.0,
    template: str | None = None,
    label: str | None = None,
    tags: tuple[str, ...] = (),
    snapshot: bool | None = None,
    env: Mapping[str, str] | None = None,
    stdout: IO[Any] | None = None,
    stderr: IO[Any] | None = None,
) -> LaunchResult:
    """Run `argv` (built from the resolved `spec`) as a run named `launch` in the store.

    The run's id is fixed first and the job starts at once (its output held in memory for a
    moment); the run record (run.lock, state, index, source snapshot) is written while the
    launcher starts its ranks, so a launch costs little more than the launcher itself.
    launch.json is rewritten at each change: start, each attempt's end, the outcome.
    """
    from ..ids import new_id

    t_start = time.monotonic()
    snap = _snapshot_wanted(snapshot)
    early = None
    if snap:
        from ..options import SnapshotOptions
        from ..snapshotting import EarlySnapshot

        early = EarlySnapshot.start(SnapshotOptions(True, repos=[str(Path.cwd())]))
    preset = early or _PresetId(new_id())
    result = LaunchResult(1, "failed", run_id=preset.run_id)
    status: dict[str, Any] = {"outcome": "running", "code": None, "paths": []}

    def save(attempts: list[Attempt]) -> None:
        if not status["paths"]:
            return  # the run folder does not exist yet
        record = launch_record(
            spec,
            argv,
            attempts,
            status["outcome"],
            status["code"],
            result.run_id,
            result.run_dir,
            time.monotonic() - t_start,
            template,
        )
        write_launch_json(record, status["paths"])

    labels = None
    if spec.rank_prefix and spec.launcher in LAUNCHERS:
        launcher = LAUNCHERS[spec.launcher]()
        labels = functools.partial(launcher.labeller, spec)
    log = _PendingLog()
    runner = Attempts(
        argv,
        child_env(spec, os.environ if env is None else env, preset.run_id),
        log,
        labels=labels,
        idle_timeout=idle_timeout,
        retries=retries,
        backoff=backoff,
        on_change=save,
        stdout=stdout,
        stderr=stderr,
    )
    config = {
        "command": list(spec.command),
        "launcher": spec.launcher,
        "mpi": spec.flavour,
        "scheduler": spec.scheduler_name,
        "nprocs": spec.nprocs,
        "ppn": spec.ppn,
        "nhosts": spec.nhosts,
        "hostfile": spec.hostfile,
        "cpu_bind": spec.cpu_bind,
        "template": template,
        "retries": retries,
        "idle_timeout": idle_timeout,
        "launcher_args": list(spec.extra_args),
    }
    if json_out:
        status["paths"] = [Path(json_out).expanduser().absolute()]
    previous = _catch_sigterm()
    try:
        runner.begin()
        # Only now the store and the rest of tether load, while the launcher starts up.
        from ..api import start_run
        from ..capture.output import LogFile
        from ..options import SnapshotOptions
        from ..store.layout import OUTPUT

        try:
            with start_run(
                config,
                name="launch",
                runs_dir=runs_dir,
                # Outside git the preset only fixes the id: "on", with no sources to record.
                snapshot=early.opts if early is not None else SnapshotOptions(True),
                label=label,
                tags=tags,
                capture_output=False,
                command=command or ["tether", "launch", "--", *spec.command],
                early_snapshot=preset,  # type: ignore[arg-type]
            ) as run:
                if run.id != preset.run_id:
                    raise TetherError(f"launch run id {run.id} differs from {preset.run_id}")
                result.run_dir = str(run.dir)
                log.attach(LogFile(run.dir / OUTPUT))
                status["paths"] = [run.dir / LAUNCH_JSON, *status["paths"]]
                code, outcome, attempts = runner.finish()
                result.exit_code, result.outcome, result.attempts = code, outcome, attempts
                status.update(outcome=outcome, code=code)
                save(attempts)
                if code:
                    raise SystemExit(code)
        except SystemExit as exc:
            if exc.code != result.exit_code or result.exit_code == 0:
                raise
    except BaseException as exc:
        runner.abort(exc)
        outcome, code = _interrupted(exc)
        if status["outcome"] == "running":
            status.update(outcome=outcome, code=code)
            save(runner.attempts)
        if outcome != "terminated":
            raise
        # Ctrl-C or SIGTERM: the job is stopped and recorded; the caller gets 130 or 143.
        result.exit_code, result.outcome, result.attempts = code, outcome, runner.attempts
    finally:
        log.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return result


class _Stopped(BaseException):
    """SIGTERM before the run record takes over signal handling (start_run raises its own)."""


def _catch_sigterm() -> Any:
    """Turn SIGTERM into an exception, so the job is stopped and recorded; returns the handler
    to restore (None off the main thread, where signals cannot be caught)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: Any) -> None:
        raise _Stopped(f"received signal {signum}")

    return signal.signal(signal.SIGTERM, handler)


def _interrupted(exc: BaseException) -> tuple[str, int]:
    if isinstance(exc, KeyboardInterrupt):
        return "terminated", 130
    if isinstance(exc, _Stopped) or type(exc).__name__ == "Terminated":  # tether.api's
        return "terminated", 143
    if isinstance(exc, TetherError):
        return "error", exc.exit_code
    return "error", 1


class _PresetId:
    """Stands in for an early snapshot outside git: it only fixes the run's id in advance,
    so the job can start (with TETHER_LAUNCH_ID set) before start_run writes the record."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    def usable(self, opts: Any) -> bool:
        return True

    def result(self) -> list[Any]:
        return []


class _PendingLog:
    """output.log before the run folder exists: lines are kept (with their time) until
    `attach` hands them, and everything after, to the real log."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: list[tuple[str, str]] = []
        self._log: Any = None

    def write(self, stream: str, text: str) -> None:
        with self._lock:
            if self._log is None:
                self._held.append((stream, text))
                return
        self._log.write(stream, text)

    def attach(self, log: Any) -> None:
        with self._lock:
            for stream, text in self._held:
                log.write(stream, text)
            self._held.clear()
            self._log = log

    def close(self) -> None:
        with self._lock:
            if self._log is not None:
                self._log.close()


def _snapshot_wanted(snapshot: bool | None) -> bool:
    """Snapshot the working folder's git repository when there is one (None: automatic);
    outside git a launch records no source (a copy of the folder could be anything)."""
    here = Path.cwd()
    in_git = any((folder / ".git").exists() for folder in (here, *here.parents))
    if snapshot and not in_git:
        raise TetherError("--snapshot needs the working folder to be inside a git repository")
    if snapshot is False or not in_git:
        return False
    from ..capture.source import in_git as git_usable  # git itself installed, ceilings

    return git_usable(here)
