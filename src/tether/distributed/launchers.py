"""Launcher command builders: the argv of mpiexec, srun or torchrun for a resolved spec.

Each launcher is a small class: `argv(spec)` is a pure function of the resolved `LaunchSpec`
(so every scheduler x launcher combination is tested with exact argv), and `relabel` /
`labeller` turn the launcher's own rank labels into `[rank] line` for --rank-prefix.
mpiexec is spelled by its detected MPI flavour (tether.distributed.mpi). `build_command` is
what `Scheduler.build` does unless a plug-in spells its own launcher.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from typing import ClassVar

from ..errors import TetherError
from ..patterns import LazyPattern
from ..process import python_first
from .mpi import Labeller, LineLabeller, flavour
from .spec import LaunchSpec

RDZV_PORT = 29400  # torchrun's own default c10d port


class Launcher:
    """Builds the argv of one launcher program for a resolved spec."""

    name: ClassVar[str]

    def argv(self, spec: LaunchSpec) -> list[str]:
        raise NotImplementedError

    def relabel(self, spec: LaunchSpec, line: str) -> str | None:
        return None

    def labeller(self, spec: LaunchSpec) -> Labeller:
        """Rebuilds `[rank] line` from the launcher's labelled output (--rank-prefix)."""
        return LineLabeller(lambda line: self.relabel(spec, line))


class Mpiexec(Launcher):
    name = "mpiexec"

    def argv(self, spec: LaunchSpec) -> list[str]:
        if not spec.flavour:
            raise TetherError("the MPI flavour is not known; resolve the spec first")
        return flavour(spec.flavour).argv(spec)

    def relabel(self, spec: LaunchSpec, line: str) -> str | None:
        return flavour(spec.flavour).relabel(line) if spec.flavour else None

    def labeller(self, spec: LaunchSpec) -> Labeller:
        return flavour(spec.flavour).labeller() if spec.flavour else super().labeller(spec)


class Srun(Launcher):
    name = "srun"
    _label = LazyPattern(r"\s*(\d+): ?")

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


_PYTHON = LazyPattern(r"^python(\d+(\.\d+)?)?$")


class Torchrun(Launcher):
    """One torchrun per host. On one host: `--standalone`. On several: the scheduler's own
    launcher starts one torchrun per host (`spec.fanout`), meeting at a c10d rendezvous on the
    first host."""

    name = "torchrun"
    _label = LazyPattern(r"\[[A-Za-z_]*(\d+)\]:")

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


# Keyed by name in the order of spec.LAUNCHERS, the names a spec accepts (a test checks both).
LAUNCHERS: dict[str, type[Launcher]] = {c.name: c for c in (Mpiexec, Srun, Torchrun)}


def build_command(spec: LaunchSpec) -> list[str]:
    """The argv for a resolved spec with the launcher it names (what `Scheduler.build` does
    unless a plug-in spells its own)."""
    if not spec.resolved or not spec.launcher:
        raise TetherError(
            "build_command needs a resolved spec (tether.distributed.resolver.resolve)"
        )
    return LAUNCHERS[spec.launcher]().argv(spec)


def check_command(spec: LaunchSpec, env: Mapping[str, str] | None = None) -> None:
    """TetherError unless the program of `spec.command` resolves: a name found on the PATH the
    ranks get (this Python's bin/ first, `--env PATH=...` if given), or a path to a file. On
    other hosts only names are checked here; a path may exist there and not on this machine."""
    env = os.environ if env is None else env
    if not spec.command:
        raise TetherError("no command to launch", "put it after `--`")
    program = spec.command[0]
    if os.sep in program or (os.altsep and os.altsep in program):
        if not spec.local:
            return
        if not os.path.isfile(program):
            raise TetherError(
                f"no such command {program!r} (no such file)",
                "check the path, or give a command on PATH",
            )
        if not os.access(program, os.X_OK):
            raise TetherError(
                f"command {program!r} is not executable",
                f"chmod +x {program}, or run it through its interpreter (python {program})",
            )
        return
    path = python_first(spec.env.get("PATH", env.get("PATH", "")))
    if shutil.which(program, path=path) is None:
        raise TetherError(
            f"no such command {program!r} (not on PATH)",
            "install it, activate the environment that has it, or give its path",
        )
