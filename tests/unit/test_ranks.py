"""tether.distributed.ranks: rank, local rank, world size and rendezvous from every launcher family.

Every test passes an explicit environment mapping: nothing here reads or changes os.environ.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.distributed import ranks
from tether.distributed.ranks import RankInfo, detect, expand_nodelist, hostfile_hosts, rank_seed
from tether.errors import TetherError

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
