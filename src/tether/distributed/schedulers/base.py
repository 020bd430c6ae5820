"""The scheduler plug-in contract.

A scheduler plug-in is a class registered in the `tether.schedulers` entry-point group:

    [project.entry-points."tether.schedulers"]
    mysite = "mysite_tether:MySite"

tether instantiates it with no arguments and calls:

- `detect(env) -> bool`: is this process inside one of your jobs? (`env` is a mapping like
  `os.environ`; read it, never `os.environ`, so tests can pass fixture environments.)
- `hosts(env) -> list[str]`: the job's hosts, in order, each once.
- `job_id(env) -> str | None`: the job's id.
- `build(spec) -> list[str]`: the argv that launches a resolved `LaunchSpec`. The default picks
  the launcher builder for `spec.launcher` (mpiexec in its detected flavour, srun, torchrun);
  override it to spell a site's own launcher.

and, optionally, `hostfile(env)` (a file the job provides, e.g. PBS_NODEFILE), `slots(env)`
(ranks each host may take), `ranks_per_host(env)` (the default -ppn), `info(env)` (what
`tether doctor` shows). Class attributes: `priority` (higher is asked first; the default, 100,
puts a site plug-in before the generic slurm/pbs ones at 50 and local at 0), `default_launcher`
and `description`. The entry-point name is the scheduler's name (`TETHER_SCHEDULER=mysite`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from ..hostfile import read_hostfile
from ..launchers import build_command
from ..spec import LaunchSpec

Env = Mapping[str, str]


class Scheduler:
    """Base class of scheduler plug-ins; see the module docstring for the contract."""

    name: str = ""  # set from the entry-point name when loaded
    priority: ClassVar[int] = 100
    default_launcher: ClassVar[str] = "mpiexec"
    description: ClassVar[str] = ""

    def detect(self, env: Env) -> bool:
        raise NotImplementedError

    def hosts(self, env: Env) -> list[str]:
        return []

    def job_id(self, env: Env) -> str | None:
        return None

    def hostfile(self, env: Env) -> str | None:
        return None

    def slots(self, env: Env) -> dict[str, int] | None:
        """Slots per host; by default read from `hostfile(env)` when there is one."""
        path = self.hostfile(env)
        if not path:
            return None
        return read_hostfile(path).slots

    def ranks_per_host(self, env: Env) -> int | None:
        """The -ppn to use when the user gives none; by default the slots per host when every
        host has the same number."""
        slots = self.slots(env)
        if slots and len(set(slots.values())) == 1:
            return next(iter(slots.values()))
        return None

    def build(self, spec: LaunchSpec) -> list[str]:
        return build_command(spec)

    def info(self, env: Env) -> dict[str, Any]:
        """What `tether doctor` and launch.json report about the job."""
        hosts = self.hosts(env)
        return {
            "scheduler": self.name,
            "job_id": self.job_id(env),
            "hosts": hosts,
            "nhosts": len(hosts),
            "hostfile": self.hostfile(env),
        }

    def __repr__(self) -> str:
        return f"<scheduler {self.name or type(self).__name__}>"
