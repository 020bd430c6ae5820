"""Who am I in this job? Rank, local rank, world size and rendezvous address from the environment.

Every launcher family tells its processes where they stand through environment variables, each
with its own names. tether.jobenv reads them, each launcher's names as one family, without
importing torch or mpi4py, so it costs nothing and works before any library is initialised:

- torchrun: `RANK`, `LOCAL_RANK`, `WORLD_SIZE`, `LOCAL_WORLD_SIZE`;
- Open MPI: `OMPI_COMM_WORLD_RANK`, `_LOCAL_RANK`, `_SIZE`, `_LOCAL_SIZE`;
- HPE PALS: `PALS_RANKID`, `PALS_LOCAL_RANKID`, `PMI_SIZE`, `PALS_LOCAL_SIZE`;
- Hydra (MPICH, Intel MPI): `PMI_RANK`, `MPI_LOCALRANKID`, `PMI_SIZE`, `MPI_LOCALNRANKS`;
- Slurm: `SLURM_PROCID`, `SLURM_LOCALID`, `SLURM_STEP_NUM_TASKS`, `SLURM_STEP_TASKS_PER_NODE`.

The first launcher family whose rank variable is set wins: a launcher started inside another
one (torchrun under srun, mpiexec inside a Slurm job) sets the more specific variables. Inside
a Slurm step, the PMI names that srun's own MPI plug-ins set (`--mpi=pmi2`: `PMI_RANK`,
`PMI_SIZE`; `--mpi=cray_shasta`: `PALS_RANKID` alone) yield to Slurm's own variables, which know
the layout (cyclic, uneven nodes). Slurm counts only inside a job step (`srun`, which sets
`SLURM_STEP_ID`): a batch script itself is not rank 0 of `SLURM_NTASKS` ranks.

The rendezvous address (`MASTER_ADDR`) is, unless set: 127.0.0.1 when every rank runs on this
node, else the first host of the job: a hostfile named by `TETHER_HOSTFILE` or `HOSTFILE`,
Slurm's compressed node list (`nid[001-004,010]`), or PBS's `PBS_NODEFILE`. The port
(`MASTER_PORT`) is, unless set, derived from the job's id, so that every rank computes the same
one and two jobs sharing a node do not collide; with no job id it is 29500, torch's default.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import TetherError
from ..jobenv import NO_SCHEDULER, int_var, job_place, job_scheduler, slurm_in_step
from .hostfile import read_hostfile
from .nodelist import expand_builtin

DEFAULT_PORT = 29500
# Ports derived from a job id fall in [PORT_BASE, PORT_BASE + PORT_SPAN): above the registered
# services most clusters run, below Linux's ephemeral range (32768-60999), so a derived port is
# not taken by some client's outgoing connection.
PORT_BASE = 20000
PORT_SPAN = 12000
LOCALHOST = "127.0.0.1"

# Ids shared by every rank of one launch, most specific first: an application inside a job
# (PALS, PMIx/Open MPI, torchrun), then the job step, then the scheduler's job.
JOB_ID_VARS = (
    "TETHER_JOB_ID",
    "TETHER_LAUNCH_ID",  # set by `tether launch` for its ranks: new for each launch
    "PALS_APID",
    "PMIX_NAMESPACE",
    "OMPI_MCA_ess_base_jobid",
    "TORCHELASTIC_RUN_ID",
    "SLURM_JOB_ID",
    "PBS_JOBID",
    "LSB_JOBID",
    "FLUX_JOB_ID",
    "COBALT_JOBID",
)
HOSTFILE_VARS = ("TETHER_HOSTFILE", "HOSTFILE")
SLURM_NODELIST_VARS = ("SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST")
NODEFILE_VARS = ("PBS_NODEFILE", "COBALT_NODEFILE")


@dataclass(frozen=True)
class RankInfo:
    """Where this process stands in its job, as its launcher says (see the module doc).

    The one record of these facts: `tether.distributed.torch.DistInfo` extends it with what
    `setup_torch` made of them (backend, device, seed)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    launcher: str = "none"  # torchrun, env (plain RANK), openmpi, pals, mpich, slurm, none
    master_addr: str = LOCALHOST
    master_port: int = DEFAULT_PORT
    job_id: str | None = None
    scheduler: str = NO_SCHEDULER  # slurm, pbs, lsf, flux, cobalt; local outside a job

    @property
    def is_main(self) -> bool:
        """True on global rank 0."""
        return self.rank == 0

    @property
    def is_local_main(self) -> bool:
        """True on the first rank of each node."""
        return self.local_rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- hosts ------------------------------------------------------------------------------------
def expand_nodelist(nodelist: str) -> list[str]:
    """Expand Slurm's compressed node list: `nid[001-003,010],login1` -> nid001, nid002,
    nid003, nid010, login1 (the Slurm plug-in's expander, without calling scontrol)."""
    return expand_builtin(nodelist)


def hostfile_hosts(path: str | os.PathLike[str]) -> list[str]:
    """Hosts of a hostfile in order, each once (see tether.distributed.hostfile for the syntax)."""
    return read_hostfile(os.fspath(path)).hosts


def job_hosts(env: Mapping[str, str] | None = None) -> tuple[list[str], str | None]:
    """The job's hosts in rank order and where they came from (a variable name), or ([], None)."""
    env = os.environ if env is None else env
    for name in HOSTFILE_VARS:
        path = env.get(name)
        if path:
            try:
                return hostfile_hosts(path), name
            except TetherError as exc:
                raise TetherError(f"{name}: {exc.message}", exc.hint)
    if env.get("SLURM_JOB_ID"):
        for name in SLURM_NODELIST_VARS:
            if env.get(name):
                return expand_nodelist(env[name]), name
    for name in NODEFILE_VARS:
        path = env.get(name)
        if path:
            try:
                return hostfile_hosts(path), name
            except TetherError:
                continue  # a nodefile of a job on another machine: fall through
    return [], None


def job_id(env: Mapping[str, str] | None = None) -> str | None:
    """An id shared by every rank of this launch (see JOB_ID_VARS), or None."""
    env = os.environ if env is None else env
    for name in JOB_ID_VARS:
        value = env.get(name, "").strip()
        if value:
            if name == "SLURM_JOB_ID" and slurm_in_step(env):
                value = f"{value}.{env.get('SLURM_STEP_ID', env.get('SLURM_STEPID', ''))}"
            return value
    return None


def port_for(job: str | None) -> int:
    """The rendezvous port of a job: stable for one id, spread over PORT_SPAN ports."""
    if not job:
        return DEFAULT_PORT
    return PORT_BASE + zlib.crc32(job.encode()) % PORT_SPAN


def master_addr(
    env: Mapping[str, str] | None = None, *, world_size: int = 1, local_world_size: int = 1
) -> str:
    env = os.environ if env is None else env
    addr = env.get("MASTER_ADDR", "").strip()
    if addr:
        return addr
    if world_size <= 1 or local_world_size >= world_size:
        return LOCALHOST  # every rank is on this node
    hosts, _ = job_hosts(env)
    return hosts[0] if hosts else LOCALHOST


def master_port(env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    port = int_var(env, "MASTER_PORT")
    if port is not None:
        if not 0 < port < 65536:
            raise TetherError(f"MASTER_PORT={port} is not a TCP port")
        return port
    return port_for(job_id(env))


def _num_nodes(env: Mapping[str, str]) -> int | None:
    for name in ("SLURM_STEP_NUM_NODES", "SLURM_JOB_NUM_NODES", "OMPI_MCA_orte_num_nodes"):
        value = int_var(env, name)
        if value:
            return value
    hosts, _ = job_hosts(env)
    return len(hosts) or None


def detect(env: Mapping[str, str] | None = None) -> RankInfo:
    """Read this process's place in its job from `env` (default: os.environ)."""
    env = os.environ if env is None else env
    place = job_place(env)
    family, rank, size = place.family, place.rank, place.world_size
    local, local_size = place.local_rank, place.local_world_size
    if local_size is None:
        # Unknown node size: spread evenly over the job's nodes when their number is known,
        # else assume a single node.
        nodes = _num_nodes(env)
        local_size = -(-size // nodes) if nodes else size
    if local is None:
        local = rank % local_size  # ranks filled node by node, the launchers' default
    local_size = max(local_size, local + 1)
    return RankInfo(
        rank=rank,
        local_rank=local,
        world_size=size,
        local_world_size=local_size,
        launcher=family,
        master_addr=master_addr(env, world_size=size, local_world_size=local_size),
        master_port=master_port(env),
        job_id=job_id(env),
        scheduler=job_scheduler(env),
    )


def get_rank(env: Mapping[str, str] | None = None) -> int:
    return detect(env).rank


def get_local_rank(env: Mapping[str, str] | None = None) -> int:
    return detect(env).local_rank


def get_world_size(env: Mapping[str, str] | None = None) -> int:
    return detect(env).world_size


def rank_seed(seed: int, rank: int) -> int:
    """The seed of global rank `rank` in a job seeded with `seed`, in [0, 2**32).

    Rank 0 keeps `seed` itself; the others add `rank` times an odd constant modulo 2**32, a
    bijection of the rank, so two ranks of one job never share a seed (unlike schemes that
    multiply by the rank and the local rank: rank 1 / local 1 and rank 3 / local 0 would).
    The local rank plays no part: the same global rank gets the same seed however the job is
    spread over nodes.
    """
    if rank < 0:
        raise TetherError(f"rank {rank} is negative")
    return (int(seed) + int(rank) * 0x9E3779B1) % 2**32
