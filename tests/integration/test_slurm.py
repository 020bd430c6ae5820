"""Batches on a real one-node Slurm cluster (scripts/slurm-up.sh), through submitit.

As root the cluster is installed and started if needed; elsewhere the tests skip with a reason,
except in CI (CI=true), where a missing Slurm is a failure. Jobs are real sbatch arrays of
tether workers; preemption is real too: `scancel --signal=USR2` makes submitit call the
worker's `checkpoint` and requeue the job. (Slurm holds a requeued job back for a while before
it may start again; the tests shorten that hold to two seconds with `scontrol update ...
StartTime=now+2`, which only makes them faster.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tether.executors.taskpool import TaskPool
from tether.store import open_store

from ._support import World, wait_for

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.slurm]

SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    import tether

    @tether.experiment(defaults={"i": 0, "sleep": 0.0, "fail": -1, "tasks": []}, snapshot=False)
    def main(cfg, run):
        time.sleep(cfg.sleep)
        if cfg.i == cfg.fail:
            raise RuntimeError(f"task {cfg.i} fails on purpose")
        run.log_metrics({"value": cfg.i})
        print("task", cfg.i, "on", os.environ.get("SLURM_JOB_ID"))
        return cfg.i

    if __name__ == "__main__":
        main()
    """
)


def _cluster_problem() -> str | None:
    """None when Slurm takes jobs here (starting it as root if needed), else why not."""
    up = ROOT / "scripts" / "slurm-up.sh"
    if os.geteuid() == 0:
        proc = subprocess.run(["bash", str(up)], capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            return f"scripts/slurm-up.sh failed:\n{proc.stdout}\n{proc.stderr}"
        return None
    if shutil.which("sbatch") is None:
        return "Slurm is not installed and this is not root (run: sudo bash scripts/slurm-up.sh)"
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return "no Slurm controller answers (run: sudo bash scripts/slurm-up.sh)"
    return None


@pytest.fixture(scope="session")
def slurm() -> None:
    problem = _cluster_problem()
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI needs the real Slurm: {problem}")
    pytest.skip(problem)


class Batch:
    """One batch script in a test's World, submitted with a slurm config."""

    def __init__(self, world: World, settings: dict[str, Any]) -> None:
        self.world = world
        self.script = world.work / "job.py"
        self.script.write_text(SCRIPT)
        self.config = world.work / "slurm.yaml"
        base = {"time": 30, "cpus_per_task": 1, "lease_s": 3}
        import yaml

        self.config.write_text(yaml.safe_dump({**base, **settings}))

    def argv(self, *overrides: str) -> list[str]:
        return [
            sys.executable,
            str(self.script),
            "--task-to",
            "i",
            "--slurm-config",
            str(self.config),
            *overrides,
        ]

    def run(self, *overrides: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*overrides),
            cwd=self.world.work,
            env=self.world.environ(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, *overrides: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*overrides),
            cwd=self.world.work,
            env=self.world.environ(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def parent(self) -> Path | None:
        for folder in self.world.run_dirs():
            if (folder / "tasks.db").exists():
                return folder
        return None

    def pool(self) -> TaskPool:
        folder = self.parent()
        assert folder is not None
        return TaskPool.open(folder)

    def jobs(self) -> list[str]:
        folder = self.parent()
        if folder is None or not (folder / "tasks.db").exists():
            return []
        return list(self.pool().meta().get("jobs") or [])

    def completed(self) -> int:
        return self.pool().counts()["completed"] if self.parent() else 0


def _tasks(n: int) -> str:
    return f"tasks=[{','.join(str(i) for i in range(n))}]"


def _squeue(job: str) -> dict[str, tuple[str, str]]:
    out = subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", job, "-o", "%i %T %r"], capture_output=True, text=True
    ).stdout
    return {p[0]: (p[1], p[2]) for p in (line.split() for line in out.splitlines()) if len(p) >= 3}


def _preempt(job: str) -> None:
    """USR2 to every running worker of the array (submitit's preemption signal), then lift the
    hold Slurm puts on each requeued job."""
    running = [i for i, (state, _) in _squeue(job).items() if state == "RUNNING"]
    assert running, f"no running worker of job {job} to preempt"
    for job_id in running:
        for _ in range(50):  # "Job can not be altered now": a job between two states
            if subprocess.run(["scancel", "--signal=USR2", job_id], check=False).returncode == 0:
                break
            time.sleep(0.1)
    waiting = set(running)

    def released() -> bool:
        states = _squeue(job)
        for job_id in list(waiting):
            state, reason = states.get(job_id, ("GONE", ""))
            if state == "PENDING" and reason == "BeginTime":
                # Not at once: a job started again within a second of its requeue is killed
                # by slurmd ("Job credential revoked").
                subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now+2"])
                waiting.discard(job_id)
            elif state in ("GONE", "COMPLETED", "FAILED", "CANCELLED"):
                waiting.discard(job_id)  # it had finished its last task
        return not waiting

    wait_for(released, f"the workers of job {job} to be requeued", timeout=60)


def _children(world: World, parent: str) -> list[dict[str, Any]]:
    return [r for r in world.listing() if r.get("parent") == parent]


def test_array_of_20_tasks(slurm: None, world: World) -> None:
    batch = Batch(world, {"array_parallelism": 2, "workers": 4})
    proc = batch.run(_tasks(20))
    assert proc.returncode == 0, proc.stderr
    assert "submitted Slurm job" in proc.stderr and "20 tasks: 20 completed" in proc.stderr
    parent = batch.parent()
    assert parent is not None
    pool = batch.pool()
    assert pool.counts()["completed"] == 20 and len(pool.meta()["jobs"]) == 1
    kids = _children(world, parent.name)
    assert len(kids) == 20 and {k["status"] for k in kids} == {"completed"}
    env = open_store(world.runs).load(kids[0]["id"]).lock.env
    assert env.get("scheduler") == "slurm" and env.get("job_id")
    workers = Counter(a["worker"] for a in pool.attempts())
    assert 1 <= len(workers) <= 4  # array tasks that found the pool empty ran nothing
    parent_row = next(r for r in world.listing() if r["id"] == parent.name)
    assert parent_row["status"] == "completed"


def test_a_failing_task_is_recorded_and_the_others_complete(slurm: None, world: World) -> None:
    batch = Batch(world, {"array_parallelism": 2, "workers": 2})
    proc = batch.run(_tasks(6), "fail=3")
    assert proc.returncode == 1, proc.stderr
    assert "6 tasks: 5 completed, 1 failed" in proc.stderr
    assert "task 3 fails on purpose" in proc.stderr and "--retry-failed" in proc.stderr
    rows = batch.pool().rows()
    assert [r.status for r in rows] == ["completed"] * 3 + ["failed"] + ["completed"] * 2
    assert "Traceback" in (rows[3].error or "")
    failed = open_store(world.runs).load(str(rows[3].run))
    assert failed.status == "failed" and "RuntimeError" in (failed.state.error or "")


def test_queued_children_then_running_then_completed(slurm: None, world: World) -> None:
    """Children exist from submission on as `queued` (here the array is submitted held), then
    the workers mark them running and completed."""
    batch = Batch(world, {"workers": 1, "additional": ["--hold"]})
    proc = batch.start(_tasks(3), "sleep=1.0")
    try:
        jobs = wait_for(batch.jobs, "the array to be submitted", proc=proc)
        parent = batch.parent()
        assert parent is not None
        kids = wait_for(lambda: len(_children(world, parent.name)) == 3, "the queued children")
        statuses = {k["status"] for k in _children(world, parent.name)}
        assert statuses == {"queued"}, statuses
        subprocess.run(["scontrol", "release", jobs[0]], check=True)

        def running() -> bool:
            return "running" in {k["status"] for k in _children(world, parent.name)}

        wait_for(running, "a child to run", timeout=60, proc=proc)
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert kids
        assert {k["status"] for k in _children(world, parent.name)} == {"completed"}
    finally:
        if proc.poll() is None:
            proc.kill()
            subprocess.run(["scancel", *batch.jobs()], check=False)


def test_preempted_job_resumes_with_only_its_undone_tasks(slurm: None, world: World) -> None:
    batch = Batch(world, {"workers": 1})
    proc = batch.start(_tasks(10), "sleep=0.4")
    try:
        wait_for(lambda: batch.completed() >= 3, "3 tasks to complete", timeout=120, proc=proc)
        done_before = {r.index for r in batch.pool().rows() if r.status == "completed"}
        _preempt(batch.jobs()[0])
        _out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            subprocess.run(["scancel", *batch.jobs()], check=False)
    assert proc.returncode == 0, err
    assert "10 tasks: 10 completed" in err
    pool = batch.pool()
    rows = pool.rows()
    assert all(r.status == "completed" for r in rows)
    for r in rows:
        if r.index in done_before:
            assert r.attempts == 1  # what was done before the preemption did not run again
    attempts = pool.attempts()
    assert Counter(a["status"] for a in attempts)["terminated"] <= 1
    completed = Counter(a["idx"] for a in attempts if a["status"] == "completed")
    assert sorted(completed) == list(range(10)) and set(completed.values()) == {1}
    parent = batch.parent()
    assert parent is not None
    kids = _children(world, parent.name)
    assert Counter(k["status"] for k in kids)["completed"] == 10


def test_pool_of_100_preempted_twice_completes_every_task_once(slurm: None, world: World) -> None:
    """The acceptance test: preempt a 100-task pool twice; every task is completed exactly
    once: 100 completed child runs, no duplicates."""
    batch = Batch(world, {"workers": 2, "array_parallelism": 2})
    proc = batch.start(_tasks(100), "sleep=0.05")
    try:
        wait_for(lambda: batch.completed() >= 20, "20 tasks", timeout=120, proc=proc)
        _preempt(batch.jobs()[0])
        wait_for(lambda: batch.completed() >= 60, "60 tasks", timeout=180, proc=proc)
        _preempt(batch.jobs()[0])
        _out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            subprocess.run(["scancel", *batch.jobs()], check=False)
    assert proc.returncode == 0, err
    parent = batch.parent()
    assert parent is not None
    kids = _children(world, parent.name)
    completed = [k for k in kids if k["status"] == "completed"]
    assert len(completed) == 100
    store = open_store(world.runs)
    seen: Counter[int] = Counter(store.load(kid["id"]).lock.config["i"] for kid in completed)
    assert sorted(seen) == list(range(100)) and set(seen.values()) == {1}
    attempts = batch.pool().attempts()
    done = Counter(a["idx"] for a in attempts if a["status"] == "completed")
    assert len(done) == 100 and set(done.values()) == {1}
    assert not any(k["status"] in ("running", "queued") for k in kids)


def test_unknown_partition_passes_sbatch_error_through(slurm: None, world: World) -> None:
    batch = Batch(world, {"partition": "nosuchpartition"})
    started = time.monotonic()
    proc = batch.run(_tasks(2))
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr
    assert "sbatch refused the batch's jobs" in err and "invalid partition" in err.lower()
    assert "nosuchpartition" in err and "sinfo" in err
    assert time.monotonic() - started < 60


def test_runs_of_a_cancelled_batch_are_brought_in_step(slurm: None, world: World) -> None:
    """`reconcile` (for `tether runs`): the jobs of a batch are gone (scancel) while its
    children still say queued: they end terminated, and the tasks stay undone in the pool."""
    from tether.batches.reconcile import reconcile

    batch = Batch(world, {"workers": 1, "additional": ["--hold"]})
    proc = batch.start(_tasks(3))
    try:
        jobs = wait_for(batch.jobs, "the array to be submitted", proc=proc)
        parent = batch.parent()
        assert parent is not None
        wait_for(lambda: len(_children(world, parent.name)) == 3, "the queued children")
        proc.kill()  # the submitter goes away; the jobs stay queued
        proc.communicate()
        store = open_store(world.runs)
        assert reconcile(store) == 0  # still queued in Slurm: nothing to change
        subprocess.run(["scancel", *jobs], check=True)
        wait_for(lambda: reconcile(store) == 3, "the children to be brought in step", timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        subprocess.run(["scancel", *batch.jobs()], check=False)
    kids = _children(world, parent.name)
    assert {k["status"] for k in kids} == {"terminated"}
    assert batch.pool().counts()["pending"] == 3
