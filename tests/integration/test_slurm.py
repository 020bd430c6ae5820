"""Batches on a real one-node Slurm cluster (scripts/slurm-up.sh), through submitit.

As root the cluster is installed and started if needed; elsewhere the tests skip with a reason,
except in CI (CI=true), where a missing Slurm is a failure. Jobs are real sbatch arrays of
tether workers; preemption is real too: `scancel --signal=USR2` makes submitit call the
worker's `checkpoint` and requeue the job. (Slurm holds a requeued job back for a while before
it may start again; the tests shorten that hold to two seconds with `scontrol update ...
StartTime=now+2`, which only makes them faster.)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from tether.executors.taskpool import TaskPool
from tether.store import open_store
from tether.track.metrics_file import read_metrics

from ._support import TETHER, World, wait_for

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

    def __init__(self, world: World, settings: dict[str, Any], script: str = SCRIPT) -> None:
        self.world = world
        self.script = world.work / "job.py"
        self.script.write_text(script)
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
    """sbatch refuses the jobs: one line naming the partition, exit 2, and the children made
    ahead end failed with sbatch's word, not queued forever."""
    batch = Batch(world, {"partition": "nosuchpartition"})
    started = time.monotonic()
    proc = batch.run(_tasks(2))
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr
    assert "sbatch refused the batch's jobs" in err and "invalid partition" in err.lower()
    assert "nosuchpartition" in err and "sinfo" in err
    assert time.monotonic() - started < 60
    parent = batch.parent()
    assert parent is not None
    kids = _children(world, parent.name)
    assert len(kids) == 2 and {k["status"] for k in kids} == {"failed"}
    for kid in kids:
        error = _state(kid)["error"]
        assert "sbatch refused" in error and "invalid partition" in error.lower(), error
    assert next(r for r in world.listing() if r["id"] == parent.name)["status"] == "failed"


def _state(row: dict[str, Any]) -> dict[str, Any]:
    return json.loads((Path(row["dir"]) / "state.json").read_text())


def test_ctrl_c_of_a_slurm_batch_ends_its_runs(slurm: None, world: World) -> None:
    """Ctrl-C while the jobs wait: they are cancelled and the children end terminated."""
    batch = Batch(world, {"workers": 1, "additional": ["--hold"]})
    proc = batch.start(_tasks(3))
    try:
        jobs = wait_for(batch.jobs, "the array to be submitted", proc=proc)
        parent = batch.parent()
        assert parent is not None
        wait_for(lambda: len(_children(world, parent.name)) == 3, "the queued children")
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        subprocess.run(["scancel", *batch.jobs()], check=False)
    assert proc.returncode != 0, err
    kids = _children(world, parent.name)
    assert {k["status"] for k in kids} == {"terminated"}, kids
    assert all("before its task started" in _state(k)["error"] for k in kids)
    assert next(r for r in world.listing() if r["id"] == parent.name)["status"] == "terminated"
    assert wait_for(lambda: _squeue(jobs[0]) and not _live(jobs[0]), "the jobs to be cancelled")


def _live(job: str) -> list[str]:
    return [i for i, (state, _) in _squeue(job).items() if state not in ("CANCELLED", "COMPLETED")]


def test_runs_of_killed_jobs_are_brought_in_step_by_tether_runs(slurm: None, world: World) -> None:
    """The submitter is killed (no Ctrl-C to clean up) and the job cancelled while one task
    runs and two wait: `tether runs` itself asks Slurm and ends them all, with its word."""
    batch = Batch(world, {"workers": 1})
    proc = batch.start(_tasks(3), "sleep=60")
    try:
        jobs = wait_for(batch.jobs, "the array to be submitted", proc=proc)
        parent = batch.parent()
        assert parent is not None

        def one_running() -> bool:
            return "running" in {k["status"] for k in _children(world, parent.name)}

        wait_for(one_running, "a child to run", timeout=120, proc=proc)
        proc.kill()  # the submitter goes away; the job runs on
        proc.communicate()
        statuses = sorted(k["status"] for k in _children(world, parent.name))
        assert statuses == ["queued", "queued", "running"]  # Slurm still runs the job
        subprocess.run(["scancel", *jobs], check=True)

        def settled() -> list[dict[str, Any]]:
            kids = _children(world, parent.name)  # `tether runs --json`: it reconciles
            return kids if not {k["status"] for k in kids} & {"queued", "running"} else []

        kids = wait_for(settled, "tether runs to bring the children in step", timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        subprocess.run(["scancel", *batch.jobs()], check=False)
    by_status = Counter(k["status"] for k in kids)
    assert by_status == {"terminated": 3}, kids
    errors = [_state(k)["error"] for k in kids]
    ran = [e for e in errors if e.startswith(f"its Slurm job ended: Slurm job {jobs[0]}")]
    waited = [e for e in errors if "before its task ran" in e]
    assert len(ran) == 1 and len(waited) == 2, errors
    assert all("CANCELLED" in e for e in errors), errors
    assert batch.pool().counts()["completed"] == 0  # the tasks stay undone, for --retry-failed


TRAIN = textwrap.dedent(
    """
    import json, os, time
    from pathlib import Path
    import tether

    @tether.experiment(defaults={"i": 0, "steps": 40, "tasks": []}, snapshot=False)
    def main(cfg, run):
        folder = Path(cfg.save_dir)  # the run's folder: the same in every attempt
        ckpt = folder / "ckpt.json"
        start = json.loads(ckpt.read_text())["next"] if ckpt.exists() else 0
        history = tether.History(run=run, flush_every=0.1)
        with open(folder / "starts.txt", "a") as fh:
            fh.write(f"{start} {history.start_step} {os.environ['SLURM_JOB_ID']}\\n")
        for step in range(start, cfg.steps):
            time.sleep(0.15)
            history.update({"loss": 1 / (step + 1)}, step=step)
            if step % 5 == 4:  # a checkpoint every 5 steps: a requeue goes back to it
                ckpt.write_text(json.dumps({"next": step + 1}))
        return cfg.steps

    if __name__ == "__main__":
        main()
    """
)


def test_a_task_preempted_twice_continues_its_run(slurm: None, world: World) -> None:
    """The acceptance test of requeues: a real Slurm task preempted twice mid-training (USR2:
    submitit checkpoints and requeues the job) is one run with three attempts, in one folder,
    and every step of its History is in metrics.jsonl exactly once."""
    batch = Batch(world, {"workers": 1}, script=TRAIN)
    proc = batch.start("tasks=[0]")
    try:
        parent = wait_for(batch.parent, "the batch run", proc=proc)
        kid = wait_for(lambda: _children(world, parent.name), "the child run", proc=proc)[0]
        run_dir = Path(kid["dir"])

        def at(step: int, attempts: int) -> bool:
            state = _state(kid)
            return (
                len(state.get("attempts") or []) == attempts
                and state["status"] == "running"
                and max(_steps(run_dir), default=-1) >= step
            )

        wait_for(lambda: at(8, 1), "step 8 of the first attempt", timeout=120, proc=proc)
        _preempt(batch.jobs()[0])
        wait_for(lambda: at(22, 2), "step 22 of the second attempt", timeout=120, proc=proc)
        _preempt(batch.jobs()[0])
        _out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            subprocess.run(["scancel", *batch.jobs()], check=False)
    assert proc.returncode == 0, err
    assert "1 tasks: 1 completed" in err
    (kid,) = _children(world, parent.name)
    assert kid["status"] == "completed"
    assert _steps(run_dir) == list(range(40))  # every step once, across three attempts
    state = _state(kid)
    attempts = state["attempts"]
    assert [a["status"] for a in attempts] == ["terminated", "terminated", "completed"]
    assert [a["exit_code"] for a in attempts] == [143, 143, 0]
    assert len({a["job_id"] for a in attempts}) == 1 and attempts[0]["job_id"] == batch.jobs()[0]
    assert all(a["start"] and a["stop"] and a["host"] for a in attempts)
    assert state["started"] == attempts[0]["start"] and state["stopped"] == attempts[2]["stop"]
    starts = [line.split() for line in (run_dir / "starts.txt").read_text().splitlines()]
    assert len(starts) == 3 and starts[0][:2] == ["0", "0"]
    for ckpt, history_start, _job in starts[1:]:
        assert 0 < int(ckpt) <= int(history_start)  # back to a checkpoint, History ahead of it
    pool = batch.pool()
    (row,) = pool.rows()
    assert row.status == "completed" and row.attempts == 3 and row.run == kid["id"]
    shown = world.tether("show", kid["id"]).stdout
    lines = shown[shown.index("attempts") :].splitlines()[1:4]
    assert [line.split()[0] for line in lines] == ["1", "2", "3"]
    assert "terminated  exit 143" in lines[0] and "completed  exit 0" in lines[2]


def _steps(run_dir: Path) -> list[int]:
    return [r["step"] for r in read_metrics(run_dir) if "step" in r]


OP_PROJECT = """\
[ops.train]
exec = "python train.py seed={seed} steps={steps}"
sourcecode = ["train.py"]
output-scalars = false
[ops.train.config]
seed = 0
steps = 30
"""

OP_TRAIN = textwrap.dedent(
    """
    import json, os, time
    from pathlib import Path
    import tether

    @tether.experiment(defaults={"seed": 0, "steps": 30})
    def main(cfg, run):
        ckpt = Path("ckpt.json")  # the trial's run folder is the working directory
        start = json.loads(ckpt.read_text())["next"] if ckpt.exists() else 0
        history = tether.History(flush_every=0.1)
        print(f"trial {cfg.seed} from {start} in run {run.id} ({os.environ['SLURM_JOB_ID']})")
        for step in range(start, cfg.steps):
            time.sleep(0.15)
            history.update({"loss": cfg.seed / (step + 1)}, step=step)
            if step % 5 == 4:
                ckpt.write_text(json.dumps({"next": step + 1}))

    if __name__ == "__main__":
        main()
    """
)


def test_op_batch_on_slurm_trials_attach_and_a_preempted_trial_continues(
    slurm: None, world: World
) -> None:
    """`tether run OP` trials on Slurm: each trial is a child run of the batch, the decorated
    script inside attaches to it (its metrics and config land there; no other run is made),
    and a trial whose job is preempted is continued in the same run by the requeued job."""
    (world.work / "tether.toml").write_text(OP_PROJECT)
    (world.work / "train.py").write_text(OP_TRAIN)
    config = world.work / "slurm.yaml"
    config.write_text("time: 30\ncpus_per_task: 1\nlease_s: 3\nworkers: 1\n")
    argv = [TETHER, "run", "train", "seed=[1,2]", "-y", "--slurm-config", str(config)]
    proc = subprocess.Popen(
        argv,
        cwd=world.work,
        env=world.environ(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    jobs: list[str] = []
    try:

        def first_trial() -> Path | None:
            for row in world.listing():
                if row["name"] == "train" and max(_steps(Path(row["dir"])), default=-1) >= 8:
                    return Path(row["dir"])
            return None

        trial_dir = wait_for(first_trial, "step 8 of the first trial", timeout=120, proc=proc)
        parent = next(r for r in world.listing() if r["name"] == "train+batch")
        jobs = TaskPool.open(Path(parent["dir"])).meta()["jobs"]
        _preempt(jobs[0])
        _out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
        subprocess.run(["scancel", *jobs], check=False)
    assert proc.returncode == 0, err
    rows = world.listing()
    assert sorted(r["name"] for r in rows) == ["train", "train", "train+batch"]  # nothing hidden
    trials = {r["dir"]: r for r in rows if r["name"] == "train"}
    assert all(t["parent"] == parent["id"] for t in trials.values())
    assert all(t["status"] == "completed" for t in trials.values())
    preempted = trials[str(trial_dir)]
    state = _state(preempted)
    assert [a["status"] for a in state["attempts"]] == ["terminated", "completed"]
    assert _steps(trial_dir) == list(range(30))  # once each, across both attempts
    lock = yaml.safe_load((trial_dir / "run.lock").read_text())
    assert lock["flags"]["seed"] == 1 and lock["config"]["steps"] == 30  # the script's config
    other = next(t for t in trials.values() if t is not preempted)
    assert len(_state(other)["attempts"]) == 1 and _steps(Path(other["dir"])) == list(range(30))
    assert not list(world.runs.rglob(".tether"))  # no store inside any run folder


# -- ranks as srun's MPI plug-ins set them ---------------------------------------------------
RANKS_PROBE = textwrap.dedent(
    """
    import json, os
    import tether.distributed as dist
    from tether.jobenv import global_rank

    info = dist.info()  # what setup_torch starts from, without importing torch
    names = ("SLURM_PROCID", "SLURM_LOCALID", "SLURM_NTASKS", "SLURM_NODEID",
             "SLURM_STEP_TASKS_PER_NODE", "PMI_RANK", "PMI_SIZE", "PALS_RANKID", "PMIX_RANK")
    print("RANKS " + json.dumps({
        "rank": info.rank, "local_rank": info.local_rank, "world_size": info.world_size,
        "local_world_size": info.local_world_size, "launcher": info.launcher,
        "scheduler": info.scheduler, "global_rank": list(global_rank(os.environ)),
        "env": {n: os.environ.get(n) for n in names},
    }), flush=True)
    """
)
SRUN_RANKS = ["srun", "-n", "2", "--distribution=cyclic", "--time=2", "--job-name=tether-ranks"]
# What each plug-in shows in the environment, so the test knows the plug-in really ran.
PLUGIN_MARK = {"none": None, "pmi2": "PMI_RANK", "pmix": "PMIX_RANK", "cray_shasta": "PALS_RANKID"}


def _mpi_plugins() -> set[str]:
    proc = subprocess.run(
        ["srun", "--mpi=list"], capture_output=True, text=True, timeout=60, check=False
    )
    text = proc.stdout + proc.stderr
    return {line.strip() for line in text.splitlines() if line.startswith(("\t", " "))}


@pytest.mark.parametrize("plugin", ["none", "pmi2", "pmix", "cray_shasta"])
def test_ranks_under_every_srun_mpi_plugin(slurm: None, tmp_path: Path, plugin: str) -> None:
    if plugin not in _mpi_plugins():
        # Only a missing plug-in skips, in CI too: it is this Slurm's build, not a failure.
        pytest.skip(f"srun --mpi=list does not show {plugin} on this cluster")
    probe = tmp_path / "probe.py"
    probe.write_text(RANKS_PROBE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "PMI", "PALS_"))}
    proc = subprocess.run(
        [*SRUN_RANKS, f"--mpi={plugin}", sys.executable, str(probe)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    seen = [json.loads(ln[6:]) for ln in proc.stdout.splitlines() if ln.startswith("RANKS ")]
    assert len(seen) == 2, proc.stdout + proc.stderr
    for task in seen:
        env_of = task["env"]
        mark = PLUGIN_MARK[plugin]
        if mark is not None:
            assert env_of[mark] == env_of["SLURM_PROCID"], task  # the plug-in set its names
        counts = [int(c) for c in env_of["SLURM_STEP_TASKS_PER_NODE"].split(",")]
        assert (task["launcher"], task["scheduler"]) == ("slurm", "slurm"), task
        assert task["rank"] == int(env_of["SLURM_PROCID"]), task
        assert task["local_rank"] == int(env_of["SLURM_LOCALID"]), task
        assert task["world_size"] == int(env_of["SLURM_NTASKS"]) == 2, task
        assert task["local_world_size"] == counts[int(env_of["SLURM_NODEID"])], task
        assert task["global_rank"] == [task["rank"], 2], task
    assert sorted(t["rank"] for t in seen) == [0, 1]
    assert sorted(t["local_rank"] for t in seen) == [0, 1]
