"""Two hosts on one shared runs root, for real: two sshfs (FUSE) mounts of one folder.

Each mount talks SFTP to its own OpenSSH `sftp-server` through a pipe (`sshfs -o passive`: no
sshd, no key, no network), so the two mount points behave like two NFS clients of one server:
writes through one reach the other only through the server, and file locks mean nothing
across them (this is the setup in which SQLite in the runs root lost half of 480 index rows and
the task pool's database was corrupted). `cache=no` turns off sshfs's own attribute cache,
which unlike NFS has no close-to-open consistency.

The processes find out by themselves that the runs root is shared (fuse.sshfs in
/proc/mounts); each "host" has its own local cache folder (TETHER_CACHE_DIR).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tether import mounts
from tether.executors.taskpool import TaskPool

from ._support import TETHER, wait_for

pytestmark = pytest.mark.integration

SFTP_SERVERS = (
    "/usr/lib/openssh/sftp-server",  # Debian, Ubuntu
    "/usr/libexec/openssh/sftp-server",  # Fedora, RHEL
    "/usr/lib/ssh/sftp-server",  # Arch
    "/usr/libexec/sftp-server",
)
PROCESSES_PER_HOST = 8
RUNS_PER_PROCESS = 5
TASKS = 100


def _sftp_server() -> str | None:
    return next((p for p in SFTP_SERVERS if os.access(p, os.X_OK)), None)


def _fusermount() -> str | None:
    return shutil.which("fusermount3") or shutil.which("fusermount")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; under CI the sshfs test must run (make test installs sshfs)")
    pytest.skip(reason)


class Mount:
    """`source` mounted at `point` through sshfs talking to a local sftp-server."""

    def __init__(self, source: Path, point: Path, server: str) -> None:
        self.point = point
        point.mkdir()
        to_server_r, to_server_w = os.pipe()
        to_fs_r, to_fs_w = os.pipe()
        self.server = subprocess.Popen([server], stdin=to_server_r, stdout=to_fs_w)
        self.fs = subprocess.Popen(
            ["sshfs", "-f", "-o", "passive,cache=no", f":{source}", str(point)],
            stdin=to_fs_r,
            stdout=to_server_w,
            stderr=subprocess.PIPE,
            text=True,
        )
        for fd in (to_server_r, to_server_w, to_fs_r, to_fs_w):
            os.close(fd)

    def mounted(self) -> bool:
        mounts.forget_mounts()
        return mounts.fstype(self.point) == "fuse.sshfs" and os.path.realpath(self.point) in {
            p for p, _ in mounts.mount_table()
        }

    def close(self, fusermount: str) -> None:
        if self.fs.poll() is None:
            subprocess.run([fusermount, "-u", str(self.point)], capture_output=True)
            try:
                self.fs.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.fs.kill()
                self.fs.wait()
        if self.server.poll() is None:
            self.server.terminate()
        self.server.wait(timeout=20)


@pytest.fixture
def two_hosts(tmp_path: Path) -> Iterator[tuple[Path, Path, Path]]:
    """(the folder itself, its mount for host a, its mount for host b)."""
    server, fusermount = _sftp_server(), _fusermount()
    if shutil.which("sshfs") is None:
        _unavailable("sshfs is not installed (scripts/system-deps.sh installs it as root)")
    if server is None:
        _unavailable("OpenSSH's sftp-server is not installed (package openssh-sftp-server)")
    if fusermount is None or not os.access("/dev/fuse", os.R_OK | os.W_OK):
        _unavailable("FUSE is not usable here (no /dev/fuse or fusermount)")
    assert server is not None and fusermount is not None
    source = tmp_path / "server"
    source.mkdir()
    made: list[Mount] = []
    try:
        for name in ("a", "b"):
            mount = Mount(source, tmp_path / f"host-{name}", server)
            made.append(mount)
            try:
                wait_for(mount.mounted, f"the sshfs mount of host {name}", timeout=30)
            except AssertionError as exc:
                _unavailable(f"sshfs could not mount here: {exc}")
        yield source, made[0].point, made[1].point
    finally:
        for mount in made:
            mount.close(fusermount)
        mounts.forget_mounts()


PROCESS = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    import tether
    from tether.executors.taskpool import Outcome, TaskPool
    from tether.executors.worker import Worker

    pool_dir, me, go, log = sys.argv[1], sys.argv[2], sys.argv[4], sys.argv[5]
    n_runs = int(sys.argv[3])
    while not os.path.exists(go):  # all start together
        time.sleep(0.01)
    for i in range(n_runs):
        with tether.start_run({"who": me, "i": i}, name=f"{me}-{i}", snapshot=False) as run:
            run.log_metrics({"loss": 1.0 / (i + 1)}, step=0)
            run.add_tag(me)

    class Runner:
        def setup(self): pass
        def teardown(self): pass
        def interrupted(self, claim): return False
        def run(self, claim):
            with open(log, "a") as fh:
                fh.write(f"{claim.index}\\n")
            cfg = {"task": claim.index}
            with tether.start_run(cfg, name=f"task-{claim.index}", snapshot=False) as run:
                run.log_metrics({"x": claim.index}, step=0)
            return Outcome("completed", run.id)

    # Every process drains the pool from the same moment: under load, one host's processes
    # can still be making their runs when the other host's have claimed every task.
    Path(go + f".ready-{me}").write_text("")
    while len(list(Path(go).parent.glob(Path(go).name + ".ready-*"))) < int(sys.argv[6]):
        time.sleep(0.01)
    report = Worker(TaskPool.open(pool_dir), Runner())()
    print(report.done)
    """
)


def _env(tmp_path: Path, mount: Path, name: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != mounts.SHARED_ENV}
    env.update(
        TETHER_RUNS=str(mount / "runs"),
        TETHER_CACHE_DIR=str(tmp_path / f"cache-{name}"),
        PYTHONFAULTHANDLER="1",
    )
    return env


def _listing(env: dict[str, str], cwd: Path) -> list[tuple]:
    proc = subprocess.run(
        [TETHER, "runs", "--all", "--json"], env=env, cwd=cwd, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    return sorted(
        (r["id"], r["name"], r["status"], r["exit_code"], tuple(r["tags"]), str(r["metrics"]))
        for r in json.loads(proc.stdout)
    )


def test_two_hosts_create_runs_and_drain_one_pool(tmp_path: Path, two_hosts) -> None:
    source, host_a, host_b = two_hosts
    hosts = {"a": host_a, "b": host_b}
    envs = {name: _env(tmp_path, point, name) for name, point in hosts.items()}
    (host_a / "runs").mkdir()
    batch = host_a / "runs" / "batch"
    batch.mkdir()
    mounts.forget_mounts()
    pool = TaskPool.create(batch, list(range(TASKS)))
    assert pool.kind == "files"  # found shared by itself: fuse.sshfs
    script = tmp_path / "process.py"
    script.write_text(PROCESS)
    go = tmp_path / "go"
    procs = []
    for name, point in hosts.items():
        for i in range(PROCESSES_PER_HOST):
            me = f"{name}{i}"
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        str(script),
                        str(point / "runs" / "batch"),
                        me,
                        str(RUNS_PER_PROCESS),
                        str(go),
                        str(tmp_path / f"log-{me}"),
                        str(len(hosts) * PROCESSES_PER_HOST),
                    ],
                    env=envs[name],
                    cwd=tmp_path,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
    go.write_text("go")
    results = [p.communicate(timeout=540) for p in procs]
    errors = "\n".join(err for _out, err in results)
    for proc, (_out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
    assert "database is locked" not in errors and "disk I/O error" not in errors
    assert "Traceback" not in errors, errors

    # The pool: every task ran exactly once, and workers on both hosts did some.
    ran = sorted(int(x) for log in tmp_path.glob("log-*") for x in log.read_text().split())
    assert ran == list(range(TASKS))
    done = {
        me: int(out)
        for me, (out, _err) in zip(
            (f"{n}{i}" for n in hosts for i in range(PROCESSES_PER_HOST)), results, strict=True
        )
    }
    assert sum(done.values()) == TASKS
    assert any(done[f"a{i}"] for i in range(PROCESSES_PER_HOST))
    assert any(done[f"b{i}"] for i in range(PROCESSES_PER_HOST))
    final = TaskPool.open(host_b / "runs" / "batch")
    assert final.counts()["completed"] == TASKS
    assert [(a["attempt"], a["status"]) for a in final.attempts()] == [(1, "completed")] * TASKS

    # No lost run, and no SQLite file in the shared folder.
    folders = [p for p in (source / "runs").iterdir() if p.name[:1].isdigit()]
    assert len(folders) == 2 * PROCESSES_PER_HOST * RUNS_PER_PROCESS + TASKS
    assert not list(source.rglob("*.db")) and not list(source.rglob("*.db-*"))

    # Each host's listing (its own cache, kept current from the journal) is what a rebuild from
    # the run folders gives.
    seen_a, seen_b = _listing(envs["a"], tmp_path), _listing(envs["b"], tmp_path)
    reindex = subprocess.run(
        [TETHER, "runs", "reindex"], env=envs["b"], cwd=tmp_path, capture_output=True, text=True
    )
    assert reindex.returncode == 0, reindex.stderr
    rebuilt = _listing(envs["b"], tmp_path)
    assert len(rebuilt) == len(folders)
    assert seen_a == rebuilt and seen_b == rebuilt
    names = sorted(row[1] for row in rebuilt)
    assert names == sorted(
        [f"task-{i}" for i in range(TASKS)]
        + [f"{n}{p}-{i}" for n in hosts for p in range(PROCESSES_PER_HOST) for i in range(5)]
    )
    assert {row[2] for row in rebuilt} == {"completed"}
