"""tether.distributed.ranks: rank, local rank, world size and rendezvous from every launcher family.

Every test passes an explicit environment mapping: nothing here reads or changes os.environ.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.distributed import ranks
from tether.distributed.hostfile import hostfile_for, parse_hostfile, render_hostfile
from tether.distributed.mpi import Detected
from tether.distributed.ranks import RankInfo, detect, expand_nodelist, hostfile_hosts, rank_seed
from tether.errors import TetherError
from tether.jobenv import expand_tasks_per_node

FAMILIES = {
    "torchrun": {
        "RANK": "3",
        "LOCAL_RANK": "1",
        "WORLD_SIZE": "8",
        "LOCAL_WORLD_SIZE": "2",
        "TORCHELASTIC_RUN_ID": "abc",
    },
    "openmpi": {
        "OMPI_COMM_WORLD_RANK": "3",
        "OMPI_COMM_WORLD_LOCAL_RANK": "1",
        "OMPI_COMM_WORLD_SIZE": "8",
        "OMPI_COMM_WORLD_LOCAL_SIZE": "2",
    },
    "pals": {
        "PALS_RANKID": "3",
        "PALS_LOCAL_RANKID": "1",
        "PMI_SIZE": "8",
        "PMI_LOCAL_SIZE": "2",
        "PMI_RANK": "3",
    },
    "mpich": {"PMI_RANK": "3", "MPI_LOCALRANKID": "1", "PMI_SIZE": "8", "MPI_LOCALNRANKS": "2"},
    "slurm": {
        "SLURM_JOB_ID": "77",
        "SLURM_STEP_ID": "0",
        "SLURM_PROCID": "3",
        "SLURM_LOCALID": "1",
        "SLURM_NTASKS": "8",
        "SLURM_STEP_TASKS_PER_NODE": "2(x4)",
        "SLURM_NODEID": "1",
    },
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family(family: str) -> None:
    info = detect(FAMILIES[family])
    assert (info.launcher, info.rank, info.local_rank, info.world_size) == (family, 3, 1, 8)
    assert info.local_world_size == 2
    assert not info.is_main and not info.is_local_main and info.distributed


def test_nothing_set_is_one_process() -> None:
    info = detect({})
    assert info == RankInfo()
    assert (info.rank, info.world_size, info.launcher, info.master_addr) == (
        0,
        1,
        "none",
        "127.0.0.1",
    )
    assert info.master_port == ranks.DEFAULT_PORT and info.is_main


def test_slurm_localid_not_local_id() -> None:
    # ezpz reads SLURM_LOCAL_ID, which Slurm never sets; SLURM_LOCALID is the real one.
    env = {**FAMILIES["slurm"], "SLURM_LOCALID": "0", "SLURM_LOCAL_ID": "1"}
    assert detect(env).local_rank == 0


def test_slurm_batch_script_is_not_a_rank() -> None:
    # A batch script carries SLURM_PROCID=0 and SLURM_NTASKS=8 but is one process.
    env = {"SLURM_JOB_ID": "77", "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NTASKS": "8"}
    info = detect(env)
    assert (info.launcher, info.world_size) == ("none", 1)


def test_mpi_inside_slurm_batch_wins() -> None:
    # mpiexec inside sbatch: every rank inherits SLURM_PROCID=0 from the batch step.
    env = {
        "SLURM_JOB_ID": "77",
        "SLURM_STEP_ID": "0",
        "SLURM_PROCID": "0",
        "SLURM_NTASKS": "4",
        **FAMILIES["openmpi"],
    }
    assert detect(env).launcher == "openmpi"
    assert detect(env).rank == 3


def test_torchrun_under_srun_wins() -> None:
    env = {**FAMILIES["slurm"], **FAMILIES["torchrun"], "RANK": "5"}
    info = detect(env)
    assert (info.launcher, info.rank) == ("torchrun", 5)


def test_plain_rank_variables_are_env_family() -> None:
    info = detect({"RANK": "1", "WORLD_SIZE": "2"})
    assert (info.launcher, info.rank, info.world_size) == ("env", 1, 2)
    assert info.local_rank == 1 and info.local_world_size == 2  # one node assumed


def test_slurm_tasks_per_node_uneven() -> None:
    env = {**FAMILIES["slurm"], "SLURM_STEP_TASKS_PER_NODE": "3,2(x2)", "SLURM_NODEID": "2"}
    assert detect(env).local_world_size == 2
    env["SLURM_NODEID"] = "0"
    assert detect(env).local_world_size == 3


def test_unknown_local_rank_from_node_size() -> None:
    env = {
        "OMPI_COMM_WORLD_RANK": "5",
        "OMPI_COMM_WORLD_SIZE": "8",
        "OMPI_COMM_WORLD_LOCAL_SIZE": "4",
    }
    assert detect(env).local_rank == 1


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"RANK": "x", "WORLD_SIZE": "2"}, "RANK='x' is not an integer"),
        ({"RANK": "2", "WORLD_SIZE": "2"}, "RANK=2 does not fit WORLD_SIZE=2"),
        ({"RANK": "0"}, "none of WORLD_SIZE"),
        ({"PMI_RANK": "-1", "PMI_SIZE": "2"}, "negative"),
        ({"MASTER_PORT": "99999"}, "not a TCP port"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], words: str) -> None:
    with pytest.raises(TetherError, match=words.replace("(", r"\(")):
        detect(env)


# -- the rank-detection table: what the real launchers set, and what tether makes of it ------
# Each environment is what the tool itself exports to one process (the Slurm ones as captured
# from srun on the test cluster, scaled to two nodes; PMI/PALS/PMIx names as srun's plug-ins
# set them), with its expected (launcher, scheduler, rank, local rank, world size, local size).
JOB = "4242"


def sbatch_job(ntasks: int, tasks_per_node: str, nnodes: int = 2) -> dict[str, str]:
    """What sbatch exports to the batch script (and every process started from it)."""
    nodes = "nid[001-002]" if nnodes == 2 else "nid[001-003]" if nnodes == 3 else "nid001"
    return {
        "SLURM_JOB_ID": JOB,
        "SLURM_JOBID": JOB,
        "SLURM_JOB_NODELIST": nodes,
        "SLURM_NODELIST": nodes,
        "SLURM_JOB_NUM_NODES": str(nnodes),
        "SLURM_NNODES": str(nnodes),
        "SLURM_NTASKS": str(ntasks),
        "SLURM_NPROCS": str(ntasks),
        "SLURM_TASKS_PER_NODE": tasks_per_node,
        "SLURM_CPUS_ON_NODE": "64",
        "SLURM_SUBMIT_DIR": "/home/me/proj",
        "SLURM_JOB_NAME": "train",
    }


def batch_shell(ntasks: int, tasks_per_node: str, nnodes: int = 2) -> dict[str, str]:
    """The batch script itself: Slurm sets SLURM_PROCID=0 and friends, but no step id."""
    return {
        **sbatch_job(ntasks, tasks_per_node, nnodes),
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "0",
        "SLURM_GTIDS": "0",
    }


def srun_task(
    procid: int,
    localid: int,
    nodeid: int,
    ntasks: int,
    step_tasks_per_node: str,
    nnodes: int = 2,
    *,
    step: int = 0,
    distribution: str | None = None,
) -> dict[str, str]:
    """One task of `srun` inside an allocation of the same shape."""
    env = {
        **sbatch_job(ntasks, step_tasks_per_node, nnodes),
        "SLURM_STEP_ID": str(step),
        "SLURM_STEPID": str(step),
        "SLURM_STEP_NODELIST": "nid[001-002]" if nnodes == 2 else "nid001",
        "SLURM_STEP_NUM_NODES": str(nnodes),
        "SLURM_STEP_NUM_TASKS": str(ntasks),
        "SLURM_STEP_TASKS_PER_NODE": step_tasks_per_node,
        "SLURM_PROCID": str(procid),
        "SLURM_LOCALID": str(localid),
        "SLURM_NODEID": str(nodeid),
        "SLURMD_NODENAME": f"nid00{nodeid + 1}",
        "SLURM_TOPOLOGY_ADDR": f"nid00{nodeid + 1}",
    }
    if distribution:
        env["SLURM_DISTRIBUTION"] = distribution
    return env


def pmi2(rank: int, size: int, step: int = 0) -> dict[str, str]:
    """srun --mpi=pmi2."""
    return {
        "PMI_FD": "11",
        "PMI_JOBID": f"{JOB}.{step}",
        "PMI_RANK": str(rank),
        "PMI_SIZE": str(size),
    }


def pmix(rank: int, step: int = 0) -> dict[str, str]:
    """srun --mpi=pmix: a rank and the server's address, no size (that is asked of PMIx)."""
    return {
        "PMIX_RANK": str(rank),
        "PMIX_NAMESPACE": f"slurm.pmix.{JOB}.{step}",
        "PMIX_VERSION": "4.2.2",
        "PMIX_SERVER_URI41": "pmix-server.8617;tcp4://127.0.0.1:55829",
        "PMIX_HOSTNAME": "nid001",
    }


def cray_shasta(rank: int, nodeid: int, step: int = 0) -> dict[str, str]:
    """srun --mpi=cray_shasta sets these five and nothing else of PALS or PMI."""
    spool = f"/var/spool/slurmd/mpi_cray_shasta/{JOB}.{step}"
    return {
        "PALS_APID": f"{JOB}.{step}",
        "PALS_APINFO": f"{spool}/apinfo",
        "PALS_NODEID": str(nodeid),
        "PALS_RANKID": str(rank),
        "PALS_SPOOL_DIR": spool,
    }


def torchrun(rank: int, local: int, world: int, local_world: int, group: int) -> dict[str, str]:
    return {
        "RANK": str(rank),
        "LOCAL_RANK": str(local),
        "WORLD_SIZE": str(world),
        "LOCAL_WORLD_SIZE": str(local_world),
        "GROUP_RANK": str(group),
        "GROUP_WORLD_SIZE": str(world // local_world),
        "ROLE_RANK": str(rank),
        "ROLE_WORLD_SIZE": str(world),
        "ROLE_NAME": "default",
        "MASTER_ADDR": "nid001" if world > local_world else "127.0.0.1",
        "MASTER_PORT": "29400",
        "TORCHELASTIC_RUN_ID": "none" if world == local_world else JOB,
        "TORCHELASTIC_RESTART_COUNT": "0",
        "TORCHELASTIC_MAX_RESTARTS": "0",
        "TORCHELASTIC_USE_AGENT_STORE": "False",
        "TORCH_NCCL_ASYNC_ERROR_HANDLING": "1",
        "OMP_NUM_THREADS": "1",
    }


def openmpi(rank: int, local: int, world: int, local_world: int, nodes: int) -> dict[str, str]:
    """mpirun of Open MPI 4.1 (as captured here), for one rank."""
    return {
        "OMPI_COMM_WORLD_RANK": str(rank),
        "OMPI_COMM_WORLD_LOCAL_RANK": str(local),
        "OMPI_COMM_WORLD_SIZE": str(world),
        "OMPI_COMM_WORLD_LOCAL_SIZE": str(local_world),
        "OMPI_COMM_WORLD_NODE_RANK": str(local),
        "OMPI_UNIVERSE_SIZE": str(world),
        "OMPI_MCA_ess_base_jobid": "1334902785",
        "OMPI_MCA_ess_base_vpid": str(rank),
        "OMPI_MCA_orte_num_nodes": str(nodes),
        "OMPI_MCA_orte_ess_num_procs": str(world),
        "PMIX_NAMESPACE": "1334902785",
        "PMIX_RANK": str(rank),
    }


def hydra(rank: int, local: int, world: int, local_world: int) -> dict[str, str]:
    """mpiexec of MPICH's Hydra (and Intel MPI's mpiexec.hydra), for one rank."""
    return {
        "PMI_RANK": str(rank),
        "PMI_SIZE": str(world),
        "PMI_FD": "6",
        "MPI_LOCALRANKID": str(local),
        "MPI_LOCALNRANKS": str(local_world),
    }


def pals(rank: int, local: int, world: int, local_world: int, node: int) -> dict[str, str]:
    """mpiexec of HPE PALS on a PBS machine (Polaris, Aurora), for one rank."""
    return {
        "PALS_APID": "a1b2c3d4-0000-4000-8000-000000000001",
        "PALS_RANKID": str(rank),
        "PALS_LOCAL_RANKID": str(local),
        "PALS_NODEID": str(node),
        "PALS_LOCAL_SIZE": str(local_world),
        "PALS_DEPTH": "8",
        "PMI_RANK": str(rank),
        "PMI_SIZE": str(world),
        "PMI_LOCAL_RANK": str(local),
        "PMI_LOCAL_SIZE": str(local_world),
        "PMI_UNIVERSE_SIZE": str(world),
        "PMI_JOBID": "a1b2c3d4",
        "PMI_CONTROL_PORT": "7000",
    }


PBS_JOB = {
    "PBS_JOBID": "123456.polaris-pbs-01.hsn.cm.polaris.alcf.anl.gov",
    "PBS_JOBNAME": "train",
    "PBS_NODEFILE": "/var/spool/pbs/aux/123456.polaris-pbs-01.hsn.cm.polaris.alcf.anl.gov",
    "PBS_O_WORKDIR": "/home/me/proj",
    "PBS_ENVIRONMENT": "PBS_BATCH",
    "PBS_QUEUE": "debug",
    "NCPUS": "64",
}
LAPTOP = {"HOME": "/home/me", "PATH": "/usr/bin:/bin", "USER": "me", "SHELL": "/bin/bash"}
INTEL = {"I_MPI_ROOT": "/opt/intel/oneapi/mpi/2021.12", "I_MPI_HYDRA_TOPOLIB": "hwloc"}
ONE = dict(nnodes=1)

# (launcher, scheduler, rank, local rank, world size, local world size)
TABLE = [
    # a plain machine
    pytest.param(LAPTOP, ("none", "local", 0, 0, 1, 1), id="laptop"),
    pytest.param(
        {**LAPTOP, "RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"},
        ("env", "local", 1, 1, 2, 2),
        id="laptop-RANK-by-hand",
    ),
    # torchrun
    pytest.param(torchrun(2, 2, 4, 4, 0), ("torchrun", "local", 2, 2, 4, 4), id="torchrun-1x4"),
    pytest.param(torchrun(6, 2, 8, 4, 1), ("torchrun", "local", 6, 2, 8, 4), id="torchrun-2x4"),
    # Open MPI
    pytest.param(openmpi(1, 1, 3, 3, 1), ("openmpi", "local", 1, 1, 3, 3), id="openmpi-np3"),
    pytest.param(
        openmpi(5, 1, 8, 4, 2), ("openmpi", "local", 5, 1, 8, 4), id="openmpi-ppr4-2hosts"
    ),
    pytest.param(  # --map-by node: ranks 0 2 on host a, 1 on host b
        openmpi(2, 1, 3, 2, 2), ("openmpi", "local", 2, 1, 3, 2), id="openmpi-map-by-node"
    ),
    # MPICH Hydra and Intel MPI
    pytest.param(hydra(3, 1, 4, 2), ("mpich", "local", 3, 1, 4, 2), id="hydra-n4-ppn2"),
    pytest.param(hydra(4, 1, 5, 2), ("mpich", "local", 4, 1, 5, 2), id="hydra-n5-ppn3-uneven"),
    pytest.param(
        {**INTEL, **hydra(4, 1, 5, 2)}, ("mpich", "local", 4, 1, 5, 2), id="intel-np5-ppn3"
    ),
    # HPE PALS on PBS
    pytest.param(
        {**PBS_JOB, **pals(6, 2, 8, 4, 1)}, ("pals", "pbs", 6, 2, 8, 4), id="pals-pbs-n8-ppn4"
    ),
    pytest.param(
        {**PBS_JOB, **pals(13, 1, 24, 12, 1)},
        ("pals", "pbs", 13, 1, 24, 12),
        id="pals-pbs-aurora-12ppn",
    ),
    # batch shells: one process each, whatever the allocation holds
    pytest.param(batch_shell(8, "4(x2)"), ("none", "slurm", 0, 0, 1, 1), id="sbatch-shell"),
    pytest.param(
        {k: v for k, v in sbatch_job(2, "2", 1).items() if k.startswith("SLURM_")},
        ("none", "slurm", 0, 0, 1, 1),
        id="salloc-shell",
    ),
    pytest.param(PBS_JOB, ("none", "pbs", 0, 0, 1, 1), id="pbs-script"),
    pytest.param(
        {**PBS_JOB, "PBS_ENVIRONMENT": "PBS_INTERACTIVE"},
        ("none", "pbs", 0, 0, 1, 1),
        id="pbs-interactive",
    ),
    # srun --mpi=none
    pytest.param(srun_task(1, 1, 0, 2, "2", 1), ("slurm", "slurm", 1, 1, 2, 2), id="srun-n2"),
    pytest.param(
        srun_task(5, 1, 1, 8, "4(x2)"), ("slurm", "slurm", 5, 1, 8, 4), id="srun-N2n8-block"
    ),
    pytest.param(  # cyclic: node 1 holds ranks 1 3 5 7, so rank 5 is its third
        srun_task(5, 2, 1, 8, "4(x2)", distribution="cyclic"),
        ("slurm", "slurm", 5, 2, 8, 4),
        id="srun-N2n8-cyclic",
    ),
    pytest.param(
        srun_task(5, 1, 1, 7, "4,3"), ("slurm", "slurm", 5, 1, 7, 3), id="srun-N2n7-uneven"
    ),
    pytest.param(
        srun_task(6, 1, 2, 7, "3,2(x2)", 3), ("slurm", "slurm", 6, 1, 7, 2), id="srun-N3n7"
    ),
    pytest.param(  # a second step of the same job
        srun_task(3, 1, 1, 4, "2(x2)", step=1), ("slurm", "slurm", 3, 1, 4, 2), id="srun-step1"
    ),
    # srun --mpi=pmi2: PMI_RANK/PMI_SIZE, yet Slurm knows the layout
    pytest.param(
        {**srun_task(1, 1, 0, 2, "2", 1, distribution="cyclic"), **pmi2(1, 2)},
        ("slurm", "slurm", 1, 1, 2, 2),
        id="pmi2-n2",
    ),
    pytest.param(
        {**srun_task(5, 2, 1, 8, "4(x2)", distribution="cyclic"), **pmi2(5, 8)},
        ("slurm", "slurm", 5, 2, 8, 4),
        id="pmi2-N2n8-cyclic",
    ),
    pytest.param(
        {**srun_task(5, 1, 1, 7, "4,3"), **pmi2(5, 7)},
        ("slurm", "slurm", 5, 1, 7, 3),
        id="pmi2-N2n7-uneven",
    ),
    pytest.param(  # cyclic over uneven nodes: node 0 holds 0 2 4 6
        {**srun_task(6, 3, 0, 7, "4,3", distribution="cyclic"), **pmi2(6, 7)},
        ("slurm", "slurm", 6, 3, 7, 4),
        id="pmi2-N2n7-cyclic",
    ),
    # srun --mpi=pmix
    pytest.param(
        {**srun_task(1, 1, 0, 2, "2", 1), **pmix(1)},
        ("slurm", "slurm", 1, 1, 2, 2),
        id="pmix-n2",
    ),
    pytest.param(
        {**srun_task(6, 3, 0, 8, "4(x2)", distribution="cyclic"), **pmix(6)},
        ("slurm", "slurm", 6, 3, 8, 4),
        id="pmix-N2n8-cyclic",
    ),
    # srun --mpi=cray_shasta: PALS_RANKID without any size
    pytest.param(
        {**srun_task(1, 1, 0, 2, "2", 1), **cray_shasta(1, 0)},
        ("slurm", "slurm", 1, 1, 2, 2),
        id="cray_shasta-n2",
    ),
    pytest.param(
        {**srun_task(5, 1, 1, 8, "4(x2)"), **cray_shasta(5, 1)},
        ("slurm", "slurm", 5, 1, 8, 4),
        id="cray_shasta-N2n8-block",
    ),
    pytest.param(
        {**srun_task(3, 1, 1, 7, "4,3", distribution="cyclic"), **cray_shasta(3, 1)},
        ("slurm", "slurm", 3, 1, 7, 3),
        id="cray_shasta-N2n7-cyclic",
    ),
    # launchers started inside Slurm: their own variables win
    pytest.param(  # srun -N2 --ntasks-per-node=1 torchrun --nnodes=2 --nproc-per-node=4
        {**srun_task(1, 0, 1, 2, "1(x2)"), **pmi2(1, 2), **torchrun(6, 2, 8, 4, 1)},
        ("torchrun", "slurm", 6, 2, 8, 4),
        id="torchrun-in-srun",
    ),
    pytest.param(  # sbatch -N2; mpiexec -n 8 -ppn 4: Hydra starts its proxies with srun
        {**srun_task(1, 0, 1, 2, "1(x2)"), **hydra(6, 2, 8, 4)},
        ("mpich", "slurm", 6, 2, 8, 4),
        id="hydra-in-sbatch",
    ),
    pytest.param(  # the same job's rank 0: its rank matches the proxy's, its size does not
        {**srun_task(0, 0, 0, 2, "1(x2)"), **hydra(0, 0, 8, 4)},
        ("mpich", "slurm", 0, 0, 8, 4),
        id="hydra-in-sbatch-rank0",
    ),
    pytest.param(  # sbatch -n 2; mpirun -np 2 on one node (as captured): the batch's PROCID=0
        {**batch_shell(2, "2", 1), **openmpi(1, 1, 2, 2, 1)},
        ("openmpi", "slurm", 1, 1, 2, 2),
        id="openmpi-in-sbatch",
    ),
    pytest.param(  # sbatch -N2; mpirun -np 8: orted started by srun on each node
        {**srun_task(1, 0, 1, 2, "1(x2)"), **openmpi(5, 1, 8, 4, 2)},
        ("openmpi", "slurm", 5, 1, 8, 4),
        id="openmpi-in-sbatch-2nodes",
    ),
]


@pytest.mark.parametrize(("env", "expected"), TABLE)
def test_rank_table(env: dict[str, str], expected: tuple[object, ...]) -> None:
    info = detect(env)
    got = (
        info.launcher,
        info.scheduler,
        info.rank,
        info.local_rank,
        info.world_size,
        info.local_world_size,
    )
    assert got == expected


def test_rank_table_is_large_enough() -> None:
    assert len(TABLE) >= 27


def test_cray_shasta_outside_slurm_still_needs_a_size() -> None:
    # PALS_RANKID alone outside a Slurm step: no launcher says the world size.
    with pytest.raises(TetherError, match="PALS_RANKID is set but none of PMI_SIZE"):
        detect(cray_shasta(1, 0))


def test_pmi_disagreeing_with_the_step_is_another_launcher() -> None:
    # PMI_RANK matches the proxy's SLURM_PROCID but PMI_SIZE does not: Hydra's own ranks.
    env = {**srun_task(1, 0, 1, 2, "1(x2)"), "PMI_RANK": "1", "PMI_SIZE": "8"}
    info = detect(env)
    assert (info.launcher, info.world_size) == ("mpich", 8)


@pytest.mark.parametrize(
    ("spec", "counts"),
    [("4", [4]), ("4,3", [4, 3]), ("2(x3),1", [2, 2, 2, 1]), ("1(x2),3(x2)", [1, 1, 3, 3])],
)
def test_expand_tasks_per_node(spec: str, counts: list[int]) -> None:
    assert expand_tasks_per_node(spec) == counts


def test_bad_tasks_per_node_names_the_variable() -> None:
    env = {**srun_task(1, 1, 0, 2, "2", 1), "SLURM_STEP_TASKS_PER_NODE": "2(y3)"}
    with pytest.raises(TetherError, match=r"SLURM_STEP_TASKS_PER_NODE='2\(y3\)'"):
        detect(env)


# -- node lists and hostfiles -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("nodelist", "hosts"),
    [
        ("nid001", ["nid001"]),
        ("nid[001-004,010]", ["nid001", "nid002", "nid003", "nid004", "nid010"]),
        ("a[1-2],b3,c[08-10]", ["a1", "a2", "b3", "c08", "c09", "c10"]),
        ("r[1-2]n[1-2]", ["r1n1", "r1n2", "r2n1", "r2n2"]),
        ("gpu-[7]-ib", ["gpu-7-ib"]),
        ("x1000c0s[0-1]b0n0", ["x1000c0s0b0n0", "x1000c0s1b0n0"]),
    ],
)
def test_expand_nodelist(nodelist: str, hosts: list[str]) -> None:
    assert expand_nodelist(nodelist) == hosts


@pytest.mark.parametrize("bad", ["nid[001-", "nid[a-b]", "nid[5-3]"])
def test_bad_nodelist(bad: str) -> None:
    with pytest.raises(TetherError, match="node list"):
        expand_nodelist(bad)


def test_read_hostfile_forms(tmp_path: Path) -> None:
    hostfile = tmp_path / "hosts"
    hostfile.write_text(
        "# nodes\n\nnode1 slots=4\nnode1 slots=4\nnode2:2  # second\n  node3\nnode2\n",
        encoding="utf-8",
    )
    assert hostfile_hosts(hostfile) == ["node1", "node2", "node3"]


@pytest.mark.parametrize(
    ("text", "syntaxes"),
    [
        ("a\nb\n", {"plain"}),
        ("a slots=2\nb max_slots=4\n", {"openmpi"}),
        ("a:2\nb:2\n", {"hydra"}),
        ("a:2\nb slots=2\nc\n", {"hydra", "openmpi", "plain"}),
    ],
)
def test_hostfile_syntaxes(text: str, syntaxes: set[str]) -> None:
    assert parse_hostfile(text).syntaxes == syntaxes


def test_render_hostfile_in_each_syntax() -> None:
    parsed = parse_hostfile("n1:4  # MPICH\nn2 slots=2\nn1:4\nn3\n")
    assert parsed.slots == {"n1": 8, "n2": 2, "n3": 1}
    assert render_hostfile(parsed, "openmpi") == "n1 slots=8\nn2 slots=2\nn3 slots=1\n"
    assert render_hostfile(parsed, "hydra") == "n1:8\nn2:2\nn3:1\n"
    assert render_hostfile(parsed, "plain") == "n1\nn2\nn3\n"
    # a plain list says nothing of slots, in any syntax
    assert render_hostfile(parse_hostfile("a\nb\n"), "openmpi") == "a\nb\n"
    with pytest.raises(TetherError, match="syntax 'slurm'"):
        render_hostfile(parsed, "slurm")


def test_hostfile_for_copies_only_a_foreign_syntax(tmp_path: Path) -> None:
    mpich = tmp_path / "mpich-hosts"
    mpich.write_text("localhost:2\n", encoding="utf-8")
    ompi = tmp_path / "ompi-hosts"
    ompi.write_text("localhost slots=2\n", encoding="utf-8")
    plain = tmp_path / "plain-hosts"
    plain.write_text("localhost\n", encoding="utf-8")
    copy = Path(hostfile_for(str(mpich), "openmpi"))
    assert copy.read_text() == "localhost slots=2\n" and copy.suffix == ".openmpi"
    assert copy.parent == tmp_path / "cache" / "launch"  # the test's TETHER_CACHE_DIR
    assert hostfile_for(str(mpich), "openmpi") == str(copy)  # same content, same name
    assert mpich.read_text() == "localhost:2\n"  # the user's file is left as it is
    assert hostfile_for(str(mpich), "hydra") == str(mpich)
    assert hostfile_for(str(plain), "openmpi") == str(plain)
    assert hostfile_for(str(plain), "hydra") == str(plain)
    assert Path(hostfile_for(str(ompi), "hydra")).read_text() == "localhost:2\n"
    assert Path(hostfile_for(str(ompi), "plain")).read_text() == "localhost\n"


@pytest.mark.parametrize(
    ("flavour", "flag", "text"),
    [
        ("openmpi", "--hostfile", "a slots=2\nb slots=2\n"),
        ("mpich", "--hostfile", "a:2\nb:2\n"),
        ("intel", "-hostfile", "a:2\nb:2\n"),
        ("pals", "--hostfile", "a\nb\n"),
    ],
)
def test_each_mpiexec_gets_its_own_hostfile_syntax(
    tmp_path: Path, flavour: str, flag: str, text: str
) -> None:
    from tether.distributed.launchers import build_command
    from tether.distributed.resolver import resolve
    from tether.distributed.spec import LaunchSpec

    hosts = tmp_path / "hosts"
    hosts.write_text("a:2\nb slots=2\n", encoding="utf-8")  # both spellings in one file
    spec = LaunchSpec(command=["python", "t.py"], hostfile=str(hosts), mpi=flavour)
    resolved, _ = resolve(
        spec, {"PATH": "/usr/bin"}, detect_mpi=lambda *a: Detected(None, None, error="x")
    )
    argv = build_command(resolved)
    assert Path(argv[argv.index(flag) + 1]).read_text() == text


def test_launch_checks_the_command_exists(tmp_path: Path) -> None:
    from tether.distributed.launchers import check_command
    from tether.distributed.spec import LaunchSpec

    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\n", encoding="utf-8")
    env = {"PATH": "/usr/bin:/bin"}
    check_command(LaunchSpec(command=["sh", "-c", "true"]), env)
    check_command(LaunchSpec(command=["python", "x.py"]), {"PATH": ""})  # this Python's bin/
    with pytest.raises(TetherError, match="no such command 'nope-x' \\(not on PATH\\)"):
        check_command(LaunchSpec(command=["nope-x"]), env)
    with pytest.raises(TetherError, match="is not executable; chmod"):
        check_command(LaunchSpec(command=[str(script)]), env)
    script.chmod(0o755)
    check_command(LaunchSpec(command=[str(script)]), env)
    with pytest.raises(TetherError, match="no such file"):
        check_command(LaunchSpec(command=[str(tmp_path / "gone.sh")]), env)
    # On other hosts a path may exist where this machine has none.
    remote = LaunchSpec(command=[str(tmp_path / "gone.sh")], resolved=True, local=False)
    check_command(remote, env)


def _multi_node(**extra: str) -> dict[str, str]:
    return {**FAMILIES["openmpi"], **extra}


def test_master_addr_sources(tmp_path: Path) -> None:
    nodefile = tmp_path / "nodefile"
    nodefile.write_text("pbs-a\npbs-a\npbs-b\n", encoding="utf-8")
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("hf-1 slots=2\nhf-2 slots=2\n", encoding="utf-8")
    slurm = {"SLURM_JOB_ID": "9", "SLURM_JOB_NODELIST": "nid[004-005]"}
    assert detect(_multi_node(PBS_NODEFILE=str(nodefile))).master_addr == "pbs-a"
    assert detect(_multi_node(**slurm)).master_addr == "nid004"
    assert detect(_multi_node(**slurm, SLURM_STEP_NODELIST="nid005")).master_addr == "nid005"
    # An explicit hostfile (tether launch --hostfile) is the most specific.
    env = _multi_node(**slurm, PBS_NODEFILE=str(nodefile), TETHER_HOSTFILE=str(hostfile))
    assert detect(env).master_addr == "hf-1"
    # MASTER_ADDR wins over everything.
    assert detect({**env, "MASTER_ADDR": "10.0.0.7"}).master_addr == "10.0.0.7"
    # No host information at all: this machine.
    assert detect(_multi_node()).master_addr == "127.0.0.1"


def test_single_node_job_uses_loopback(tmp_path: Path) -> None:
    nodefile = tmp_path / "nodefile"
    nodefile.write_text("only-host\n", encoding="utf-8")
    env = {**FAMILIES["openmpi"], "OMPI_COMM_WORLD_LOCAL_SIZE": "8", "PBS_NODEFILE": str(nodefile)}
    assert detect(env).master_addr == "127.0.0.1"  # every rank is here: no name to resolve


def test_missing_hostfile_is_an_error(tmp_path: Path) -> None:
    env = _multi_node(TETHER_HOSTFILE=str(tmp_path / "nope"))
    with pytest.raises(TetherError, match="TETHER_HOSTFILE: hostfile .* does not exist"):
        detect(env)


def test_unknown_node_size_spread_over_hosts(tmp_path: Path) -> None:
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("a\nb\n", encoding="utf-8")
    env = {"RANK": "3", "WORLD_SIZE": "4", "TETHER_HOSTFILE": str(hostfile)}
    info = detect(env)
    assert info.local_world_size == 2 and info.master_addr == "a"


# -- ports ------------------------------------------------------------------------------------
def test_port_from_job_id_is_stable_and_in_range() -> None:
    env = {**FAMILIES["slurm"]}
    port = detect(env).master_port
    assert port == detect(dict(env)).master_port
    assert ranks.PORT_BASE <= port < ranks.PORT_BASE + ranks.PORT_SPAN
    assert detect({**env, "SLURM_STEP_ID": "1"}).job_id == "77.1"  # each step its own port
    assert detect({**env, "MASTER_PORT": "12345"}).master_port == 12345
    ports = {ranks.port_for(str(job)) for job in range(1000, 1200)}
    assert len(ports) > 190  # spread: few collisions between neighbouring job ids


def test_job_id_sources() -> None:
    assert ranks.job_id({}) is None
    assert ranks.job_id({"PBS_JOBID": "123.pbs"}) == "123.pbs"
    assert ranks.job_id({"SLURM_JOB_ID": "5", "SLURM_STEP_ID": "2"}) == "5.2"
    assert ranks.job_id({"SLURM_JOB_ID": "5"}) == "5"
    # the application inside the job is more specific than the job
    assert ranks.job_id({"PBS_JOBID": "123", "PALS_APID": "app-9"}) == "app-9"
    assert ranks.job_id({"PMIX_NAMESPACE": "ns1", "SLURM_JOB_ID": "5"}) == "ns1"
    assert ranks.job_id({"TETHER_LAUNCH_ID": "0193-x", "PMIX_NAMESPACE": "ns1"}) == "0193-x"


def test_every_rank_agrees_on_the_rendezvous() -> None:
    base = {"OMPI_COMM_WORLD_SIZE": "4", "PMIX_NAMESPACE": "1234"}
    seen = {
        (i.master_addr, i.master_port)
        for i in (detect({**base, "OMPI_COMM_WORLD_RANK": str(r)}) for r in range(4))
    }
    assert len(seen) == 1


# -- seeds ------------------------------------------------------------------------------------
def test_rank_seeds_never_collide() -> None:
    seeds = [rank_seed(1234, r) for r in range(100_000)]
    assert len(set(seeds)) == len(seeds)
    assert rank_seed(1234, 0) == 1234
    assert all(0 <= s < 2**32 for s in seeds)


def test_rank_seed_ignores_local_rank() -> None:
    # ezpz's seed*(rank+1)*(local_rank+1) gives rank 1/local 1 and rank 3/local 0 the same seed;
    # ours depends on the global rank alone, so these differ whatever the layout.
    assert rank_seed(7, 1) != rank_seed(7, 3)
    with pytest.raises(TetherError):
        rank_seed(7, -1)
