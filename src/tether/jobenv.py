"""Where this process stands in its job, from its launcher's variables: rank and world size.

The one table of the launchers' variable names (torchrun, Open MPI, HPE PALS, MPICH Hydra,
Slurm), read without importing torch or mpi4py. It sits at the bottom of the package because
two layers need it: session/ (is this process global rank 0, the writer of the run it attaches
to?) and tether.distributed.ranks (the full RankInfo, with hosts and the rendezvous address).

Each launcher's variables are read as one family: a family's rank, size, local rank and local
size all come from that family's own names, never one variable from here and one from there.
The rules, in order (docs/distributed.md has the table):

1. The first family whose rank variable is set is the candidate (torchrun, Open MPI, PALS,
   Hydra). Another launcher started inside a Slurm step sets its own variables, which win.
2. Inside a Slurm job step (`SLURM_STEP_ID` set: srun started this process or its launcher),
   a PMI family that agrees with the step (same rank and, where it says one, the same size) was
   set by srun's own MPI plug-in (`--mpi=pmi2` sets `PMI_RANK`/`PMI_SIZE`, `--mpi=cray_shasta`
   `PALS_RANKID` and nothing of the size): Slurm's own `SLURM_LOCALID` and
   `SLURM_STEP_TASKS_PER_NODE` then say the local rank and size, not a guess from the rank.
   A family that disagrees (mpiexec's Hydra started inside a step, whose proxies srun launched)
   is its own launcher and wins.
3. With no launcher family, a Slurm step's own variables count. A batch script (sbatch,
   salloc, a PBS script) is one process, whatever `SLURM_NTASKS` says.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import TetherError


@dataclass(frozen=True)
class Family:
    """One launcher's variable names. Later names of a tuple are the same family's fallbacks."""

    name: str
    rank: str
    size: tuple[str, ...]
    local_rank: tuple[str, ...]
    local_size: tuple[str, ...]
    # srun's MPI plug-ins can set this family for the tasks of a step (pmi2: PMI_*,
    # cray_shasta: PALS_*): inside a step that agrees with it, Slurm's variables count.
    slurm_plugin: bool = False


TORCHRUN = Family("torchrun", "RANK", ("WORLD_SIZE",), ("LOCAL_RANK",), ("LOCAL_WORLD_SIZE",))
OPENMPI = Family(
    "openmpi",
    "OMPI_COMM_WORLD_RANK",
    ("OMPI_COMM_WORLD_SIZE",),
    ("OMPI_COMM_WORLD_LOCAL_RANK",),
    ("OMPI_COMM_WORLD_LOCAL_SIZE",),
)
# HPE PALS's mpiexec (PBS on Aurora, Polaris) sets PALS_* and PMI_* for each rank.
PALS = Family(
    "pals",
    "PALS_RANKID",
    ("PMI_SIZE",),
    ("PALS_LOCAL_RANKID", "PMI_LOCAL_RANK"),
    ("PALS_LOCAL_SIZE", "PMI_LOCAL_SIZE"),
    slurm_plugin=True,
)
# Hydra's mpiexec: MPICH, Intel MPI, MVAPICH. srun --mpi=pmi2 sets PMI_RANK and PMI_SIZE only.
HYDRA = Family(
    "mpich",
    "PMI_RANK",
    ("PMI_SIZE",),
    ("MPI_LOCALRANKID",),
    ("MPI_LOCALNRANKS",),
    slurm_plugin=True,
)
SLURM = Family(
    "slurm",
    "SLURM_PROCID",
    ("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS"),
    ("SLURM_LOCALID",),
    (),  # from SLURM_STEP_TASKS_PER_NODE and SLURM_NODEID (tasks_on_this_node)
)
# The launcher families, most specific first; Slurm's step comes after them (rule 3).
FAMILIES: tuple[Family, ...] = (TORCHRUN, OPENMPI, PALS, HYDRA)

# (scheduler, the variable that says this process is inside one of its jobs), first match wins.
SCHEDULERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("slurm", ("SLURM_JOB_ID", "SLURM_JOBID")),
    ("pbs", ("PBS_JOBID",)),
    ("lsf", ("LSB_JOBID",)),
    ("flux", ("FLUX_JOB_ID",)),
    ("cobalt", ("COBALT_JOBID",)),
)
NO_SCHEDULER = "local"  # the scheduler plug-in's name for a plain machine

_COUNT = re.compile(r"(\d+)(?:\(x(\d+)\))?")


@dataclass(frozen=True)
class Place:
    """This process in its job; None where the launcher does not say."""

    family: str  # torchrun, env (plain RANK), openmpi, pals, mpich, slurm, none
    rank: int
    local_rank: int | None
    world_size: int
    local_world_size: int | None


# -- integers from the environment ------------------------------------------------------------
def int_var(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        raise TetherError(f"{name}={raw!r} is not an integer", "unset it or fix the launcher")
    if value < 0:
        raise TetherError(f"{name}={raw!r} is negative", "unset it or fix the launcher")
    return value


def _first_int(env: Mapping[str, str], names: tuple[str, ...]) -> tuple[int | None, str | None]:
    for name in names:
        value = int_var(env, name)
        if value is not None:
            return value, name
    return None, None


# -- Slurm --------------------------------------------------------------------------------------
def slurm_in_step(env: Mapping[str, str]) -> bool:
    """Inside a job step that srun started (not the batch script, not the extern step)."""
    step = env.get("SLURM_STEP_ID", env.get("SLURM_STEPID", "")).strip()
    return bool(step) and step not in ("batch", "extern", "4294967294", "4294967295")


def expand_tasks_per_node(spec: str, name: str = "SLURM_STEP_TASKS_PER_NODE") -> list[int]:
    """Slurm's compressed task counts, one per node: `2(x3),1` -> [2, 2, 2, 1], `4,3` -> [4, 3]."""
    counts: list[int] = []
    for part in spec.split(","):
        m = _COUNT.fullmatch(part.strip())
        if not m:
            raise TetherError(
                f"{name}={spec!r}: cannot read {part.strip()!r}",
                "Slurm writes counts like `4,3` or `2(x3),1`; unset it or fix the launcher",
            )
        counts.extend([int(m.group(1))] * int(m.group(2) or 1))
    return counts


def tasks_on_this_node(env: Mapping[str, str]) -> int | None:
    """This node's task count in the step: `SLURM_STEP_TASKS_PER_NODE` at `SLURM_NODEID`."""
    for name in ("SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE"):
        spec = env.get(name, "").strip()
        if spec:
            counts = expand_tasks_per_node(spec, name)
            node = int_var(env, "SLURM_NODEID") or 0
            return counts[node] if node < len(counts) else None
    return None


def _slurm_step(env: Mapping[str, str]) -> Place | None:
    """The step's own view of this task, or None outside a step."""
    if not slurm_in_step(env):
        return None
    rank = int_var(env, SLURM.rank)
    if rank is None:
        return None
    size, size_var = _first_int(env, SLURM.size)
    if size is None:
        return None
    _check(SLURM.rank, rank, size_var or "", size)
    local, _ = _first_int(env, SLURM.local_rank)
    return Place("slurm", rank, local, size, tasks_on_this_node(env))


# -- the families -------------------------------------------------------------------------------
def _check(rank_var: str, rank: int, size_var: str, size: int) -> None:
    if size < 1 or rank >= size:
        raise TetherError(
            f"{rank_var}={rank} does not fit {size_var}={size}",
            "a rank must be below the world size",
        )


def _agrees(rank: int, size: int | None, step: Place) -> bool:
    return rank == step.rank and (size is None or size == step.world_size)


def job_place(env: Mapping[str, str]) -> Place:
    """This process's place from the launcher families (see the module doc for the rules)."""
    step = _slurm_step(env)
    for family in FAMILIES:
        rank = int_var(env, family.rank)
        if rank is None:
            continue
        size, size_var = _first_int(env, family.size)
        local, _ = _first_int(env, family.local_rank)
        local_size, _ = _first_int(env, family.local_size)
        if step is not None and _agrees(rank, size, step):
            if family.slurm_plugin:
                return step  # srun's MPI plug-in: Slurm knows the layout, the PMI names do not
            # A launcher whose ranks are the step's tasks: what it leaves out, Slurm says.
            local = step.local_rank if local is None else local
            local_size = step.local_world_size if local_size is None else local_size
        if size is None:
            raise TetherError(
                f"{family.rank} is set but none of {', '.join(family.size)}",
                "the launcher should set the world size too; set it or unset the rank",
            )
        _check(family.rank, rank, size_var or "", size)
        name = family.name
        if family is TORCHRUN and not env.get("TORCHELASTIC_RUN_ID"):
            name = "env"  # RANK/WORLD_SIZE set by hand or by another tool, not torchrun
        return Place(name, rank, local, size, local_size)
    if step is not None:
        return step
    return Place("none", 0, 0, 1, 1)


def job_family(env: Mapping[str, str]) -> tuple[str, int, int | None, int, int | None]:
    """(family, rank, local rank, world size, local world size); None where unknown."""
    p = job_place(env)
    return p.family, p.rank, p.local_rank, p.world_size, p.local_world_size


def job_scheduler(env: Mapping[str, str]) -> str:
    """The scheduler whose job this process runs in (slurm, pbs, lsf, flux, cobalt), else
    `local`; the names of the scheduler plug-ins (tether.distributed.schedulers)."""
    for name, names in SCHEDULERS:
        if any(env.get(var, "").strip() for var in names):
            return name
    return NO_SCHEDULER


def global_rank(env: Mapping[str, str]) -> tuple[int, int]:
    """(rank, world size) of this process in its job; (0, 1) outside one."""
    p = job_place(env)
    return p.rank, p.world_size
