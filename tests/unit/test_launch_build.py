"""Command building: every scheduler x launcher (and MPI flavour) with fixture environments,
asserting the exact argv. Machine facts (root, cores, the MPI flavour) are passed in, so the
results do not depend on where the tests run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tether.distributed import mpi, schedulers
from tether.distributed.launchers import build_command
from tether.distributed.resolver import resolve
from tether.distributed.spec import LaunchSpec
from tether.distributed.templates import apply_template
from tether.errors import TetherError

CMD = ["python", "train.py", "--lr", "0.1"]


def flavour_is(name: str | None) -> Any:
    def detect(program: str = "mpiexec", env: Any = None) -> mpi.Detected:
        if name is None:
            return mpi.Detected(None, None, error="no mpiexec on PATH")
        return mpi.Detected(f"/opt/{name}/bin/mpiexec", name, f"{name} 1.0")

    return detect


def build(
    job_env: dict[str, str],
    /,
    *,
    flavour: str | None = "openmpi",
    as_root: bool = False,
    cores: int = 64,
    template: str | None = None,
    **kw: Any,
) -> list[str]:
    spec = LaunchSpec(list(kw.pop("command", CMD)), **kw)
    if template:
        spec = apply_template(spec, template)
    resolved, sched = resolve(
        spec, job_env, detect_mpi=flavour_is(flavour), as_root=as_root, cores=cores
    )
    argv = sched.build(resolved)
    assert argv == build_command(resolved)  # the built-ins use the default builder
    return argv


@pytest.fixture
def local_env() -> dict[str, str]:
    return {"PATH": "/usr/bin"}


@pytest.fixture
def slurm_env() -> dict[str, str]:
    return {
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NODELIST": "nid[001-002]",
        "SLURM_NTASKS_PER_NODE": "4",
        "PATH": "/usr/bin",
    }


@pytest.fixture
def pbs_env(tmp_path: Path) -> dict[str, str]:
    nodefile = tmp_path / "nodefile"
    nodefile.write_text("x1000c0s0b0n0\nx1000c0s0b0n0\nx1000c0s0b1n0\nx1000c0s0b1n0\n")
    return {"PBS_JOBID": "123.aurora-pbs", "PBS_NODEFILE": str(nodefile), "PATH": "/usr/bin"}


# -- this machine ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("flavour", "expected"),
    [
        ("openmpi", ["mpiexec", "-np", "4", "--map-by", "ppr:4:node"]),
        ("mpich", ["mpiexec", "-n", "4", "-ppn", "4", "--envall"]),
        ("pals", ["mpiexec", "-n", "4", "--ppn", "4", "--envall"]),
        ("intel", ["mpiexec", "-n", "4", "-ppn", "4", "-genvall"]),
    ],
)
def test_local_mpiexec(local_env: dict[str, str], flavour: str, expected: list[str]) -> None:
    assert build(local_env, flavour=flavour, nprocs=4) == [*expected, *CMD]


def test_local_openmpi_as_root_past_the_cores(local_env: dict[str, str]) -> None:
    assert build(local_env, nprocs=4, as_root=True, cores=2) == [
        "mpiexec",
        "-np",
        "4",
        "--map-by",
        "ppr:4:node",
        "--allow-run-as-root",
        "--oversubscribe",
        *CMD,
    ]


def test_root_and_oversubscribe_only_for_open_mpi(local_env: dict[str, str]) -> None:
    argv = build(local_env, flavour="mpich", nprocs=4, as_root=True, cores=2)
    assert "--allow-run-as-root" not in argv and "--oversubscribe" not in argv


def test_user_given_root_flag_is_not_doubled(local_env: dict[str, str]) -> None:
    argv = build(local_env, nprocs=2, as_root=True, extra_args=["--allow-run-as-root"])
    assert argv.count("--allow-run-as-root") == 1


def test_local_srun(local_env: dict[str, str]) -> None:
    assert build(local_env, launcher="srun", nprocs=4) == [
        "srun",
        "--nodes=1",
        "--ntasks=4",
        "--ntasks-per-node=4",
        *CMD,
    ]


def test_local_torchrun(local_env: dict[str, str]) -> None:
    assert build(local_env, launcher="torchrun", nprocs=4) == [
        "torchrun",
        "--standalone",
        "--nnodes=1",
        "--nproc-per-node=4",
        "train.py",
        "--lr",
        "0.1",
    ]


@pytest.mark.parametrize(
    ("command", "program"),
    [
        (["python3", "-m", "pkg.train", "x=1"], ["-m", "pkg.train", "x=1"]),
        (["python", "-c", "pass"], ["--no-python", "python", "-c", "pass"]),
        (["./run.sh", "a"], ["--no-python", "./run.sh", "a"]),
        (["/usr/bin/python3.11", "t.py"], ["t.py"]),
    ],
)
def test_torchrun_program(
    local_env: dict[str, str], command: list[str], program: list[str]
) -> None:
    argv = build(local_env, launcher="torchrun", nprocs=2, command=command)
    assert argv[4:] == program


def test_local_with_flags_passed_through_and_cpu_bind(local_env: dict[str, str]) -> None:
    argv = build(
        local_env,
        nprocs=2,
        cpu_bind="core",
        extra_args=["--mca", "btl", "self,tcp"],
        env={"OMP_NUM_THREADS": "4"},
        rank_prefix=True,
    )
    assert argv == [
        "mpiexec",
        "-np",
        "2",
        "--map-by",
        "ppr:2:node",
        "--bind-to",
        "core",
        "-x",
        "OMP_NUM_THREADS",
        "--tag-output",
        "--mca",
        "btl",
        "self,tcp",
        *CMD,
    ]


def test_local_hostfile(tmp_path: Path, local_env: dict[str, str]) -> None:
    hostfile = tmp_path / "hosts"
    hostfile.write_text("a slots=2\nb slots=2\n")
    assert build(local_env, hostfile=str(hostfile)) == [
        "mpiexec",
        "-np",
        "4",
        "--hostfile",
        str(hostfile),
        "--map-by",
        "ppr:2:node",
        *CMD,
    ]
    # --nhosts 1 of two: the launcher is told which host, not handed the whole file.
    assert build(local_env, hostfile=str(hostfile), nhosts=1, flavour="pals") == [
        "mpiexec",
        "-n",
        "2",
        "--ppn",
        "2",
        "--hosts",
        "a",
        "--envall",
        *CMD,
    ]


# -- Slurm ----------------------------------------------------------------------------------------
def test_slurm_srun(slurm_env: dict[str, str]) -> None:
    assert build(slurm_env, nprocs=8) == [
        "srun",
        "--nodes=2",
        "--ntasks=8",
        "--ntasks-per-node=4",
        *CMD,
    ]


def test_slurm_defaults_from_the_allocation(slurm_env: dict[str, str]) -> None:
    assert build(slurm_env)[:4] == ["srun", "--nodes=2", "--ntasks=8", "--ntasks-per-node=4"]


def test_slurm_subset_names_the_nodes(slurm_env: dict[str, str]) -> None:
    argv = build(slurm_env, nhosts=1, ppn=2, cpu_bind="cores", rank_prefix=True)
    assert argv == [
        "srun",
        "--nodes=1",
        "--ntasks=2",
        "--ntasks-per-node=2",
        "--nodelist=nid001",
        "--cpu-bind=cores",
        "--label",
        *CMD,
    ]


@pytest.mark.parametrize(
    ("flavour", "expected"),
    [
        ("openmpi", ["mpiexec", "-np", "8", "--map-by", "ppr:4:node"]),
        ("mpich", ["mpiexec", "-n", "8", "-ppn", "4", "--envall"]),
        ("pals", ["mpiexec", "-n", "8", "--ppn", "4", "--envall"]),
        ("intel", ["mpiexec", "-n", "8", "-ppn", "4", "-genvall"]),
    ],
)
def test_slurm_mpiexec(slurm_env: dict[str, str], flavour: str, expected: list[str]) -> None:
    # Under Slurm the MPI reads the allocation itself: no host list, no oversubscription.
    argv = build(slurm_env, flavour=flavour, launcher="mpiexec", nprocs=8, as_root=True, cores=1)
    tail = ["--allow-run-as-root"] if flavour == "openmpi" else []
    assert argv == [*expected, *tail, *CMD]


def test_slurm_mpiexec_subset(slurm_env: dict[str, str]) -> None:
    assert build(slurm_env, launcher="mpiexec", nhosts=1) == [
        "mpiexec",
        "-np",
        "4",
        "--host",
        "nid001:4",
        "--map-by",
        "ppr:4:node",
        *CMD,
    ]


def test_slurm_torchrun_one_per_node(slurm_env: dict[str, str]) -> None:
    assert build(slurm_env, launcher="torchrun", nprocs=8) == [
        "srun",
        "--nodes=2",
        "--ntasks=2",
        "--ntasks-per-node=1",
        "torchrun",
        "--nnodes=2",
        "--rdzv-backend=c10d",
        "--rdzv-endpoint=nid001:29400",
        "--rdzv-id=4242",
        "--nproc-per-node=4",
        "train.py",
        "--lr",
        "0.1",
    ]


def test_slurm_compressed_nodelist(slurm_env: dict[str, str]) -> None:
    slurm_env["SLURM_JOB_NODELIST"] = "nid[001-003,010],login[1-2]"
    slurm_env["SLURM_NTASKS_PER_NODE"] = "1"
    resolved, _ = resolve(LaunchSpec(CMD), slurm_env, detect_mpi=flavour_is(None))
    assert resolved.hosts == ["nid001", "nid002", "nid003", "nid010", "login1", "login2"]
    assert (resolved.nprocs, resolved.ppn, resolved.nhosts) == (6, 1, 6)
    assert resolved.job_id == "4242" and resolved.scheduler_name == "slurm"


# -- PBS ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("flavour", "expected"),
    [
        ("pals", ["mpiexec", "-n", "4", "--ppn", "2", "--hostfile", "{nf}", "--envall"]),
        ("mpich", ["mpiexec", "-n", "4", "-ppn", "2", "--hostfile", "{nf}", "--envall"]),
        ("intel", ["mpiexec", "-n", "4", "-ppn", "2", "-hostfile", "{nf}", "-genvall"]),
        (
            "openmpi",
            ["mpiexec", "-np", "4", "--hostfile", "{nf}", "--map-by", "ppr:2:node"],
        ),
    ],
)
def test_pbs_mpiexec(pbs_env: dict[str, str], flavour: str, expected: list[str]) -> None:
    nf = pbs_env["PBS_NODEFILE"]
    want = [w.replace("{nf}", nf) for w in expected]
    # The nodefile lists each host twice: two slots each, so 2 ranks per host by default.
    assert build(pbs_env, flavour=flavour) == [*want, *CMD]


def test_pbs_srun(pbs_env: dict[str, str]) -> None:
    assert build(pbs_env, launcher="srun") == [
        "srun",
        "--nodes=2",
        "--ntasks=4",
        "--ntasks-per-node=2",
        "--nodelist=x1000c0s0b0n0,x1000c0s0b1n0",
        *CMD,
    ]


def test_pbs_torchrun_fans_out_with_mpiexec(pbs_env: dict[str, str]) -> None:
    nf = pbs_env["PBS_NODEFILE"]
    assert build(pbs_env, flavour="pals", launcher="torchrun") == [
        "mpiexec",
        "-n",
        "2",
        "--ppn",
        "1",
        "--hostfile",
        nf,
        "--envall",
        "torchrun",
        "--nnodes=2",
        "--rdzv-backend=c10d",
        "--rdzv-endpoint=x1000c0s0b0n0:29400",
        "--rdzv-id=123.aurora-pbs",
        "--nproc-per-node=2",
        "train.py",
        "--lr",
        "0.1",
    ]


def test_pbs_more_ranks_than_slots(pbs_env: dict[str, str]) -> None:
    with pytest.raises(TetherError) as err:
        build(pbs_env, nprocs=6)
    assert "-n 6 is more than the 4 slots of 2 hosts" in str(err.value)


def test_pbs_without_nodefile(pbs_env: dict[str, str]) -> None:
    del pbs_env["PBS_NODEFILE"]
    with pytest.raises(TetherError, match="PBS_JOBID is set but PBS_NODEFILE is not"):
        build(pbs_env)


def test_pbs_nodefile_missing(pbs_env: dict[str, str], tmp_path: Path) -> None:
    pbs_env["PBS_NODEFILE"] = str(tmp_path / "gone")
    with pytest.raises(TetherError, match="does not exist"):
        build(pbs_env)


# -- templates ------------------------------------------------------------------------------------
@pytest.fixture
def aurora_env(tmp_path: Path) -> dict[str, str]:
    nodefile = tmp_path / "nodefile"
    nodefile.write_text("x4102c0s0b0n0\nx4102c0s1b0n0\n")  # ALCF: one line per host
    return {"PBS_JOBID": "9.aurora", "PBS_NODEFILE": str(nodefile), "PATH": "/usr/bin"}


def test_aurora_template(aurora_env: dict[str, str]) -> None:
    nf = aurora_env["PBS_NODEFILE"]
    argv = build(aurora_env, flavour="pals", template="aurora")
    assert argv == [
        "mpiexec",
        "-n",
        "24",
        "--ppn",
        "12",
        "--hostfile",
        nf,
        "--cpu-bind",
        "depth",
        "--envall",
        "--depth",
        "8",
        *CMD,
    ]


def test_user_flags_win_over_the_template(aurora_env: dict[str, str]) -> None:
    argv = build(
        aurora_env, flavour="pals", template="aurora", ppn=6, cpu_bind="list:1-8", nprocs=12
    )
    assert argv[:10] == [
        "mpiexec",
        "-n",
        "12",
        "--ppn",
        "6",
        "--hostfile",
        aurora_env["PBS_NODEFILE"],
        "--cpu-bind",
        "list:1-8",
        "--envall",
    ]


def test_template_mpi_is_only_a_fallback(aurora_env: dict[str, str]) -> None:
    # No mpiexec to ask: the template's flavour (pals) is assumed...
    assert build(aurora_env, flavour=None, template="aurora")[3] == "--ppn"
    # ...but a detected flavour wins over it.
    assert build(aurora_env, flavour="openmpi", template="aurora")[1] == "-np"


def test_template_env_is_merged_under_the_users() -> None:
    spec = apply_template(LaunchSpec(CMD, env={"OMP_NUM_THREADS": "2"}), "polaris")
    assert spec.env == {"OMP_NUM_THREADS": "2"}
    spec = apply_template(LaunchSpec(CMD), "polaris")
    assert spec.env == {"OMP_NUM_THREADS": "8"} and spec.ppn == 4


def test_template_with_n_and_nhosts_leaves_ppn_to_them(aurora_env: dict[str, str]) -> None:
    argv = build(aurora_env, flavour="pals", template="aurora", nprocs=4, nhosts=2)
    assert argv[1:5] == ["-n", "4", "--ppn", "2"]


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (
            "perlmutter",
            "srun --nodes=2 --ntasks=8 --ntasks-per-node=4 --nodelist=a,b --cpu-bind=cores "
            "--cpus-per-task=32 --gpus-per-node=4",
        ),
        (
            "frontier",
            "srun --nodes=2 --ntasks=16 --ntasks-per-node=8 --nodelist=a,b "
            "--cpus-per-task=7 --gpus-per-task=1 --gpu-bind=closest",
        ),
        ("generic-slurm", "srun --nodes=2 --ntasks=2 --ntasks-per-node=1 --nodelist=a,b"),
    ],
)
def test_slurm_templates(tmp_path: Path, template: str, expected: str) -> None:
    hostfile = tmp_path / "hosts"
    hostfile.write_text("a\nb\n")
    argv = build({"PATH": "/usr/bin"}, template=template, hostfile=str(hostfile))
    assert argv == [*expected.split(), *CMD]


def test_generic_openmpi_forwards_what_is_set() -> None:
    env = {"PATH": "/usr/bin", "PYTHONPATH": "/src"}
    argv = build(env, template="generic-openmpi", nprocs=2)
    assert argv == [
        "mpiexec",
        "-np",
        "2",
        "--map-by",
        "ppr:2:node",
        "-x",
        "PATH",
        "-x",
        "PYTHONPATH",
        *CMD,
    ]


def test_every_shipped_template_loads_and_builds(tmp_path: Path) -> None:
    from tether.distributed.templates import load_template, template_names

    names = template_names()
    assert set(names) >= {
        "aurora",
        "polaris",
        "perlmutter",
        "frontier",
        "generic-slurm",
        "generic-openmpi",
    }
    hostfile = tmp_path / "hosts"
    hostfile.write_text("h1\nh2\n")
    for name in names:
        assert load_template(name)["description"]
        assert build({"PATH": "/usr/bin"}, template=name, hostfile=str(hostfile), flavour="pals")


def test_unknown_template() -> None:
    with pytest.raises(TetherError, match="no launch template 'auroa'.*did you mean 'aurora'"):
        apply_template(LaunchSpec(CMD), "auroa")


def test_template_from_a_file_with_a_bad_key(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text('launcher = "srun"\nppn = 2\nbogus = 1\n')
    with pytest.raises(TetherError, match="unknown key 'bogus'"):
        apply_template(LaunchSpec(CMD), str(path))
    path.write_text('launcher = "srun"\nppn = "two"\n')
    with pytest.raises(TetherError, match="ppn must be a int"):
        apply_template(LaunchSpec(CMD), str(path))
    path.write_text('launcher = "srun"\nppn = 2\nargs = ["--exclusive"]\n')
    spec = apply_template(LaunchSpec(CMD, extra_args=["--mine"]), str(path))
    assert (spec.launcher, spec.ppn, spec.extra_args) == ("srun", 2, ["--exclusive", "--mine"])


# -- MPI flavours ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "flavour"),
    [
        (
            "mpiexec (OpenRTE) 4.1.4\n\nReport bugs to http://www.open-mpi.org/community/help/\n",
            "openmpi",
        ),
        (
            "mpiexec (Open MPI) 5.0.3\n\nReport bugs to https://www.open-mpi.org/community/help/",
            "openmpi",
        ),
        ("HYDRA build details:\n    Version:   4.1.2\n    Release Date: ...\n", "mpich"),
        (
            "Intel(R) MPI Library for Linux* OS, Version 2021.10 Build 20230619\nHYDRA build",
            "intel",
        ),
        ("mpiexec version 1.2.12\n", "pals"),
        ("MVAPICH2 2.3.7 ... HYDRA", "mpich"),
        ("some other mpiexec 1.0", None),
    ],
)
def test_flavour_of_version_text(text: str, flavour: str | None) -> None:
    assert mpi.flavour_of(text) == flavour


def test_unknown_mpi_without_fallback_is_an_error(local_env: dict[str, str]) -> None:
    with pytest.raises(TetherError) as err:
        build(local_env, flavour=None, nprocs=2)
    assert "cannot tell which MPI runs the job: no mpiexec on PATH" in str(err.value)
    assert "--mpi" in str(err.value)
    assert build(local_env, flavour=None, nprocs=2, mpi="mpich")[:3] == ["mpiexec", "-n", "2"]


def test_detect_runs_mpiexec_version(tmp_path: Path) -> None:
    fake = tmp_path / "mpiexec"
    fake.write_text("#!/bin/sh\necho 'HYDRA build details:'\necho '    Version: 4.2.0'\n")
    fake.chmod(0o755)
    found = mpi.detect("mpiexec", {"PATH": str(tmp_path)})
    assert (found.path, found.flavour, found.version) == (
        str(fake),
        "mpich",
        "HYDRA build details:",
    )
    assert mpi.detect("mpiexec", {"PATH": str(tmp_path / "none")}).error == "no mpiexec on PATH"


# -- rank labels ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("launcher", "flavour", "line", "expected"),
    [
        ("mpiexec", "openmpi", "[1,0]<stdout>:hello", "[0] hello"),
        # Open MPI 4 repeats the tag where a write began mid-line.
        ("mpiexec", "openmpi", "[1,3]<stdout>:1[1,3]<stdout>: [1,3]<stdout>:x", "[3] 1 x"),
        ("mpiexec", "mpich", "[2] loss 0.1", "[2] loss 0.1"),
        ("mpiexec", "pals", "5: done", "[5] done"),
        ("srun", None, "  7: done", "[7] done"),
        ("torchrun", None, "[default1]:epoch 2", "[1] epoch 2"),
        ("mpiexec", "openmpi", "a line without a label", "a line without a label"),
    ],
)
def test_relabel(launcher: str, flavour: str | None, line: str, expected: str) -> None:
    from tether.distributed.launchers import LAUNCHERS

    spec = LaunchSpec(CMD, flavour=flavour)
    out = LAUNCHERS[launcher]().relabel(spec, line)
    assert (out if out is not None else line) == expected


def test_torchrun_needs_even_ranks(local_env: dict[str, str], tmp_path: Path) -> None:
    hostfile = tmp_path / "hosts"
    hostfile.write_text("a\nb\n")
    with pytest.raises(TetherError, match="torchrun starts the same number of ranks"):
        build(local_env, launcher="torchrun", nprocs=3, hostfile=str(hostfile))


def test_registry_is_used_for_detection(slurm_env: dict[str, str]) -> None:
    assert schedulers.select(slurm_env).name == "slurm"


def test_open_mpi_tag_stream_rebuilds_lines_per_rank() -> None:
    """Python ranks with PYTHONUNBUFFERED write a line's text and its newline separately;
    Open MPI may forward another rank's chunk in between."""
    stream = mpi.TagStream()
    chunks = [
        "[1,0]<stdout>:hello[1,1]<stdout>:hel",
        "lo[1,0]<stdout>:\n[1,1]<stdout>:\n",
        "[1,0]<stdout>:a\n[1,0]<stdout>:b\n[1,1]<std",  # a tag cut in two
        "out>:c[1,1]<stdout>:\n",
        "--------\nmpiexec's own message\n",  # untagged: mpiexec itself
        "[1,1]<stdout>:no newline at the end",
    ]
    out = "".join(stream.feed(c) for c in chunks) + stream.flush()
    assert out.splitlines() == [
        "[0] hello",
        "[1] hello",
        "[0] a",
        "[0] b",
        "[1] c",
        "--------",
        "mpiexec's own message",
        "[1] no newline at the end",
    ]


def test_line_labeller_keeps_partial_lines_whole() -> None:
    from tether.distributed.launchers import Srun

    labeller = Srun().labeller(LaunchSpec(CMD))
    out = labeller.feed("0: par") + labeller.feed("tial\n1: x\n[") + labeller.flush()
    assert out.splitlines() == ["[0] partial", "[1] x", "["]


def test_every_launcher_a_spec_accepts_has_a_builder() -> None:
    from tether.distributed import spec
    from tether.distributed.launchers import LAUNCHERS

    assert tuple(LAUNCHERS) == spec.LAUNCHERS
