"""`tether launch` through real Open MPI: two ranks, a crashing rank, a hung job stopped by the
watchdog, retries, rank prefixes, and SIGTERM. mpiexec comes from Debian's openmpi-bin
(`make system-deps`); when it is missing these tests skip with a reason outside CI and fail in
CI (CI=true), so the real launch is never silently skipped there."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

TETHER = str(Path(sys.executable).parent / "tether")


@pytest.fixture(autouse=True)
def _need_open_mpi() -> None:
    path = shutil.which("mpiexec")
    if path is None:
        reason = "mpiexec is not installed (apt-get install openmpi-bin, or make system-deps)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI must run the MPI launch tests: {reason}")
        pytest.skip(reason)
    version = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
    if "Open MPI" not in version and "OpenRTE" not in version:
        message = f"these tests expect Open MPI, found: {version.strip()[:80]}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


def launch(
    work: Path, *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "PBS_"))}
    full.pop("TETHER_SCHEDULER", None)
    full.update(env or {})
    return subprocess.run(
        [TETHER, "launch", *args],
        cwd=work,
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def read(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_two_ranks(work: Path, runs_root: Path) -> None:
    # One write per line: ranks' partial writes may interleave in mpiexec's output.
    code = "import os, sys; e = os.environ; "
    code += "sys.stdout.write(e['OMPI_COMM_WORLD_RANK'] + ' ' + e['TETHER_LAUNCH_ID'] + '\\n')"
    out = work / "launch.json"
    proc = launch(work, "-n", "2", "--json-out", str(out), "--", "python", "-c", code)
    assert proc.returncode == 0, proc.stderr
    data = read(out)
    ranks = sorted(line.split()[0] for line in proc.stdout.splitlines())
    assert ranks == ["0", "1"]
    assert {line.split()[1] for line in proc.stdout.splitlines()} == {data["run"]}
    assert data["outcome"] == "completed" and data["mpi"] == "openmpi"
    assert data["command"][:5] == ["mpiexec", "-np", "2", "--map-by", "ppr:2:node"]
    assert ("--allow-run-as-root" in data["command"]) == (os.geteuid() == 0)
    run_dir = runs_root / data["run"]
    assert read(run_dir / "launch.json") == data
    assert read(run_dir / "state.json")["status"] == "completed"
    log = (run_dir / "output.log").read_text()
    assert "$ mpiexec -np 2" in log and data["run"] in log


def test_more_ranks_than_cores_oversubscribe(work: Path) -> None:
    cores = len(os.sched_getaffinity(0))
    out = work / "launch.json"
    proc = launch(work, "-n", str(cores + 1), "--json-out", str(out), "--", "true")
    assert proc.returncode == 0, proc.stderr
    assert "--oversubscribe" in read(out)["command"]


def test_rank_prefix(work: Path) -> None:
    code = "import sys; print('hello'); print('oops', file=sys.stderr)"
    proc = launch(work, "-n", "2", "--rank-prefix", "--", "python", "-c", code)
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.splitlines()) == ["[0] hello", "[1] hello"]
    assert "[0] oops" in proc.stderr and "[1] oops" in proc.stderr


def test_a_crashing_rank(work: Path) -> None:
    code = (
        "import os, sys, time\n"
        "rank = int(os.environ['OMPI_COMM_WORLD_RANK'])\n"
        "if rank == 1:\n    sys.exit(3)\n"
        "time.sleep(30)\n"
    )
    out = work / "launch.json"
    t0 = time.monotonic()
    proc = launch(work, "-n", "2", "--json-out", str(out), "--", "python", "-c", code)
    assert time.monotonic() - t0 < 25  # Open MPI aborts the job: rank 0 does not sleep it out
    assert proc.returncode != 0
    data = read(out)
    assert data["outcome"] == "failed" and data["exit_code"] == proc.returncode
    assert data["failed_attempts"] == [1]
    assert data["attempts"][0]["exit_code"] == proc.returncode
    assert f"tether: launch: failed (exit {proc.returncode})" in proc.stderr


def _alive(marker: str) -> list[str]:
    found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout
    return found.split()


def test_a_hung_job_is_stopped_by_the_watchdog(work: Path) -> None:
    marker = f"hung-{uuid.uuid4().hex[:10]}"
    code = f"import sys, time; sys.stdout.write('up\\n'); time.sleep(600)  # {marker}"
    out = work / "launch.json"
    t0 = time.monotonic()
    proc = launch(
        work, "-n", "2", "--idle-timeout", "2", "--json-out", str(out), "--", "python", "-c", code
    )
    assert time.monotonic() - t0 < 60
    assert proc.returncode == 124, proc.stderr
    assert "no output for 2 s (--idle-timeout): stopped the job (attempt 1)" in proc.stderr
    assert proc.stdout.splitlines() == ["up", "up"]
    data = read(out)
    assert data["outcome"] == "idle-timeout" and data["attempts"][0]["outcome"] == "idle-timeout"
    deadline = time.monotonic() + 10
    while _alive(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _alive(marker) == [], "ranks outlived the watchdog"


def test_retries_until_it_works(work: Path) -> None:
    flag = work / "failed-once"
    code = (
        "import os, pathlib, sys\n"
        f"flag = pathlib.Path({str(flag)!r})\n"
        "if os.environ['OMPI_COMM_WORLD_RANK'] == '0' and not flag.exists():\n"
        "    flag.write_text('x'); sys.exit(4)\n"
        "print('ok')\n"
    )
    out = work / "launch.json"
    proc = launch(
        work,
        "-n",
        "2",
        "--retries",
        "2",
        "--backoff",
        "0.1",
        "--json-out",
        str(out),
        "--",
        "python",
        "-c",
        code,
    )
    assert proc.returncode == 0, proc.stderr
    assert "attempt 1 of 3 failed" in proc.stderr and "retrying in 0.1 s" in proc.stderr
    data = read(out)
    assert [a["outcome"] for a in data["attempts"]] == ["failed", "completed"]
    assert data["failed_attempts"] == [1] and data["outcome"] == "completed"


def test_sigterm_stops_the_job_and_records_it(work: Path, runs_root: Path) -> None:
    marker = f"term-{uuid.uuid4().hex[:10]}"
    code = f"import sys, time; sys.stdout.write('up\\n'); time.sleep(600)  # {marker}"
    out = work / "launch.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "PBS_"))}
    proc = subprocess.Popen(
        [TETHER, "launch", "-n", "2", "--json-out", str(out), "--", "python", "-c", code],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "up\n"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until the run is recorded and running
            if out.exists() and read(out)["run_dir"]:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143
    data = read(out)
    assert data["outcome"] == "terminated"
    assert data["attempts"][0]["outcome"] == "terminated"
    assert read(runs_root / data["run"] / "state.json")["status"] == "terminated"
    deadline = time.monotonic() + 10
    while _alive(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _alive(marker) == []


# -- a decorated script: one run, rank 0 its writer -------------------------------------------
RANKED = """\
import os

import tether
from tether import dist


@tether.experiment(defaults={"lr": 0.1})
def main(cfg, run):
    rank = dist.get_rank()
    run.log_metrics({"loss": 0.5 / (rank + 1)}, step=0)
    print(f"rank {rank} of run {run.id}", flush=True)
    if os.environ.get("FAIL_RANK") == str(rank):
        raise ValueError(f"rank {rank} broke on purpose")


main()
"""


def tether_json(work: Path, *args: str) -> Any:
    proc = subprocess.run([TETHER, *args], cwd=work, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_decorated_script_makes_one_run(work: Path, runs_root: Path) -> None:
    (work / "ranked.py").write_text(RANKED)
    proc = launch(work, "-n", "2", "--", "python", "ranked.py")
    assert proc.returncode == 0, proc.stderr
    rows = tether_json(work, "runs", "--all", "--json")
    assert [(r["name"], r["status"]) for r in rows] == [("launch", "completed")]
    run = rows[0]
    run_dir = Path(run["dir"])
    # Rank 0 wrote the run's metrics; the index has them at once (no reindex).
    found = tether_json(work, "runs", "--json", "--where", "metrics.loss = 0.5 and config.lr = 0.1")
    assert [r["id"] for r in found] == [run["id"]]
    for rank in (0, 1):
        log = (run_dir / "ranks" / str(rank) / "output.log").read_text()
        assert f"rank {rank} of run {run['id']}" in log
    assert '"loss": 0.25' in (run_dir / "ranks" / "1" / "metrics.jsonl").read_text()
    assert '"loss": 0.25' not in (run_dir / "metrics.jsonl").read_text()
    shown = tether_json(work, "show", run["id"], "--json")
    assert [(r["rank"], r["status"], r["exit_code"]) for r in shown["ranks"]] == [
        (0, "completed", 0),
        (1, "completed", 0),
    ]
    assert shown["lock"]["flags"]["nprocs"] == 2
    assert read(run_dir / "launch.json")["ranks"] == shown["ranks"]


def test_a_failing_rank_fails_the_run_naming_it(work: Path, runs_root: Path) -> None:
    (work / "ranked.py").write_text(RANKED)
    proc = launch(work, "-n", "2", "--", "python", "ranked.py", env={"FAIL_RANK": "1"})
    assert proc.returncode != 0
    (row,) = tether_json(work, "runs", "--all", "--json")
    state = read(Path(row["dir"]) / "state.json")
    named = f"rank 1 on {os.uname().nodename} failed (exit 1): ValueError: rank 1 broke on purpose"
    assert state["status"] == "failed" and state["error"] == named
    assert f"tether: launch: {named}" in proc.stderr


# -- hostfiles in any syntax, commands that do not exist -------------------------------------
RANK_LINE = (
    "import os, sys; e = os.environ; "
    "sys.stdout.write(e['OMPI_COMM_WORLD_RANK'] + ' of ' + e['OMPI_COMM_WORLD_SIZE'] + '\\n')"
)


@pytest.mark.parametrize("line", ["localhost:2", "localhost slots=2", "localhost\nlocalhost"])
def test_hostfile_of_any_syntax_runs_two_ranks(work: Path, line: str) -> None:
    # `localhost:2` is MPICH's spelling; Open MPI itself stops at it with "illegal character in
    # node name" (exit 255), so tether hands it a copy in its own syntax.
    hosts = work / "hosts"
    hosts.write_text(f"# two slots here\n{line}\n")
    before = hosts.read_bytes()
    out = work / "launch.json"
    proc = launch(
        work, "--hostfile", str(hosts), "--json-out", str(out), "--", "python", "-c", RANK_LINE
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.splitlines()) == ["0 of 2", "1 of 2"]
    command = read(out)["command"]
    given = command[command.index("--hostfile") + 1]
    if ":" in line:
        assert given != str(hosts)
        assert Path(given).read_text() == "localhost slots=2\n"
    else:
        assert given == str(hosts)  # already Open MPI's syntax: passed as it is
    assert hosts.read_bytes() == before  # the user's file is never rewritten


def test_open_mpi_itself_refuses_the_mpich_syntax(work: Path) -> None:
    # Why the copy is needed: the same file straight to mpiexec fails.
    hosts = work / "hosts"
    hosts.write_text("localhost:2\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "PBS_"))}
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    proc = subprocess.run(
        ["mpiexec", "-np", "2", "--hostfile", str(hosts), "true"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0


@pytest.mark.parametrize(
    ("program", "words"),
    [
        ("no-such-program-tether", "no such command 'no-such-program-tether' (not on PATH)"),
        ("./missing.sh", "no such command './missing.sh' (no such file)"),
    ],
)
def test_a_command_that_does_not_exist_is_one_line(
    work: Path, runs_root: Path, program: str, words: str
) -> None:
    proc = launch(work, "-n", "2", "--", program, "arg")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [proc.stderr.strip()]  # one line, no Open MPI banner
    assert words in proc.stderr and "Traceback" not in proc.stderr
    assert not runs_root.exists() or not any(runs_root.iterdir())  # nothing was launched
