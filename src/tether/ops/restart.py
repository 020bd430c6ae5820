"""Continue a run of an operation in its own folder: `tether run --restart RUN`, and the trials
of an op's batch that an interrupted attempt handed back (a preempted or requeued job).

The run keeps its id, folder, run.lock and metrics; state.json gets one more attempt. The op's
command runs again in the run folder with the flags the run recorded, next to the files staged
for it the first time (its source copy and dependency links are there already: the run goes on
with its own code, not with what the project holds now), and with the run's environment
(`TETHER_RUN_DIR`, ...): a script with `@tether.experiment` or `History` attaches to the run, and
History resumes after the last step the run recorded, so no step is written twice.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

from ..capture.secrets import reveal_known
from ..capture.unredact import recover, terminal_prompt
from ..errors import TetherError
from ..project.model import OpDef, Project
from ..session.lifecycle import lifecycle
from ..session.run import Run
from ..store import RunRecord, Store
from .exec import Plan, TrialResult, build_config, child_env, execute, resolve_command, working_dir
from .scalars import compile_patterns
from .settle import settle, staged_links

BATCH_SUFFIX = "+batch"  # a batch's parent run: its trials are retried, not restarted
RESTARTABLE = ("failed", "terminated", "unknown", "queued")


def restartable(project: Project, record: RunRecord) -> OpDef:
    """The op of `record`, a run `--restart` can continue; TetherError saying why not."""
    short = record.id[:13]
    name = record.name
    if name.endswith(BATCH_SUFFIX):
        op_name = name.removesuffix(BATCH_SUFFIX)
        raise TetherError(
            f"run {short} is a batch of {op_name!r}: a batch is not restarted",
            f"rerun its failed and unfinished trials: tether run {op_name} --retry-failed {short}",
        )
    op = project.ops.get(name)
    if op is None:
        raise TetherError(
            f"run {short} is a run of {name!r}, which is not an operation of this project",
            "--restart continues runs that `tether run OP` made",
        )
    status = record.status
    if status == "completed":
        raise TetherError(
            f"run {short} ({name}) completed: there is nothing to continue",
            f"start a new run: tether run {name}",
        )
    if status not in RESTARTABLE:
        where = f" (pid {record.state.pid} on {record.state.host})" if record.state.pid else ""
        raise TetherError(
            f"run {short} ({name}) is {status}{where}",
            "stop it first (tether stop RUN), or wait for it to end",
        )
    return op


def recorded_config(op: OpDef, record: RunRecord) -> dict[str, Any]:
    """The config the op's command is filled from: the flags the run recorded (run.lock schema
    2), or its config (schema 1, where the config is the flags)."""
    lock = record.lock
    if lock.schema >= 2:
        return build_config(op, dict(lock.flags))
    config = dict(lock.config)
    config.pop("save_dir", None)
    return config


@contextlib.contextmanager
def continued(store: Store, record: RunRecord, cfg: Any) -> Iterator[Run]:
    """The run, running again in this process as its next attempt, until the block ends."""
    stages = {st.name: store.run_dir(st.run) for st in record.lock.stages}
    run = Run(store, record, cfg, stages)
    yield from lifecycle(store, record, run, False, None)


def restart_trial(
    project: Project,
    op: OpDef,
    store: Store,
    record: RunRecord,
    *,
    on_start: Callable[[str], None] | None = None,
    echo: Callable[[str], None] | None = None,
) -> TrialResult:
    """Run the op's command again in `record`'s folder, as the run's next attempt. Ctrl-C
    propagates (the attempt and the run are recorded terminated)."""
    recorded = recorded_config(op, record)
    # Secrets are recorded redacted: this process's own values, else TETHER_SECRET_<KEY> or a
    # prompt; the echo shows the record's tokens.
    config = reveal_known(recorded)
    config = recover([config], record.id[:13], terminal_prompt()).reveal(config)
    patterns = compile_patterns(op.output_scalars, f"ops.{op.name}.output-scalars")
    result = TrialResult(record.id, "completed")
    with working_dir(project.root):
        try:
            with continued(store, record, config) as run:
                if on_start is not None:
                    on_start(run.id)
                filled = {**config, "save_dir": str(run.dir)}
                argv, _ = resolve_command(op, filled)
                _, display = resolve_command(op, {**recorded, "save_dir": str(run.dir)})
                # The inputs the first attempt staged; links it left (it was killed) settle now.
                staged = staged_links(run.dir)
                plan = Plan(project, op, {}, filled, staged, patterns, argv, display)
                if echo is not None:
                    echo(display)
                try:
                    code = execute(
                        argv,
                        display=display,
                        cwd=run.dir,
                        env=child_env(plan, run.id, run.dir, store.root),
                        patterns=patterns,
                        log_metrics=run.log_metrics,
                    )
                finally:
                    for warning in settle(staged, run.dir):
                        print(f"tether: warning: {warning}", file=sys.stderr)
                if code:
                    raise SystemExit(code)
        except SystemExit as exc:
            result.status = "failed"
            result.exit_code = exc.code if isinstance(exc.code, int) else 1
    return result
