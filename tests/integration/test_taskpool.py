"""The task pool under real processes: atomic claims, leases, and workers killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tether.executors.taskpool import TaskPool

from ._support import wait_for

pytestmark = pytest.mark.integration

WORKER = textwrap.dedent(
    """
    import os, sys, time
    from tether.executors.taskpool import Outcome, TaskPool
    from tether.executors.worker import Worker

    class Runner:
        def __init__(self, log, hold):
            self.log, self.hold = log, hold
        def setup(self): pass
        def teardown(self): pass
        def interrupted(self, claim): pass
        def run(self, claim):
            with open(self.log, "a") as fh:
                fh.write(f"start {claim.index} {os.getpid()} {time.time()}\\n")
            if claim.item == "hold" and claim.attempt == 1:
                time.sleep(self.hold)
            time.sleep(0.002)
            with open(self.log, "a") as fh:
                fh.write(f"end {claim.index} {os.getpid()} {time.time()}\\n")
            return Outcome("completed", claim.run)

    folder, log, lease, hold = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    report = Worker(TaskPool.open(folder, lease_s=lease), Runner(log, hold))()
    print(report.done)
    """
)


def _start(tmp: Path, folder: Path, log: Path, lease: float = 5.0, hold: float = 0.0):
    script = tmp / "worker.py"
    script.write_text(WORKER)
    return subprocess.Popen(
        [sys.executable, str(script), str(folder), str(log), str(lease), str(hold)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_four_workers_claim_every_task_once(tmp_path: Path) -> None:
    folder = tmp_path / "batch"
    folder.mkdir()
    pool = TaskPool.create(folder, list(range(120)))
    log = tmp_path / "log.txt"
    procs = [_start(tmp_path, folder, log) for _ in range(4)]
    for proc in procs:
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    starts = [line.split() for line in log.read_text().splitlines() if line.startswith("start")]
    indexes = sorted(int(s[1]) for s in starts)
    assert indexes == list(range(120))  # each task once, none twice
    assert len({s[2] for s in starts}) >= 2  # the work was shared
    assert pool.counts()["completed"] == 120
    assert all(a["status"] == "completed" for a in pool.attempts())


def test_a_killed_workers_task_is_taken_over_after_its_lease(tmp_path: Path) -> None:
    folder = tmp_path / "batch"
    folder.mkdir()
    lease = 2.0
    pool = TaskPool.create(folder, ["hold", "b", "c"], lease_s=lease)
    log = tmp_path / "log.txt"
    first = _start(tmp_path, folder, log, lease=lease, hold=600)
    wait_for(lambda: log.exists() and "start 0" in log.read_text(), "the task to start", proc=first)
    os.kill(first.pid, signal.SIGKILL)
    first.communicate()
    killed_at = time.time()
    second = _start(tmp_path, folder, log, lease=lease)
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert out.strip() == "3"  # b, c, and the killed worker's task
    starts = [line.split() for line in log.read_text().splitlines() if line.startswith("start 0")]
    assert len(starts) == 2
    first_claim = pool.attempts()[0]
    retaken = float(starts[1][3])
    # Not before the lease of the dead worker ran out: never two live holders at once.
    assert retaken >= first_claim["started"] + lease - 0.05
    assert retaken - killed_at < lease + 5
    attempts = [(a["idx"], a["attempt"], a["status"]) for a in pool.attempts()]
    assert attempts == [
        (0, 1, "lost"),
        (0, 2, "completed"),
        (1, 1, "completed"),
        (2, 1, "completed"),
    ]


SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    import tether

    MARK = Path(sys.argv[1])

    @tether.experiment(defaults={"i": 0, "tasks": list(range(12))}, snapshot=False)
    def main(cfg):
        if cfg.i == 5 and not MARK.exists():
            MARK.write_text("killed")
            os.kill(os.getpid(), signal.SIGKILL)
        return cfg.i

    if __name__ == "__main__":
        main.cli(sys.argv[2:])
    """
)


def test_local_batch_survives_a_worker_killed_with_sigkill(tmp_path: Path) -> None:
    """A joblib worker dies mid-task: the batch starts new workers, which take its task over
    once the lease runs out; every task completes exactly once."""
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, TETHER_TASK_LEASE="2", TETHER_RUNS=str(tmp_path / "runs"))
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "mark"), "--task-to", "i", "--n-jobs", "2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "mark").exists()
    parent = next(p for p in (tmp_path / "runs").iterdir() if (p / "tasks.db").exists())
    pool = TaskPool.open(parent)
    assert pool.counts()["completed"] == 12
    done = sorted(a["idx"] for a in pool.attempts() if a["status"] == "completed")
    assert done == list(range(12))
    assert [r.attempts for r in pool.rows()][5] == 2


ALONE = textwrap.dedent(
    """
    import os, signal, sys, time
    from pathlib import Path
    import tether

    HERE = Path(sys.argv[1])

    @tether.experiment(defaults={"i": 0, "tasks": [0, 1, 2]}, snapshot=False)
    def main(cfg):
        if cfg.i == 0 and not (HERE / "killed").exists():
            (HERE / "killed").write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        if cfg.i == 0:
            (HERE / "rerun").write_text("done")
        if cfg.i == 1:
            # Runs across the kill: until task 0 was killed and done again by another worker.
            deadline = time.monotonic() + 120
            while not (HERE / "rerun").exists():
                if time.monotonic() > deadline:
                    raise TimeoutError("task 0 was never rerun")
                time.sleep(0.05)
        return cfg.i

    if __name__ == "__main__":
        main.cli(sys.argv[2:])
    """
)


def test_a_killed_local_worker_costs_only_its_own_task(tmp_path: Path) -> None:
    """SIGKILL of one loky worker while another worker's task runs: that task goes on in its
    process and completes at its first attempt; only the killed task runs again."""
    script = tmp_path / "job.py"
    script.write_text(ALONE)
    env = dict(os.environ, TETHER_TASK_LEASE="2", TETHER_RUNS=str(tmp_path / "runs"))
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path), "--task-to", "i", "--n-jobs", "3"],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    killed = int((tmp_path / "killed").read_text())
    parent = next(p for p in (tmp_path / "runs").iterdir() if (p / "tasks.db").exists())
    pool = TaskPool.open(parent)
    assert pool.counts()["completed"] == 3
    assert [r.attempts for r in pool.rows()] == [2, 1, 1]
    assert "Traceback" not in proc.stderr
    with pytest.raises(ProcessLookupError):
        os.kill(killed, 0)
