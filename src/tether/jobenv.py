"""Where this process stands in its job, from its launcher's variables: rank and world size.

The one table of the launchers' variable names (torchrun, Open MPI, HPE PALS, MPICH, Slurm),
read without importing torch or mpi4py. It sits at the bottom of the package because two layers
need it: session/ (is this process global rank 0, the writer of the run it attaches to?) and
tether.distributed.ranks (the full RankInfo, with hosts and the rendezvous address).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from .errors import TetherError

# (family, rank, local rank, world size, local world size). Later names are fallbacks.
FAMILIES: tuple[tuple[str, str, tuple[str, ...], tuple[str, ...], tuple[str, ...]], ...] = (
    ("torchrun", "RANK", ("LOCAL_RANK",), ("WORLD_SIZE",), ("LOCAL_WORLD_SIZE",)),
    (
        "openmpi",
        "OMPI_COMM_WORLD_RANK",
        ("OMPI_COMM_WORLD_LOCAL_RANK",),
        ("OMPI_COMM_WORLD_SIZE",),
        ("OMPI_COMM_WORLD_LOCAL_SIZE",),
    ),
    (
        "pals",
        "PALS_RANKID",
        ("PALS_LOCAL_RANKID", "PMI_LOCAL_RANK"),
        ("PMI_SIZE", "PALS_SIZE"),
        ("PALS_LOCAL_SIZE", "PMI_LOCAL_SIZE"),
    ),
    (
        "mpich",
        "PMI_RANK",
        ("MPI_LOCALRANKID", "PMI_LOCAL_RANK"),
        ("PMI_SIZE",),
        ("MPI_LOCALNRANKS", "PMI_LOCAL_SIZE"),
    ),
    ("slurm", "SLURM_PROCID", ("SLURM_LOCALID",), ("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS"), ()),
)


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


def _firstint_var(env: Mapping[str, str], names: tuple[str, ...]) -> tuple[int | None, str | None]:
    for name in names:
        value = int_var(env, name)
        if value is not None:
            return value, name
    return None, None


def slurm_in_step(env: Mapping[str, str]) -> bool:
    step = env.get("SLURM_STEP_ID", env.get("SLURM_STEPID", ""))
    return bool(step.strip()) and step.strip() not in ("batch", "extern", "4294967294")


def _slurm_tasks_per_node(env: Mapping[str, str]) -> int | None:
    """This node's task count from `SLURM_STEP_TASKS_PER_NODE` (`2(x3),1`) and `SLURM_NODEID`."""
    spec = env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE")
    if not spec:
        return None
    node = int_var(env, "SLURM_NODEID") or 0
    counts: list[int] = []
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", part)
        if not m:
            return None
        counts.extend([int(m.group(1))] * int(m.group(2) or 1))
    return counts[node] if node < len(counts) else None


def job_family(env: Mapping[str, str]) -> tuple[str, int, int | None, int, int | None]:
    """(family, rank, local rank, world size, local world size); None where unknown."""
    for family, rank_var, local_vars, size_vars, local_size_vars in FAMILIES:
        rank = int_var(env, rank_var)
        if rank is None:
            continue
        if family == "slurm" and not slurm_in_step(env):
            continue
        size, size_var = _firstint_var(env, size_vars)
        if size is None:
            raise TetherError(
                f"{rank_var} is set but none of {', '.join(size_vars)}",
                "the launcher should set the world size too; set it or unset the rank",
            )
        if size < 1 or rank >= size:
            raise TetherError(
                f"{rank_var}={rank} does not fit {size_var}={size}",
                "a rank must be below the world size",
            )
        local, _ = _firstint_var(env, local_vars)
        local_size, _ = _firstint_var(env, local_size_vars)
        if family == "slurm" and local_size is None:
            local_size = _slurm_tasks_per_node(env)
        if family == "torchrun" and not env.get("TORCHELASTIC_RUN_ID"):
            family = "env"  # RANK/WORLD_SIZE set by hand or by another tool, not torchrun
        return family, rank, local, size, local_size
    return "none", 0, 0, 1, 1


def global_rank(env: Mapping[str, str]) -> tuple[int, int]:
    """(rank, world size) of this process in its job; (0, 1) outside one."""
    _, rank, _, size, _ = job_family(env)
    return rank, size
