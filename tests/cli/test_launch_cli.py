"""`tether launch` through the real console script: dry runs with exact argv, bad input (exit 2
with the numbers), templates, launch.json, the job's exit code, and a third-party scheduler
plug-in installed into the venv for real.

MPI flavours come from fake `mpiexec` scripts on PATH that print a real `--version` text (and,
for runs, start the command themselves), so nothing here needs an MPI installation."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

VERSIONS = {
    "openmpi": "mpiexec (OpenRTE) 4.1.4\n\nReport bugs to http://www.open-mpi.org/community/help/",
    "mpich": "HYDRA build details:\n    Version:                                 4.1.2",
    "pals": "mpiexec version 1.2.12",
    "intel": "Intel(R) MPI Library for Linux* OS, Version 2021.10 Build 20230619",
}

# A stand-in mpiexec: `--version` prints its flavour's text; otherwise it skips the MPICH-style
# options tether writes and runs the command once (one rank), returning its exit code.
FAKE = """#!{python}
import os, sys
args = sys.argv[1:]
if args == ["--version"]:
    print({version!r})
    sys.exit(0)
takes_value = {{"-n", "-np", "-ppn", "--ppn", "--hostfile", "--hosts"}}
i = 0
while i < len(args) and args[i].startswith("-"):
    i += 2 if args[i] in takes_value else 1
os.execvp(args[i], args[i:])
"""


@pytest.fixture
def fake_mpi(tmp_path: Path) -> object:
    def make(flavour: str) -> dict[str, str]:
        bin_dir = tmp_path / f"bin-{flavour}"
        bin_dir.mkdir(exist_ok=True)
        script = bin_dir / "mpiexec"
        script.write_text(FAKE.format(python=sys.executable, version=VERSIONS[flavour]))
        script.chmod(0o755)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "PBS_"))}
        env.pop("TETHER_SCHEDULER", None)
        env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
        return env

    return make


@pytest.fixture
def work(tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


def dry(cli: object, env: dict[str, str], cwd: Path, *args: str) -> list[str]:
    proc = cli("launch", "--dry-run", *args, env=env, cwd=cwd)  # type: ignore[operator]
    assert proc.returncode == 0, proc.stderr
    return shlex.split(proc.stdout)


def words(text: str) -> list[str]:
    return text.split()


def root_flag(flavour: str) -> list[str]:
    return ["--allow-run-as-root"] if flavour == "openmpi" and os.geteuid() == 0 else []


def test_dry_run_prints_the_command(cli, fake_mpi, work: Path) -> None:
    env = fake_mpi("mpich")
    assert dry(cli, env, work, "-n", "2", "--", "python", "train.py", "--lr", "0.1") == [
        "mpiexec",
        "-n",
        "2",
        "-ppn",
        "2",
        "--envall",
        "python",
        "train.py",
        "--lr",
        "0.1",
    ]
    # -np is the same option; the command may follow without `--`.
    assert dry(cli, env, work, "-np", "2", "python", "train.py") == [
        *words("mpiexec -n 2 -ppn 2 --envall python train.py")
    ]


def test_open_mpi_as_root_and_oversubscribed(cli, fake_mpi, work: Path) -> None:
    argv = dry(cli, fake_mpi("openmpi"), work, "-n", str(os.cpu_count() or 1 + 64), "true")
    assert argv[:5] == ["mpiexec", "-np", argv[2], "--map-by", f"ppr:{argv[2]}:node"]
    assert ("--allow-run-as-root" in argv) == (os.geteuid() == 0)


def test_unknown_flags_pass_through_to_the_launcher(cli, fake_mpi, work: Path) -> None:
    env = fake_mpi("mpich")
    argv = dry(cli, env, work, "-n", "2", "--bind-to", "core", "-l", "--", "python", "t.py")
    assert argv == [*words("mpiexec -n 2 -ppn 2 --envall --bind-to core -l python t.py")]
    # Without `--`, a flag with its value in one word works too.
    argv = dry(cli, env, work, "-n", "2", "--bind-to=core", "python", "t.py", "--help")
    assert argv == [*words("mpiexec -n 2 -ppn 2 --envall --bind-to=core python t.py --help")]


def test_minus_n_is_an_option_only_where_click_would_read_one(
    cli, fake_mpi, work: Path, runs_root: Path
) -> None:
    """`-n` reaches click as `-np` (so click builds no "no such option" error, with difflib's
    suggestions, for it); a `-n` that is an option's value or a word of the command stays."""
    env = fake_mpi("mpich")
    argv = dry(cli, env, work, "--label", "-n", "-n", "2", "prog", "-n", "3")
    assert argv == [*words("mpiexec -n 2 -ppn 2 --envall prog -n 3")]
    proc = cli(
        "launch", "--label", "-n", "-n", "1", "--", "python", "-c", "pass", env=env, cwd=work
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(cli("runs", "--json", env=env, cwd=work).stdout)
    assert [r["label"] for r in rows if r["name"] == "launch"] == ["-n"]


def test_the_path_to_the_jobs_start_imports_little(fake_mpi, work: Path) -> None:
    """What a launch loads before its job starts (a dry run stops there): no store, no YAML or
    SQLite (the run record loads while the job runs), no difflib, no templates unless asked."""
    report = (
        "import atexit, json, sys\n"
        "def report(): sys.__stderr__.write('MODULES=' + json.dumps(sorted(sys.modules)))\n"
        "atexit.register(report)\n"
        "sys.argv = ['tether', 'launch', '--dry-run', '-n', '2', '--', 'python', 't.py']\n"
        "from tether.cli.main import main\n"
        "main()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", report],
        cwd=work,
        env=fake_mpi("openmpi"),
        capture_output=True,
        text=True,
    )
    line = [x for x in proc.stderr.splitlines() if x.startswith("MODULES=")]
    assert proc.returncode == 0 and line, proc.stderr
    loaded = set(json.loads(line[-1].removeprefix("MODULES=")))
    unwanted = {"difflib", "yaml", "sqlite3", "tether.store", "tether.session", "tether.lock"}
    assert not loaded & unwanted, loaded & unwanted
    assert "tether.distributed.templates" not in loaded


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["-n", "8", "-ppn", "3", "--nhosts", "2"],
            "-n 8 does not fit -ppn 3 x --nhosts 2 = 6 ranks",
        ),
        (["-n", "4", "--nhosts", "2"], "4 ranks at 2 per host need 2 hosts, but only 1 is known"),
        (["-n", "0"], "-n 0 is not a positive whole number"),
        (["--launcher", "mpirun", "-n", "2"], "--launcher 'mpirun' is not one of"),
        (["--mpi", "lam", "-n", "2"], "--mpi 'lam' is not one of intel, openmpi, mpich, pals"),
        (["--template", "auroa"], "no launch template 'auroa'; did you mean 'aurora'?"),
        (["--scheduler", "slrum"], "no scheduler plug-in 'slrum'"),
        (["--env", "no_equals"], "--env 'no_equals' is not KEY=VALUE"),
    ],
)
def test_bad_input_exits_2_with_the_reason(
    cli, fake_mpi, work: Path, args: list[str], message: str
) -> None:
    proc = cli(
        "launch", "--dry-run", *args, "--", "python", "t.py", env=fake_mpi("mpich"), cwd=work
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("tether: error: ")
    assert message in proc.stderr
    assert proc.stdout == ""


def test_no_command(cli, work: Path) -> None:
    proc = cli("launch", "-n", "2", cwd=work)
    assert proc.returncode == 2
    assert "no command to launch; put it after `--`" in proc.stderr


def test_hostfile_problems(cli, fake_mpi, work: Path) -> None:
    env = fake_mpi("mpich")
    proc = cli("launch", "--dry-run", "--hostfile", "nope.txt", "--", "true", env=env, cwd=work)
    assert proc.returncode == 2 and "hostfile nope.txt does not exist" in proc.stderr
    (work / "hosts").write_text("# two nodes\n\nnode1 slots=4\nnode2:4\nnode1\n")
    proc = cli("launch", "--dry-run", "--hostfile", "hosts", "-n", "12", "true", env=env, cwd=work)
    assert proc.returncode == 2
    assert "-n 12 is more than the 9 slots of 2 hosts (node1:5, node2:4)" in proc.stderr
    # TETHER_HOSTFILE is the default --hostfile.
    env["TETHER_HOSTFILE"] = str(work / "hosts")
    argv = dry(cli, env, work, "-n", "8", "-ppn", "4", "true")
    # A file with Open MPI lines goes to Hydra as a copy in Hydra's own syntax (docs/launch.md).
    copy = Path(argv[argv.index("--hostfile") + 1])
    assert argv == [*words(f"mpiexec -n 8 -ppn 4 --hostfile {copy} --envall true")]
    assert copy != work / "hosts" and copy.read_text() == "node1:5\nnode2:4\n"


def test_slurm_job_uses_srun(cli, fake_mpi, work: Path) -> None:
    env = fake_mpi("openmpi")
    env.update(SLURM_JOB_ID="99", SLURM_JOB_NODELIST="nid[001-002]", SLURM_NTASKS_PER_NODE="2")
    assert dry(cli, env, work, "python", "t.py") == [
        *words("srun --nodes=2 --ntasks=4 --ntasks-per-node=2 python t.py")
    ]
    argv = dry(cli, env, work, "--launcher", "mpiexec", "--nhosts", "1", "python", "t.py")
    assert argv == [
        *words("mpiexec -np 2 --host nid001:2 --map-by ppr:2:node"),
        *root_flag("openmpi"),
        "python",
        "t.py",
    ]


def test_pbs_job_with_the_aurora_template(cli, fake_mpi, work: Path) -> None:
    nodefile = work / "nodefile"
    nodefile.write_text("x4102c0s0b0n0\nx4102c0s1b0n0\n")
    env = fake_mpi("pals")
    env.update(PBS_JOBID="1.aurora", PBS_NODEFILE=str(nodefile))
    argv = dry(cli, env, work, "--template", "aurora", "--", "python", "t.py")
    assert argv == [
        *words(f"mpiexec -n 24 --ppn 12 --hostfile {nodefile} --cpu-bind depth --envall"),
        *words("--depth 8 python t.py"),
    ]


def test_list_templates(cli) -> None:
    proc = cli("launch", "--list-templates")
    assert proc.returncode == 0
    names = [line.split()[0] for line in proc.stdout.splitlines()]
    assert names == [
        "aurora",
        "frontier",
        "generic-openmpi",
        "generic-slurm",
        "perlmutter",
        "polaris",
    ]
    assert "PALS mpiexec" in proc.stdout


def test_dry_run_json(cli, fake_mpi, work: Path) -> None:
    out = work / "plan.json"
    dry(cli, fake_mpi("mpich"), work, "-n", "2", "--json-out", str(out), "--", "true")
    data = json.loads(out.read_text())
    assert data["outcome"] == "dry-run" and data["command"][:3] == ["mpiexec", "-n", "2"]
    assert data["attempts"] == [] and data["mpi"] == "mpich" and data["scheduler"] == "local"


def test_the_exit_code_is_the_jobs(cli, fake_mpi, work: Path, runs_root: Path) -> None:
    """ezpz#246: a wrapper must not hide the job's failure; launch.json tells batch scripts."""
    env = fake_mpi("mpich")
    out = work / "result.json"
    code = "import sys; print('rank says hi'); sys.exit(3)"
    proc = cli(
        "launch", "-n", "1", "--json-out", str(out), "--", "python", "-c", code, env=env, cwd=work
    )
    assert proc.returncode == 3, proc.stderr
    assert "rank says hi" in proc.stdout
    assert "tether: launch: failed (exit 3); see " in proc.stderr
    data = json.loads(out.read_text())
    assert data["outcome"] == "failed" and data["exit_code"] == 3
    assert data["failed_attempts"] == [1]
    assert (runs_root / data["run"] / "launch.json").is_file()
    state = json.loads((runs_root / data["run"] / "state.json").read_text())
    assert state["status"] == "failed" and state["exit_code"] == 3
    lock = (runs_root / data["run"] / "run.lock").read_text()
    assert "name: launch" in lock
    ok = cli("launch", "-n", "1", "--", "python", "-c", "pass", env=env, cwd=work)
    assert ok.returncode == 0, ok.stderr
    listed = cli("runs", "--json", env=env, cwd=work)
    rows = json.loads(listed.stdout)
    assert [r["status"] for r in rows if r["name"] == "launch"] == ["completed", "failed"]


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


PLUGIN = '''
"""A site's scheduler plug-in, as a third party would ship it."""
from tether.distributed.schedulers.base import Scheduler


class FakeSite(Scheduler):
    description = "FakeSite batch system (FAKESITE_JOB)"

    def detect(self, env):
        return bool(env.get("FAKESITE_JOB"))

    def hosts(self, env):
        return ["fs-a", "fs-b"]

    def job_id(self, env):
        return env.get("FAKESITE_JOB")

    def ranks_per_host(self, env):
        return 3

    def build(self, spec):
        hosts = ",".join(spec.hosts)
        return ["fakesite-run", f"--ranks={spec.nprocs}", f"--per-host={spec.ppn}",
                f"--hosts={hosts}", f"--job={spec.job_id}", *spec.command]
'''


@pytest.mark.integration
def test_a_third_party_plugin_installed_into_the_venv(cli, tmp_path: Path, work: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    dist, module = f"tether-fakesite-{tag}", f"tether_fakesite_{tag}"
    pkg = tmp_path / "plugin"
    pkg.mkdir()
    (pkg / f"{module}.py").write_text(PLUGIN)
    (pkg / "pyproject.toml").write_text(
        f"""[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.0.1"

[tool.setuptools]
py-modules = ["{module}"]

[project.entry-points."tether.schedulers"]
fakesite = "{module}:FakeSite"
"""
    )
    installed = _pip("install", "--no-deps", "--no-build-isolation", str(pkg))
    assert installed.returncode == 0, installed.stderr
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "PBS_"))}
        env["FAKESITE_JOB"] = "fs-17"
        assert dry(cli, env, work, "--", "python", "t.py") == [
            *words("fakesite-run --ranks=6 --per-host=3 --hosts=fs-a,fs-b --job=fs-17"),
            "python",
            "t.py",
        ]
        # Outside its jobs it stays out of the way; TETHER_SCHEDULER picks it anyway.
        del env["FAKESITE_JOB"]
        env["TETHER_SCHEDULER"] = "fakesite"
        proc = cli("doctor", "--json", "--check", "scheduler", env=env, cwd=work)
        check = json.loads(proc.stdout)["checks"][0]
        assert "fakesite" in check["details"]["plugins"]
        assert check["details"]["scheduler"] == "fakesite"
    finally:
        removed = _pip("uninstall", "-y", dist)
        assert removed.returncode == 0, removed.stderr
    env.pop("TETHER_SCHEDULER")
    proc = cli("launch", "--dry-run", "--scheduler", "fakesite", "true", env=env, cwd=work)
    assert proc.returncode == 2 and "no scheduler plug-in 'fakesite'" in proc.stderr


def test_the_collector_is_back_on_after_a_launch_in_process(
    fake_mpi, work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`tether launch` pauses the garbage collector while it sets up; called in-process (as
    click's test runner does), it leaves it on, whether the launch ends well or not."""
    import gc

    from tether.cli.launch import launch
    from tether.errors import TetherError

    monkeypatch.setenv("PATH", fake_mpi("mpich")["PATH"])
    monkeypatch.chdir(work)
    assert gc.isenabled()
    assert launch.main(["--dry-run", "-n", "2", "true"], standalone_mode=False) == 0
    assert gc.isenabled()
    with pytest.raises(TetherError, match="no command to launch"):
        launch.main(["-n", "2"], standalone_mode=False)
    assert gc.isenabled()
