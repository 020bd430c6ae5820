"""Running a launch: `tether launch`'s job as a run in the store.

`run_launch(spec, argv)` runs the argv built from a resolved spec (tether.distributed.resolver,
.launchers) as a run (op `launch`): output streamed to the console and output.log (with
`[rank]` prefixes if asked), an idle-output watchdog, retries with exponential backoff, and
`launch.json` (command, hosts, each attempt's exit code and duration, outcome) in the run
folder and wherever `json_out` says. Its exit code is the job's (124 when the watchdog stopped
it, as with timeout(1)). The job is a `tether.process.Child`: its own process group, SIGTERM to
stop it, SIGKILL after the grace period. The lines tether prints about a launch are made here
too (`message`, `start_line`, `end_line`), so the CLI and the runner say the same.
"""

from __future__ import annotations

import functools
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .. import git
from ..capture.secrets import SecretPolicy, redact_argv, run_policy
from ..clock import now_iso
from ..context import LAUNCH_ID_ENV, run_env
from ..errors import TetherError
from ..fsio import atomic_write_json
from ..ids import new_id
from ..process import Child, exit_code, write_console
from ..workspace import resolve_runs_root
from .launchers import LAUNCHERS
from .mpi import Labeller
from .resolver import job_path
from .spec import LaunchSpec

IDLE_EXIT = 124  # exit code when the watchdog stops a silent job (as timeout(1) does)
MAX_BACKOFF_S = 300.0
LAUNCH_JSON = "launch.json"
PREFIX = "tether: launch: "
LAUNCHER_HINT = "is the launcher installed and on PATH? `tether doctor` checks"


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


# -- what tether says about a launch ---------------------------------------------------------
def display(argv: list[str]) -> str:
    return shlex.join(argv)


def message(text: str) -> str:
    """A line tether prints about a launch: `tether: launch: <text>`."""
    return PREFIX + text


def start_line(argv: list[str]) -> str:
    return message(f"$ {display(argv)}")


def end_line(result: LaunchResult) -> str | None:
    """What to say when the launch did not complete (None when it did)."""
    if result.outcome == "completed":
        return None
    where = f"; see {result.run_dir}/{LAUNCH_JSON}" if result.run_dir else ""
    return message(f"{result.outcome} (exit {result.exit_code}){where}")


def _say(text: str, stream: IO[Any]) -> None:
    print(message(text), file=stream, flush=True)


# -- the ranks' environment and launch.json ---------------------------------------------------


def child_env(
    spec: LaunchSpec, base: Mapping[str, str], run_id: str, run_dir: Path, runs_root: Path
) -> dict[str, str]:
    """The ranks' environment: the caller's, with this interpreter's bin/ first on PATH (so
    `python` is the one tether runs in, as with `tether run`), the spec's variables, the run
    contract of the launch run (tether.context.run_env: a decorated script, `start_run` or
    `History` in a rank attaches to it, global rank 0 as its writer) and TETHER_LAUNCH_ID
    naming it too."""
    env = dict(base)
    for key in ("TETHER_RUN_ID_FILE", "TETHER_REPRODUCE_CONFIG", "TETHER_NEEDED"):
        env.pop(key, None)  # meant for this tether, not for the ranks
    env["PATH"] = job_path(env)
    env.update(spec.env)
    env.update(run_env(run_dir, run_id, runs_root))
    env[LAUNCH_ID_ENV] = run_id
    # Python ranks print as they go (into a pipe they would buffer for KBs): the output streams,
    # and the idle watchdog sees a live job. A value the user set stays.
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


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
    ranks: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The content of launch.json (secrets on the command lines redacted)."""
    failed = [a.attempt for a in attempts if a.outcome not in ("completed", "running")]
    argv = recorded_argv(argv)
    return {
        "schema": 1,
        "run": run_id,
        "run_dir": run_dir,
        "outcome": outcome,
        "exit_code": exit_code,
        "command": argv,
        "display": display(argv),
        "user_command": recorded_argv(spec.command),
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
        "ranks": ranks or [],  # what each attached rank recorded (ranks/<rank>/rank.json)
    }


@functools.cache
def _secrets() -> SecretPolicy:
    return run_policy()  # the same for every record of this process: read once


def recorded_argv(argv: list[str]) -> list[str]:
    """A command line as the records show it: secret values redacted (capture.secrets)."""
    return redact_argv(argv, _secrets(), declarations=False)


def write_launch_json(record: dict[str, Any], paths: list[Path]) -> None:
    for path in paths:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Atomic (a reader sees the old file or the new one), not fsynced: readers are on
            # this machine, and state.json already holds the outcome durably.
            atomic_write_json(path, record, durable=False)
        except OSError as exc:
            print(message(f"cannot write {path}: {exc.strerror}"), file=sys.stderr)


def write_dry_run(spec: LaunchSpec, argv: list[str], path: str, template: str | None) -> None:
    """launch.json of `tether launch --dry-run --json-out PATH`: the command, no attempts."""
    record = launch_record(spec, argv, [], "dry-run", None, None, None, 0.0, template)
    write_launch_json(record, [Path(path).expanduser().absolute()])


# -- running ----------------------------------------------------------------------------------
class _Output:
    """One pipe of the job: to the console and output.log, relabelled `[rank] line` when a
    labeller is given (--rank-prefix)."""

    def __init__(
        self, name: str, console: IO[Any], log: Any, labeller: Labeller | None, lock: Any
    ) -> None:
        self.name, self.console, self.log = name, console, log
        self.labeller, self.lock = labeller, lock

    def _emit(self, text: str) -> None:
        write_console(self.console, text, None, self.lock)
        self.log.write(self.name, text)

    def feed(self, data: bytes, text: str) -> None:
        if self.labeller is not None:
            text = self.labeller.feed(text)
        if text:
            self._emit(text)

    def close(self, text: str) -> None:
        if self.labeller is not None:
            text = self.labeller.feed(text) + self.labeller.flush()
        if text:
            self._emit(text)


class Attempts:
    """Runs argv up to 1 + retries times, with backoff, recording each attempt.

    `begin()` starts the first attempt (so the job can start while the run record is being
    written); `finish()` waits for it and runs the retries; `abort()` stops a running job
    (Ctrl-C, SIGTERM, an error while recording). `on_change(attempts)` is called when waiting
    starts, when a failed attempt is to be retried, when a retry starts and on an abort; the
    end of the last attempt is the caller's to record, with the outcome (one write, not two,
    after the job's exit)."""

    def __init__(
        self,
        argv: list[str],
        env: dict[str, str],
        log: Any,
        *,
        labels: Callable[[], Labeller] | None = None,
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
        self.job: Child | None = None
        self._t0 = 0.0
        self._console_lock = threading.Lock()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self.attempts)

    def _start(self) -> None:
        number = len(self.attempts) + 1
        self.attempts.append(Attempt(number, now_iso()))
        self.log.write(
            "tether",
            f"$ {display(recorded_argv(self.argv))}  (attempt {number} of {self.retries + 1})\n",
        )
        self.job = Child(self.argv, self._output, env=self.env, hint=LAUNCHER_HINT)
        self._t0 = time.monotonic()
        self.job.start()

    def _output(self, name: str) -> _Output:
        """The sink of one pipe, with a labeller of its own (--rank-prefix)."""
        console = (self.stdout or sys.stdout) if name == "stdout" else (self.stderr or sys.stderr)
        labeller = self.labels() if self.labels is not None else None
        return _Output(name, console, self.log, labeller, self._console_lock)

    def begin(self) -> None:
        self._start()

    def _wait(self) -> str:
        assert self.job is not None
        attempt = self.attempts[-1]
        code, idle = self.job.wait(idle_timeout=self.idle_timeout)
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
                break  # the caller records the end (it knows the outcome and the ranks)
            self._changed()
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
        job.stop()  # SIGTERM, not SIGINT even for Ctrl-C: srun takes one SIGINT as "status?"
        job.drain(timeout=1.0)
        attempt = self.attempts[-1]
        if attempt.outcome == "running":
            attempt.outcome = "terminated"
            attempt.duration_s = time.monotonic() - self._t0
            attempt.message = f"{type(exc).__name__}: {exc}".rstrip(": ")
            if job.returncode is not None:
                attempt.exit_code = exit_code(job.returncode)
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
    recorded: Callable[[], None] | None = None,
) -> LaunchResult:
    """Run `argv` (built from the resolved `spec`) as a run named `launch` in the store.

    The run's id is fixed first and the job starts at once (its output held in memory for a
    moment); the run record (run.lock, state, index, source snapshot) is written while the
    launcher starts its ranks, so a launch costs little more than the launcher itself.
    launch.json is rewritten at each change: start, each attempt's end, the outcome.
    `recorded()` is called once the run record is written, before the job is waited for.
    """
    t_start = time.monotonic()
    snap = _snapshot_wanted(snapshot)
    early = None
    if snap:
        from ..capture.snapshot import EarlySnapshot  # noqa: PLC0415 (the run record loads after the ranks start)
        from ..session.options import SnapshotOptions  # noqa: PLC0415

        early = EarlySnapshot.start(SnapshotOptions(True, repos=[str(Path.cwd())]))
    preset = early or _PresetId(new_id())
    result = LaunchResult(1, "failed", run_id=preset.run_id)
    status: dict[str, Any] = {"outcome": "running", "code": None, "paths": [], "ranks": []}
    runs_root = resolve_runs_root(runs_dir)
    run_dir = runs_root / preset.run_id  # Store.run_dir: the folder start_run makes below

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
            status["ranks"],
        )
        write_launch_json(record, status["paths"])

    labels = None
    if spec.rank_prefix and spec.launcher in LAUNCHERS:
        launcher = LAUNCHERS[spec.launcher]()
        labels = functools.partial(launcher.labeller, spec)
    log = _PendingLog()
    runner = Attempts(
        argv,
        child_env(spec, os.environ if env is None else env, preset.run_id, run_dir, runs_root),
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
        "command": recorded_argv(list(spec.command)),
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
        "launcher_args": recorded_argv(list(spec.extra_args)),
    }
    if json_out:
        status["paths"] = [Path(json_out).expanduser().absolute()]
    previous = _catch_sigterm()
    try:
        runner.begin()
        # Only now the store and the rest of tether load, while the launcher starts up.
        from ..capture.output import LogFile  # noqa: PLC0415 (the run record loads after the ranks start)
        from ..session.exits import Exited  # noqa: PLC0415
        from ..session.options import SnapshotOptions  # noqa: PLC0415
        from ..session.start import start_run  # noqa: PLC0415
        from ..store.layout import OUTPUT  # noqa: PLC0415
        from ..store.ranks import failed_rank, read_ranks  # noqa: PLC0415

        try:
            with start_run(
                config,
                name="launch",
                runs_dir=str(runs_root),
                flags=config,  # the launch's settings are its flags
                attach=False,  # a launch makes its run; its ranks attach to it
                # Outside git the preset only fixes the id: "on", with no sources to record.
                snapshot=early.opts if early is not None else SnapshotOptions(True),
                label=label,
                tags=tags,
                capture_output=False,
                command=command or ["tether", "launch", "--", *spec.command],
                early_snapshot=preset,  # type: ignore[arg-type]
            ) as run:
                if run.id != preset.run_id or run.dir != run_dir:
                    raise TetherError(f"launch run {run.dir} differs from {run_dir}")
                result.run_dir = str(run.dir)
                log.attach(LogFile(run.dir / OUTPUT))
                status["paths"] = [run.dir / LAUNCH_JSON, *status["paths"]]
                if recorded is not None:
                    recorded()
                code, outcome, attempts = runner.finish()
                result.exit_code, result.outcome, result.attempts = code, outcome, attempts
                ranks = read_ranks(run.dir)
                status.update(outcome=outcome, code=code, ranks=[r.to_dict() for r in ranks])
                save(attempts)
                if code:
                    blame = failed_rank(ranks)
                    if blame is None:
                        raise SystemExit(code)
                    runner.say(blame.describe())
                    raise Exited(code, blame.describe())
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
    in_git = git.find_top(here) is not None
    if snapshot and not in_git:
        raise TetherError("--snapshot needs the working folder to be inside a git repository")
    if snapshot is False or not in_git:
        return False
    return git.available()
