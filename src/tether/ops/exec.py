"""Run one trial of an operation: plan it, record it, stage its inputs, run its command.

The command runs with the run folder as its working directory, the run contract's `TETHER_RUN_DIR`,
`TETHER_RUN_ID` and `TETHER_RUNS` (tether.context.run_env: a decorated script, `start_run` or
`History` there attaches to this run, tether.session.attach), `TETHER_OP` and `TETHER_PROJECT_DIR`
set, and the Python environment tether runs in first on PATH (so `python` in `exec` is that
interpreter). run.lock holds the trial's flag values under `flags` and, until a script attaches and
records its own, the config they make under `config`. Its stdout and stderr pass through to the
console as they come and into output.log as time-stamped lines; each line is scanned for output
scalars. Ctrl-C (or SIGTERM to tether) is passed on to the command's process group; the run is
recorded `terminated`. A non-zero exit marks the run `failed` with that code.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shlex
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .. import git
from ..capture.lineage import stage_record
from ..capture.output import LogFile
from ..capture.secrets import redact_text, reveal_known, run_policy
from ..context import run_env
from ..errors import TetherError, did_you_mean
from ..lock import RunLock, update_lock
from ..process import Child, first_signal, write_console
from ..project.model import OpDef, Project
from ..session.exits import Skipped
from ..session.options import RunOptions, SnapshotOptions
from ..session.start import start_run
from ..store import Store
from ..store.layout import OUTPUT
from .flags import flag_words, is_key, value_text
from .phases import (
    AFTER_RUN,
    BEFORE_CONFIG,
    BEFORE_RUN,
    PhaseFailed,
    phase_command,
    phase_env,
    phase_names,
    shown,
)
from .scalars import Pattern, Scanner, compile_patterns
from .settle import settle
from .sourceconfig import apply_to_staged
from .staging import Staging, plan_staging, snapshot_patterns, stage

_PLACEHOLDER = re.compile(r"\{\{|\}\}|(?<!\$)\{([^{}\s]*)\}")
RECORD_EVERY_S = 0.2  # how often scalars found in the output are recorded
SHELL = "/bin/sh"
MAX_LINE = 1 << 20  # characters of an unfinished line kept for the scalar scan


@dataclass
class Plan:
    """One trial, resolved: config, command, staged inputs. Nothing is written yet."""

    project: Project
    op: OpDef
    flags: dict[str, Any]  # the flags this trial sets (dotted names), in the order given
    config: dict[str, Any]  # the op's defaults merged with `flags`, nested
    staging: Staging
    patterns: list[Pattern]
    command: list[str]  # argv (a shell string runs as [/bin/sh, -c, text])
    display: str  # the command as a user reads it

    @property
    def flag_values(self) -> dict[str, Any]:
        """Every flag's value in this trial (defaults and given), by flag name: run.lock's
        `flags`."""
        return {**self.op.defaults(), **self.flags}

    @property
    def record_command(self) -> list[str]:
        """What run.lock records as the command: the `tether run` that makes this run again."""
        return ["tether", "run", self.op.name, *flag_words(self.flags)]


@dataclass
class TrialResult:
    run_id: str | None
    status: str  # completed, failed, terminated, skipped
    exit_code: int = 0
    twin: str | None = None  # --needed: the completed run with the same inputs
    error: str | None = None


# -- config and command -----------------------------------------------------------------------
def build_config(op: OpDef, flags: dict[str, Any]) -> dict[str, Any]:
    """Defaults with the flags applied, nested on the dots of their names."""
    flat = {**op.defaults(), **flags}
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = value
    return out


def _lookup(config: dict[str, Any], key: str) -> tuple[bool, Any]:
    if key in config:
        return True, config[key]
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def fill(text: str, config: dict[str, Any], op: OpDef, *, quote: bool) -> str:
    """`{key}` placeholders filled from the config (`{{`/`}}` are literal braces); values are
    shell-quoted when the command goes through the shell."""

    def sub(m: re.Match[str]) -> str:
        whole, key = m.group(0), m.group(1)
        if whole in ("{{", "}}"):
            return whole[0]
        if not is_key(key):
            return whole  # `{print $1}` and the like are not placeholders
        found, value = _lookup(config, key)
        if not found:
            hint = did_you_mean(key, [*op.flags, "save_dir"])
            raise TetherError(
                f"{op.key_prefix}{op.name}.exec: {{{key}}} is not a flag of op {op.name!r}"
                + (f" (did you mean {{{hint}}}?)" if hint else ""),
                "write {{ and }} for literal braces",
            )
        text = value_text(value)
        return shlex.quote(text) if quote else text

    return _PLACEHOLDER.sub(sub, text)


def resolve_command(op: OpDef, config: dict[str, Any]) -> tuple[list[str], str]:
    """(argv, display) of the op's `exec` with placeholders filled."""
    if op.unavailable is not None:  # exec names other platforms only (project/validate.py)
        raise TetherError(f"ops.{op.name}.exec: {op.unavailable}", "add a command for it there")
    if isinstance(op.exec, str):
        text = fill(op.exec, config, op, quote=True).strip()
        if not text:
            raise TetherError(f"{op.key_prefix}{op.name}.exec: the command is empty")
        return [SHELL, "-c", text], text
    if not op.exec:
        raise TetherError(f"{op.key_prefix}{op.name}.exec: the command is empty")
    argv = [fill(str(a), config, op, quote=False) for a in op.exec]
    return argv, shlex.join(argv)


def plan_trial(
    project: Project,
    op: OpDef,
    flags: dict[str, Any],
    store: Store,
    staging: Staging | None = None,
) -> Plan:
    """Everything about one trial that is known before it starts (dependency errors are kept
    in `staging` for --preview to show; `check` raises them)."""
    config = build_config(op, flags)
    shown = dict(config)
    shown.setdefault("save_dir", "<run folder>")
    command, display = resolve_command(op, shown)
    where = f"{op.key_prefix}{op.name}.output-scalars"
    patterns = compile_patterns(op.output_scalars, where)
    # gage's `output-summary` and `progress` are patterns of the same kind: their matches are
    # scalars of the run (a progress line's `progress` group, e.g. `(?P<progress>\d+)%`).
    for key, extra in (("output-summary", op.output_summary), ("progress", op.progress)):
        if extra:
            patterns += compile_patterns([extra], f"{op.key_prefix}{op.name}.{key}")
    if staging is None:
        staging = plan_staging(project, op, store)
    return Plan(project, op, dict(flags), config, staging, patterns, command, display)


def check(plan: Plan) -> None:
    """Raise the first problem that would stop the trial (a missing upstream run, ...)."""
    errors = plan.staging.errors()
    if errors:
        raise errors[0]


# -- running ----------------------------------------------------------------------------------
@contextlib.contextmanager
def working_dir(path: Path) -> Iterator[None]:
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _run_options(plan: Plan, *, needed: bool, label: str | None, tags: Sequence[str]) -> Any:

    root = plan.project.root
    include, exclude = snapshot_patterns(root, plan.op.sourcecode)
    snapshot = SnapshotOptions(True, include, exclude, [str(root)] if git.in_git(root) else [])
    opts = RunOptions(
        name=plan.op.name,
        snapshot=snapshot,
        data_paths=plan.staging.data_paths,
        needed=needed,
        label=label,
        tags=list(tags),
    )
    opts.stage_runs = dict(plan.staging.stage_runs)
    opts.data_records = plan.staging.data_records  # dvcfile inputs: the .dvc file's md5s
    opts.flags = plan.flag_values
    opts.secrets = list(plan.project.secrets)
    return opts


def _ensure_stages(plan: Plan, run: Any, store: Store) -> None:
    """Record the upstream runs this trial links, if start_run chose differently (a stage with
    a `where` or a name of its own): one locked update of run.lock before the command runs."""

    wanted = plan.staging.stage_runs
    have = {s.name: s.run for s in run.record.lock.stages}
    if all(have.get(name) == run_id for name, run_id in wanted.items()):
        return
    chosen = [stage_record(name, store.load(rid)) for name, rid in wanted.items()]

    def relink(current: RunLock) -> RunLock:
        current.stages = [s for s in current.stages if s.name not in wanted] + chosen
        return current

    with store.changing(run.record, "lock"):  # announced first: a kill here leaves no lag
        run.record.lock = update_lock(run.dir, relink)
    for name, rid in wanted.items():
        run.stages[name] = store.load(rid).dir


def op_meta(plan: Plan) -> dict[str, str]:
    """What run.lock's `env.op` records of a gage operation: its `version`, the project's
    `$namespace` (`--where version = 2`, `--where namespace = demo`)."""
    meta = {}
    if plan.op.version is not None:
        meta["version"] = plan.op.version
    if plan.project.namespace is not None:
        meta["namespace"] = plan.project.namespace
    return meta


def _record_op_meta(plan: Plan, run: Any, store: Store) -> None:
    meta = op_meta(plan)
    if not meta:
        return

    def put(current: RunLock) -> RunLock:
        current.env["op"] = meta
        return current

    with store.changing(run.record, "lock"):  # announced first: a kill here leaves no lag
        run.record.lock = update_lock(run.dir, put)


def child_env(plan: Plan, run_id: str, run_dir: Path, runs_root: Path) -> dict[str, str]:
    """The command's environment: the run contract (so what it starts attaches to this run and
    makes no store of its own beside the copied tether.toml), the op and project."""
    env = dict(os.environ)
    for key in ("TETHER_RUN_ID_FILE", "TETHER_REPRODUCE_CONFIG", "TETHER_NEEDED"):
        env.pop(key, None)  # meant for this tether, not for the op's own code
    bin_dir = str(Path(sys.executable).parent)
    path = env.get("PATH", "")
    if path.split(os.pathsep)[0] != bin_dir:
        env["PATH"] = bin_dir + (os.pathsep + path if path else "")
    env.update(run_env(run_dir, run_id, runs_root))
    env.update(
        TETHER_OP=plan.op.name,
        TETHER_PROJECT_DIR=str(plan.project.root),
        PYTHONUNBUFFERED="1",
    )
    # What the command records when it attaches (its config) is redacted for the same keys.
    env.update(run_policy(plan.project.secrets).env())
    return env


def run_trial(
    plan: Plan,
    store: Store,
    *,
    label: str | None = None,
    tags: Sequence[str] = (),
    needed: bool = False,
    parent: str | None = None,
    on_start: Callable[[str], None] | None = None,
    echo: Callable[[str], None] | None = None,
) -> TrialResult:
    """Create the run, stage, execute; Ctrl-C propagates (the run is recorded terminated)."""

    check(plan)
    opts = _run_options(plan, needed=needed, label=label, tags=tags)
    result = TrialResult(None, "completed")
    with working_dir(plan.project.root):
        try:
            with start_run(
                plan.config,
                runs_dir=str(store.root),
                options=opts,
                capture_output=False,
                command=plan.record_command,
                parent=parent,
                attach=False,  # an operation makes its run; the script it runs attaches to it
            ) as run:
                result.run_id = run.id
                if on_start is not None:
                    on_start(run.id)
                _ensure_stages(plan, run, store)
                _record_op_meta(plan, run, store)
                stage(plan.staging, run.dir, store)
                env = child_env(plan, run.id, run.dir, store.root)
                _phases(plan, BEFORE_CONFIG, run.dir, env, echo)
                # config from source files: written into the run's staged copies (the secrets'
                # values, not their tokens: the script reads them)
                apply_to_staged(plan.op, plan.flag_values, run.dir, plan.project.root)
                _phases(plan, BEFORE_RUN, run.dir, env, echo)
                # run.lock's config holds the secrets redacted: the command gets the values,
                # the echo (console, output.log) the record's tokens.
                recorded = dict(run.record.lock.config)
                recorded["save_dir"] = str(run.dir)
                argv, _ = resolve_command(plan.op, reveal_known(recorded))
                _, display = resolve_command(plan.op, recorded)
                display = redact_text(display)
                if echo is not None:
                    echo(display)
                try:
                    code = execute(
                        argv,
                        display=shown("run", display) if plan.op.phases else display,
                        cwd=run.dir,
                        env=phase_env(env, run.dir, plan.project.root) if plan.op.phases else env,
                        patterns=plan.patterns,
                        log_metrics=run.log_metrics,
                    )
                    if not code:
                        _phases(plan, AFTER_RUN, run.dir, env, echo)
                    elif plan.op.phases:
                        _phase_failed("run", code)
                finally:  # before the run's end writes its manifest: the inputs themselves
                    for warning in settle(plan.staging, run.dir):
                        print(f"tether: warning: {warning}", file=sys.stderr)
                if code:
                    raise SystemExit(code)
        except Skipped as skip:
            result.status, result.twin = "skipped", skip.twin
        except SystemExit as exc:
            result.status = "failed"
            result.exit_code = exc.code if isinstance(exc.code, int) else 1
    return result


def _phases(
    plan: Plan, group: tuple[str, ...], run_dir: Path, env: dict[str, str], echo: Any
) -> None:
    """gage's exec phases of `group` (ops/phases.py), in order; the first that fails ends the
    run, failed with its exit code and its name said."""
    for name in phase_names(plan.op, group):
        argv, display = phase_command(plan.op, name)
        text = shown(name, redact_text(display))
        if echo is not None:
            echo(text)
        code = execute(
            argv,
            display=text,
            cwd=run_dir,
            env=phase_env(env, run_dir, plan.project.root),
        )
        if code:
            _phase_failed(name, code)


def _phase_failed(name: str, code: int) -> None:
    failed = PhaseFailed(name, code)
    print(f"tether: {failed}", file=sys.stderr)
    raise SystemExit(code)


def execute(
    argv: list[str],
    *,
    display: str,
    cwd: Path,
    env: dict[str, str],
    patterns: Sequence[Pattern] = (),
    log_metrics: Callable[[dict[str, Any], int | None], None] | None = None,
    stdout: IO[Any] | None = None,
    stderr: IO[Any] | None = None,
) -> int:
    """Run `argv` in `cwd`, teeing its output to the console and `cwd`/output.log; return its
    exit code (128+N when a signal N ended it)."""

    log = LogFile(cwd / OUTPUT)
    log.write("tether", f"$ {display}\n")
    # The pipe readers find the scalars; this thread records them (the run's index connection
    # belongs to it).
    found: queue.SimpleQueue[tuple[dict[str, Any], int | None]] = queue.SimpleQueue()
    scanner = Scanner(patterns, lambda values, step: found.put((values, step)))

    def record() -> None:
        while True:
            try:
                values, step = found.get_nowait()
            except queue.Empty:
                return
            if log_metrics is not None:
                try:
                    log_metrics(values, step)
                except Exception as exc:  # a metric that cannot be written must not stop the run
                    print(f"tether: output scalars: {exc}", file=sys.stderr)

    console_lock = threading.Lock()
    consoles = {"stdout": stdout or sys.stdout, "stderr": stderr or sys.stderr}
    child = Child(
        argv,
        lambda name: _Tee(name, consoles[name], log, scanner, console_lock),
        env=env,
        cwd=cwd,
    )
    try:
        child.start()
    except TetherError:
        log.close()
        raise
    try:
        try:
            code, _ = child.wait(every=RECORD_EVERY_S, tick=record)
        except BaseException as exc:
            child.stop(first_signal(exc))
            child.drain()
            log.write("tether", f"stopped ({type(exc).__name__})\n")
            raise
    finally:
        record()
        log.close()
    return code


class _Tee:
    """One pipe of the command: to the console as it comes (bytes as they are), and whole lines
    to output.log and the scalar scanner."""

    def __init__(
        self, name: str, console: IO[Any], log: Any, scanner: Scanner, lock: threading.Lock
    ) -> None:
        self.name, self.console, self.log = name, console, log
        self.scanner, self.lock = scanner, lock
        self.pending = ""

    def feed(self, data: bytes, text: str) -> None:
        write_console(self.console, text, data, self.lock)
        self.log.write(self.name, text)
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            self._scan(line)
        if len(self.pending) > MAX_LINE:
            self.pending = self.pending[-MAX_LINE:]  # no newline for a long while: the latest

    def close(self, text: str) -> None:
        if text:  # the bytes of a cut-off character: already on a binary console
            write_console(self.console, text, b"", self.lock)
            self.log.write(self.name, text)
        if self.pending + text:
            self._scan(self.pending + text)

    def _scan(self, line: str) -> None:
        with contextlib.suppress(Exception):  # a line that trips the scanner is still output
            self.scanner.feed(line)
