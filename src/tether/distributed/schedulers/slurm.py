"""Slurm: the job's hosts come from SLURM_JOB_NODELIST, a compressed list like
`nid[001-004,010],login1`.

The list is expanded by `python-hostlist` when it is installed (`pip install 'tether[cluster]'`),
else by `scontrol show hostnames`, else by a small built-in expander that covers the syntax
Slurm writes (comma-separated names, bracketed ranges and lists, zero padding, several
brackets in one name: tether.distributed.nodelist).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import ClassVar

from ...errors import TetherError
from ..nodelist import expand_builtin
from .base import Env, Scheduler

_FIRST_INT = re.compile(r"\d+")


class Slurm(Scheduler):
    priority: ClassVar[int] = 50
    default_launcher: ClassVar[str] = "srun"
    description: ClassVar[str] = "Slurm (SLURM_JOB_ID, SLURM_JOB_NODELIST)"

    def detect(self, env: Env) -> bool:
        return bool(env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID"))

    def job_id(self, env: Env) -> str | None:
        return env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID") or None

    def hosts(self, env: Env) -> list[str]:
        nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
        if not nodelist:
            raise TetherError(
                "SLURM_JOB_ID is set but SLURM_JOB_NODELIST is not",
                "run inside the Slurm allocation (salloc/sbatch), or give --hostfile",
            )
        return list(dict.fromkeys(expand_nodelist(nodelist)))

    def ranks_per_host(self, env: Env) -> int | None:
        for var in ("SLURM_NTASKS_PER_NODE", "SLURM_TASKS_PER_NODE"):
            m = _FIRST_INT.search(env.get(var, ""))
            if m:
                return int(m.group())
        return None


def expand_nodelist(text: str) -> list[str]:
    """Expand a Slurm node list: python-hostlist, else scontrol, else the built-in expander."""
    try:
        import hostlist  # python-hostlist
    except ImportError:
        pass
    else:
        return [str(h) for h in hostlist.expand_hostlist(text)]
    scontrol = shutil.which("scontrol")
    if scontrol:
        try:
            proc = subprocess.run(
                [scontrol, "show", "hostnames", text],
                capture_output=True,
                text=True,
                timeout=20,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.SubprocessError):
            proc = None
        if proc is not None and proc.returncode == 0 and proc.stdout.strip():
            return proc.stdout.split()
    return expand_builtin(text)
