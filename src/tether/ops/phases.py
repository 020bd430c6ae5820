"""gage's exec phases: the commands an operation runs around its own, in the run folder.

    stage-sourcecode  (then the run's config is written into its staged source files)
    stage-runtime
    stage-dependencies
    resolve-dependencies
    run               (the op's command)
    finalize-run      (after a run that succeeded)

Each phase runs in the run folder with the op's environment plus `run_dir` and `project_dir`
(so a shell phase may write `$run_dir`); its output goes to the console and output.log after a
line naming it. A phase that fails fails the run, and the message names the phase.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from ..errors import TetherError
from ..project.model import OpDef

SHELL = "/bin/sh"
BEFORE_CONFIG = ("stage-sourcecode",)
BEFORE_RUN = ("stage-runtime", "stage-dependencies", "resolve-dependencies")
AFTER_RUN = ("finalize-run",)


def phase_names(op: OpDef, group: tuple[str, ...]) -> list[str]:
    return [name for name in group if name in op.phases]


def phase_command(op: OpDef, name: str) -> tuple[list[str], str]:
    """(argv, display) of one phase: a string goes through the shell, a list runs as is."""
    command = op.phases[name]
    if isinstance(command, str):
        return [SHELL, "-c", command], command.strip()
    if not command:
        raise TetherError(f"{op.key_prefix}{op.name}.exec.{name}: the command is empty")
    return list(command), shlex.join(command)


def phase_env(env: dict[str, str], run_dir: Path, project_dir: Path) -> dict[str, str]:
    """The op's environment and gage's names for the two folders."""
    return {**env, "run_dir": str(run_dir), "project_dir": str(project_dir)}


class PhaseFailed(Exception):
    """A phase exited non-zero: the run fails with its code, the message names the phase."""

    def __init__(self, phase: str, code: int) -> None:
        super().__init__(f"phase {phase} failed (exit {code})")
        self.phase = phase
        self.code = code


def shown(name: str, display: str) -> str:
    """How output.log and the console name a phase's command."""
    return f"[{name}] {display}"
