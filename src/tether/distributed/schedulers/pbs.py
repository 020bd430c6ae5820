"""PBS Pro / OpenPBS / Torque: the job's hosts are in PBS_NODEFILE (one line per host or per
slot; repeated lines are slots)."""

from __future__ import annotations

from typing import ClassVar

from ...errors import TetherError
from ..hostfile import read_hostfile
from .base import Env, Scheduler


class PBS(Scheduler):
    priority: ClassVar[int] = 50
    default_launcher: ClassVar[str] = "mpiexec"
    description: ClassVar[str] = "PBS Pro / OpenPBS / Torque (PBS_JOBID, PBS_NODEFILE)"

    def detect(self, env: Env) -> bool:
        return bool(env.get("PBS_JOBID"))

    def job_id(self, env: Env) -> str | None:
        return env.get("PBS_JOBID") or None

    def hostfile(self, env: Env) -> str | None:
        return env.get("PBS_NODEFILE") or None

    def hosts(self, env: Env) -> list[str]:
        path = self.hostfile(env)
        if not path:
            raise TetherError(
                "PBS_JOBID is set but PBS_NODEFILE is not",
                "run inside the PBS job, or give --hostfile",
            )
        return read_hostfile(path).hosts
