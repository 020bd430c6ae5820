"""Batches of tasks on the serial and local executors: `--task-to`, task sources, child runs,
failures, retries, the task pool's requeue contract, and the errors bad input gets."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

import tether
from tether.batches.children import ChildRuns
from tether.batches.decorated import run_tasks
from tether.batches.driver import BatchResult
from tether.batches.flags import EXECUTOR_FLAGS
from tether.errors import ConfigError, TetherError
from tether.executors import available, get_executor
from tether.executors.taskpool import Outcome, TaskPool
from tether.executors.worker import Worker
from tether.lock import read_lock
from tether.session.options import RunOptions, SnapshotOptions
from tether.store import open_store
from tether.track.metrics_file import read_metrics

NO_SNAPSHOT = RunOptions(snapshot=SnapshotOptions(False))


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def children(parent: str) -> list:
    store = open_store()
    return [r for r in store.list() if r.parent == parent]


# -- a decorated main, as users write it --------------------------------------------------------
@tether.experiment(
    defaults={"seed": 0, "lr": 0.1, "model": {"depth": 2}, "tasks": [1, 2, 3], "save_dir": "???"},
    snapshot=False,
)
def train(cfg, run):
    if cfg.seed == 13:
        raise ValueError(f"seed {cfg.seed} is unlucky")
    run.log_metrics({"loss": cfg.seed / 10})
    (Path(cfg.save_dir) / "out.txt").write_text(str(cfg.seed))
    return {"seed": cfg.seed, "depth": cfg.model.depth}


def test_task_to_runs_one_child_run_per_task():
    result = train.cli(["--task-to", "seed"])
    assert isinstance(result, BatchResult) and result.ok
    assert result.counts["completed"] == 3
    assert [r["seed"] for r in result.results] == [1, 2, 3]
    store = open_store()
    parent = store.load(result.parent)
    assert parent.name == "train+batch" and parent.status == "completed"
    assert parent.lock.config["tasks"] == [1, 2, 3]
    kids = children(result.parent)
    assert len(kids) == 3 and {k.status for k in kids} == {"completed"}
    for run_id in result.runs:
        record = store.load(run_id)
        assert record.name == "train" and record.lock.parent == result.parent
        assert "tasks" not in record.lock.config  # the list stays in the parent's config
        assert record.lock.config["save_dir"] == str(record.dir)
        assert (record.dir / "out.txt").read_text() == str(record.lock.config["seed"])
        assert record.metrics()["loss"]["last"] == record.lock.config["seed"] / 10
        assert record.state.pid and record.state.started and record.state.stopped
    assert parent.summary["metrics"]["completed"]["last"] == 3


def test_naga_spellings_and_tasks_key():
    @tether.experiment(defaults={"x": 0, "sweep": {"xs": [5, 6]}}, snapshot=False)
    def job(cfg):
        return cfg.x * 2

    result = job.cli(["--task_to", "x", "--tasks_key", "sweep.xs", "--n_jobs", "1"])
    assert result.results == [10, 12]
    assert set(EXECUTOR_FLAGS["n_jobs"]) == {"--n-jobs", "--n_jobs"}
    assert "--slurm_config" in EXECUTOR_FLAGS["slurm_config"]


def test_tasks_from_txt_and_yaml_files(tmp_path: Path):
    @tether.experiment(defaults={"path": "", "opts": {"a": 1, "b": 2}}, snapshot=False)
    def job(cfg):
        return cfg.path if cfg.path else dict(cfg.opts)

    txt = tmp_path / "files.txt"
    txt.write_text("a.csv\n\n# a comment\nb.csv\n")
    assert job.cli(["--task-to", "path", "--tasks", str(txt)]).results == ["a.csv", "b.csv"]
    listing = tmp_path / "tasks.yaml"
    listing.write_text(yaml.safe_dump([{"a": 10}, {"b": 20}]))
    # A mapping item merges into the mapping at --task-to.
    assert job.cli(["--task-to", "opts", "--tasks", str(listing)]).results == [
        {"a": 10, "b": 2},
        {"a": 1, "b": 20},
    ]


def test_interpolations_resolve_per_task():
    @tether.experiment(defaults={"seed": 0, "name": "run-${seed}", "tasks": [3, 4]}, snapshot=False)
    def job(cfg):
        return cfg.name

    result = job.cli(["--task-to", "seed"])
    assert result.results == ["run-3", "run-4"]
    assert open_store().load(result.runs[1]).lock.config["name"] == "run-4"


def test_a_task_that_changes_its_config_does_not_leak_into_the_next():
    @tether.experiment(defaults={"seed": 0, "extra": {"k": 1}, "tasks": [1, 2, 3]}, snapshot=False)
    def job(cfg):
        seen = cfg.extra.k
        cfg.extra.k = 99
        cfg.other = "added"
        return seen

    assert job.cli(["--task-to", "seed"]).results == [1, 1, 1]


def test_failed_task_is_recorded_and_the_others_go_on(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as stop:
        train.cli(["--task-to", "seed", "+tasks_b=0", "tasks=[1,13,2]"])
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert "3 tasks: 2 completed, 1 failed" in err
    assert "task 1 failed" in err and "ValueError: seed 13 is unlucky" in err
    assert "--retry-failed" in err
    store = open_store()
    parent = next(r for r in store.list() if r.name == "train+batch")
    assert parent.status == "failed"
    pool = TaskPool.open(Path(parent.dir))
    rows = pool.rows()
    assert [r.status for r in rows] == ["completed", "failed", "completed"]
    assert "Traceback" in rows[1].error and "seed 13 is unlucky" in rows[1].error
    failed = store.load(rows[1].run)
    assert failed.status == "failed" and "ValueError" in failed.state.error
    assert "seed 13 is unlucky" in (failed.dir / "output.log").read_text()


def test_retry_failed_runs_only_the_failed_tasks(monkeypatch: pytest.MonkeyPatch):
    flaky = {"fail": True}

    @tether.experiment(defaults={"seed": 0, "tasks": [1, 2, 3, 4]}, snapshot=False)
    def job(cfg):
        if cfg.seed in (2, 4) and flaky["fail"]:
            raise RuntimeError("flaky")
        return cfg.seed

    with pytest.raises(SystemExit):
        job.cli(["--task-to", "seed"])
    parent = next(r for r in open_store().list() if r.name == "job+batch")
    before = TaskPool.open(Path(parent.dir)).rows()
    flaky["fail"] = False
    result = job.cli(["--retry-failed", parent.id[:13]])
    assert result.ok and result.parent == parent.id
    rows = TaskPool.open(Path(parent.dir)).rows()
    assert [r.attempts for r in rows] == [1, 2, 1, 2]  # the completed ones did not run again
    assert [r.run for r in rows][0::2] == [r.run for r in before][0::2]
    assert open_store().load(parent.id).status == "completed"
    statuses = sorted(r.status for r in children(parent.id))
    assert statuses == ["completed"] * 4 + ["failed"] * 2  # the failed attempts stay recorded
    again = job.cli(["--retry-failed", parent.id])  # nothing left to do
    assert again.ok and [r.attempts for r in TaskPool.open(Path(parent.dir)).rows()] == [1, 2, 1, 2]


def test_local_executor_runs_tasks_in_joblib_workers():
    result = train.cli(["--task-to", "seed", "--n-jobs", "2", "tasks=[1,2,3,4,5,6]"])
    assert result.ok and [r["seed"] for r in result.results] == [1, 2, 3, 4, 5, 6]
    store = open_store()
    pids = {store.load(r).state.pid for r in result.runs}
    import os

    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    assert read_lock(store.load(result.runs[0]).dir).parent == result.parent


def test_run_tasks_api_and_lock_text_is_the_yaml_of_the_lock():
    def job(cfg):
        return cfg.i * 10

    result = run_tasks(
        job, {"i": 0, "nested": {"s": "x: y"}}, task_to="i", tasks=[1, 2], options=NO_SNAPSHOT
    )
    assert result.results == [10, 20] and result.seconds > 0
    record = open_store().load(result.runs[0])
    text = (record.dir / "run.lock").read_text()
    assert text == record.lock.to_yaml()  # rendered from parts, equal to the whole


def test_snapshot_once_per_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()
    for args in (["init", "-q"], ["config", "user.email", "t@x"], ["config", "user.name", "t"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    (repo / "code.py").write_text("x = 1\n")
    subprocess.run(["git", "add", "."], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "c"], cwd=repo, check=True)
    monkeypatch.chdir(repo)

    def job(cfg):
        return cfg.i

    result = run_tasks(job, {"i": 0}, task_to="i", tasks=[1, 2, 3])
    refs = subprocess.run(
        ["git", "for-each-ref", "refs/tether/snapshots/"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert len(refs) == 1 and result.parent in refs[0]  # one snapshot, the parent's
    store = open_store()
    parent = store.load(result.parent).lock.sources
    for run_id in result.runs:
        assert store.load(run_id).lock.sources == parent


# -- bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--task-to", "sed"], "did you mean 'seed'"),
        (["--task-to", "model.dpeth"], "did you mean 'model.depth'"),
        (["--task-to", "lr.x"], "'lr' is not a section"),
        (["--task-to", "a..b"], "is not a config key path"),
        (["--task-to", "seed", "--n-jobs", "0"], "--n-jobs must be at least 1, got 0"),
        (["--task-to", "seed", "--n-jobs", "-3"], "--n-jobs must be at least 1, got -3"),
        (["--task-to", "seed", "--n-jobs", "many"], "whole number"),
        (["--task-to", "seed", "--executor", "locl"], "did you mean 'local'"),
        (["--n-jobs", "2"], "--task-to KEY is needed"),
        (["--task-to", "seed", "--tasks-key", "taks"], "did you mean 'tasks'"),
        (["--task-to", "seed", "tasks=[]"], "no tasks"),
        (["--task-to", "seed", "--tasks", "missing.txt"], "no such file"),
    ],
)
def test_bad_batch_input_is_one_line_and_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        train.cli(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("tether: error:")
    assert not open_store().list()  # nothing was made


def test_no_tasks_anywhere_says_where_they_may_come_from():
    @tether.experiment(defaults={"seed": 0}, snapshot=False)
    def job(cfg):
        return cfg.seed

    with pytest.raises(ConfigError, match="no tasks: the config has no `tasks` list.*--tasks FILE"):
        run_tasks(job.__wrapped__, {"seed": 0}, task_to="seed")


def test_slurm_config_needs_a_scheduler_executor(tmp_path: Path):
    conf = tmp_path / "slurm.yaml"
    conf.write_text("partition: debug\n")
    with pytest.raises(TetherError, match="--slurm-config applies to the slurm"):
        run_tasks(
            lambda cfg: 0,
            {"i": 0},
            task_to="i",
            tasks=[1],
            executor="local",
            slurm_config=str(conf),
            options=NO_SNAPSHOT,
        )


def test_unpicklable_task_function_says_why_and_what_to_do():
    lock = threading.Lock()

    def job(cfg):
        with lock:
            return cfg.i

    with pytest.raises(TetherError) as info:
        run_tasks(job, {"i": 0}, task_to="i", tasks=[1], n_jobs=2, options=NO_SNAPSHOT)
    text = str(info.value)
    assert "cannot be sent to local workers" in text and "lock" in text.lower()
    assert "top level of a module" in text and "--executor serial" in text
    assert not open_store().list()
    # The serial executor needs no pickling.
    assert run_tasks(job, {"i": 0}, task_to="i", tasks=[7], options=NO_SNAPSHOT).results == [7]


def test_executors_are_entry_points():
    assert {"serial", "local", "slurm", "pbs", "ray", "dask"} <= set(available())
    assert get_executor("local").__name__ == "LocalExecutor"
    with pytest.raises(TetherError, match="did you mean 'slurm'"):
        get_executor("slrum")


def test_optional_backends_say_what_to_install():
    import importlib.util

    for name, module, hint in (("ray", "ray", "pip install 'ray"), ("dask", "distributed", "dask")):
        if importlib.util.find_spec(module) is not None:
            continue
        with pytest.raises(TetherError, match=hint):
            run_tasks(lambda cfg: 0, {"i": 0}, task_to="i", tasks=[1], executor=name)


def test_sbatch_missing_suggests_the_local_executor(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(TetherError, match="sbatch not found.*--executor local"):
        run_tasks(lambda cfg: 0, {"i": 0}, task_to="i", tasks=[1], executor="slurm")


# -- the task pool and the requeue contract ------------------------------------------------------
def test_checkpoint_hands_the_task_back_and_requeues_only_undone_tasks(tmp_path: Path):
    """submitit calls `checkpoint` from its signal handler while a task runs, then exits: here
    the task itself plays the signal handler. The interrupted task's run waits `queued` and the
    requeued worker continues it: the same run, two attempts, each step of its History once."""
    submitit = pytest.importorskip("submitit")
    state: dict = {"worker": None, "delayed": None}

    def job(cfg, run):
        history = tether.History(run=run)
        first = history.start_step
        for step in range(max(first - 2, 0), 6):  # back to a "checkpoint" two steps before
            history.update({"x": float(cfg.i), "step_seen": float(step)}, step=step)
            if cfg.i == 2 and step == 3 and state["delayed"] is None:
                state["delayed"] = state["worker"].checkpoint()
                raise SystemExit(-1)  # what submitit does after requeueing
        return [cfg.i, first]

    parent = run_tasks(job, {"i": 0}, task_to="i", tasks=[9], options=NO_SNAPSHOT).parent
    folder = tmp_path / "batch"
    folder.mkdir()
    pool = TaskPool.create(folder, [0, 1, 2, 3, 4])
    store = open_store()
    runner = ChildRuns(
        job,
        base_cfg={"i": 0},
        task_to="i",
        store_root=str(store.root),
        parent_dir=str(store.load(parent).dir),
        name="job",
    )
    worker = Worker(pool, runner)
    state["worker"] = worker
    with pytest.raises(SystemExit):
        worker()
    delayed = state["delayed"]
    assert isinstance(delayed, submitit.helpers.DelayedSubmission)
    assert isinstance(delayed.function, Worker) and delayed.function is not worker
    rows = pool.rows()
    assert [r.status for r in rows] == ["completed", "completed", "pending", "pending", "pending"]
    interrupted = store.load(rows[2].run)
    assert interrupted.status == "queued" and "went back to the pool" in interrupted.state.error
    [first] = interrupted.state.attempts
    assert (first.status, first.exit_code, first.stop is not None) == ("terminated", 143, True)
    report = delayed.function()  # the requeued job
    assert report.done == 3
    rows = pool.rows()
    assert [r.status for r in rows] == ["completed"] * 5
    assert [r.attempts for r in rows] == [1, 1, 2, 1, 1]
    assert rows[2].run == interrupted.id  # the same run, continued
    assert rows[2].result == [2, 4]  # the second attempt started after step 3
    done = [a for a in pool.attempts() if a["status"] == "completed"]
    assert sorted(a["idx"] for a in done) == [0, 1, 2, 3, 4]  # each completed exactly once
    record = store.load(interrupted.id)
    assert record.status == "completed"
    assert [a.status for a in record.state.attempts] == ["terminated", "completed"]
    steps = [r["step"] for r in read_metrics(record.dir)]
    assert steps == [0, 1, 2, 3, 4, 5]  # steps 2 and 3 logged again, written once
    assert record.metrics()["step_seen"] == {"last": 5.0, "min": 0.0, "max": 5.0, "step": 5}
    others = [store.load(r.run) for r in rows if r.index != 2]
    assert all(len(o.state.attempts) == 1 for o in others)


def test_pool_claims_leases_and_results(tmp_path: Path):
    pool = TaskPool.create(tmp_path, ["a", "b"], meta={"k": [1]}, lease_s=0.2)
    assert pool.meta() == {"k": [1]}
    first = pool.claim("w1", new_run="r1")
    second = pool.claim("w2", new_run="r2")
    assert (first.item, second.item) == ("a", "b") and pool.claim("w3") is None
    assert pool.wait_hint() is not None
    import time

    time.sleep(0.3)  # w1 stops renewing: its lease runs out
    assert pool.heartbeat([second]) == []
    taken = pool.claim("w3", new_run="r3")
    assert taken.index == 0 and taken.attempt == 2 and taken.run == "r3"
    assert pool.finish(first, Outcome("completed", "r1")) is False  # too late: w3 holds it
    assert pool.finish(taken, Outcome("completed", "r3", result={"x": 1}))
    assert pool.finish(second, Outcome("failed", "r2", error="Traceback ..."))
    rows = pool.rows()
    assert [(r.status, r.run, r.result) for r in rows] == [
        ("completed", "r3", {"x": 1}),
        ("failed", "r2", None),
    ]
    assert [a["status"] for a in pool.attempts()] == ["lost", "completed", "failed"]
    assert pool.reset_for_retry() == 1 and pool.counts()["pending"] == 1


def test_pbs_job_script_text(tmp_path: Path):
    from tether.executors.pbs import job_script

    text = job_script(
        n_workers=4,
        folder=Path("/runs/b/pbs"),
        options={
            "partition": "debug",
            "time": "01:30:00",
            "cpus_per_task": 8,
            "gpus_per_task": 1,
            "mem": "32G",
            "array_parallelism": 2,
            "account": "proj",
            "additional": ["-l filesystems=home", "#PBS -l place=scatter"],
            "setup": ["module load conda"],
        },
        python="/venv/bin/python",
        workdir=Path("/home/me/proj"),
    )
    assert text == (
        "#!/bin/bash\n"
        "#PBS -N tether\n"
        "#PBS -J 0-3%2\n"
        "#PBS -l select=1:ncpus=8:ngpus=1:mem=32gb\n"
        "#PBS -l walltime=01:30:00\n"
        "#PBS -q debug\n"
        "#PBS -A proj\n"
        "#PBS -r y\n"
        "#PBS -o /runs/b/pbs/\n"
        "#PBS -e /runs/b/pbs/\n"
        "#PBS -l filesystems=home\n"
        "#PBS -l place=scatter\n"
        "\n"
        "cd /home/me/proj\n"
        "module load conda\n"
        "exec /venv/bin/python -m tether.executors.pbs /runs/b/pbs/worker.pkl\n"
    )
    single = job_script(
        n_workers=1, folder=Path("/f"), options={}, python="python", workdir=Path("/w")
    )
    assert "#PBS -J" not in single and "#PBS -l select=1:ncpus=1\n" in single


def test_slurm_settings_are_checked(tmp_path: Path):
    from tether.executors.slurm import SlurmExecutor, minutes, sbatch_options

    conf = tmp_path / "slurm.yaml"
    conf.write_text("partition: gpu\ncpus_per_tsk: 4\n")
    with pytest.raises(ConfigError, match="unknown slurm setting 'cpus_per_tsk'.*'cpus_per_task'"):
        SlurmExecutor.read_options(str(conf))
    conf.write_text("- a list\n")
    with pytest.raises(ConfigError, match="is a mapping of settings"):
        SlurmExecutor.read_options(str(conf))
    assert [minutes(v, "x") for v in (90, "90", "01:30:00", "1-00:00:00", "30:00")] == [
        90,
        90,
        90,
        1440,
        30,
    ]
    with pytest.raises(ConfigError, match="time"):
        minutes("soon", "x")
    assert sbatch_options(["--qos=high", "#SBATCH --account=proj", "exclusive"], "x") == {
        "qos": "high",
        "account": "proj",
        "exclusive": True,
    }
    ex = SlurmExecutor(
        options={
            "time": "00:10:00",
            "mem_gb": 4,
            "array_parallelism": 3,
            "additional": {"qos": "x"},
        }
    )
    assert ex.params["time"] == 10 and ex.params["mem"] == "4GB"
    assert ex.params["additional_parameters"] == {"qos": "x"}
    assert ex.workers_for(100) == 3 and ex.workers_for(2) == 2


def test_progress_display_counts(tmp_path: Path):
    from rich.console import Console

    from tether.batches.progress import ProgressDisplay

    pool = TaskPool.create(tmp_path, [1, 2, 3])
    claim = pool.claim("w", new_run="r")
    pool.finish(claim, Outcome("failed", "r", error="x"))
    pool.claim("w", new_run="s")
    console = Console(record=True, width=100, force_terminal=True)
    display = ProgressDisplay(pool, "job (3 tasks)", scheduler=True, enabled=True, console=console)
    with display:
        display.tick()
    shown = console.export_text()
    assert "1/3" in shown and "1 queued" in shown and "1 running" in shown and "1 failed" in shown


# -- `tether run OP` batches on an executor -------------------------------------------------------
def test_op_batch_on_the_local_executor_and_retry(tmp_path: Path, cli, monkeypatch):
    project = tmp_path / "proj"
    project.mkdir()
    (project / "tether.toml").write_text(
        "[ops.square]\n"
        'exec = "python square.py {x}"\n'
        "config = { x = 1 }\n"
        'sourcecode = ["/square.py"]\n'
    )
    (project / "square.py").write_text(
        "import os, sys\n"
        "x = int(sys.argv[1])\n"
        "if x == 3 and not os.path.exists(os.environ['TETHER_PROJECT_DIR'] + '/fixed'):\n"
        "    sys.exit(3)\n"
        "print(f'square: {x * x}')\n"
    )
    proc = cli("run", "square", "x=[1,2,3,4]", "-y", "--n-jobs", "2", cwd=project)
    assert proc.returncode == 1, proc.stderr
    assert "4 tasks: 3 completed, 1 failed" in proc.stderr
    store = open_store()
    parent = next(r for r in store.list() if r.name == "square+batch")
    batch = read_json(Path(parent.dir) / "batch.json")
    assert [t["status"] for t in batch["trials"]] == [
        "completed",
        "completed",
        "failed",
        "completed",
    ]
    kids = children(parent.id)
    assert len(kids) == 4 and all(k.name == "square" for k in kids)
    squares = sorted(
        store.load(k.id).metrics()["square"]["last"] for k in kids if k.status == "completed"
    )
    assert squares == [1, 4, 16]
    assert "--executor=local" in store.load(parent.id).lock.command
    (project / "fixed").write_text("")
    proc = cli("run", "square", "--retry-failed", parent.id[:13], cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert "retrying 1 of 4 tasks" in proc.stderr
    batch = read_json(Path(parent.dir) / "batch.json")
    assert [t["status"] for t in batch["trials"]] == ["completed"] * 4
    assert store.load(parent.id).status == "completed"


def test_a_task_whose_config_does_not_resolve_fails_alone():
    def job(cfg):
        return cfg.out

    result = run_tasks(
        job,
        {"i": "a", "table": {"a": 1, "b": 2}, "out": "${table.${i}}"},
        task_to="i",
        tasks=["a", "zz", "b"],
        options=NO_SNAPSHOT,
    )
    assert result.counts["completed"] == 2 and result.results[0::2] == [1, 2]
    assert "zz" in result.errors[1]
    assert open_store().load(result.runs[1]).status == "failed"


def test_pbs_job_states_from_qstat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """What `tether runs` learns from PBS (no PBS here: a qstat that answers as PBS Pro's
    `qstat -x -t -f -F json` does), in Slurm's words."""
    from tether.executors.pbs import job_states

    answer = {
        "Jobs": {
            "7[].srv": {"job_state": "B"},
            "7[0].srv": {"job_state": "X", "Exit_status": 271, "comment": "qdel by me"},
            "7[1].srv": {"job_state": "R"},
            "8.srv": {"job_state": "F", "Exit_status": 2},
            "9.srv": {"job_state": "F", "Exit_status": 0},
        }
    }
    qstat = tmp_path / "qstat"
    qstat.write_text(f"#!/bin/sh\ncat <<'EOF'\n{json.dumps(answer)}\nEOF\n")
    qstat.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    states = job_states(["7[].srv", "7[0]", "8.srv", "9", "10.srv"])
    assert states is not None
    assert {(j.job, j.state, j.final) for j in states["7[].srv"]} == {
        ("7[]", "RUNNING", False),
        ("7[0]", "CANCELLED", True),
        ("7[1]", "RUNNING", False),
    }
    (cancelled,) = states["7[0]"]
    assert cancelled.describe("PBS") == "PBS job 7[0] CANCELLED (exit status 271; qdel by me)"
    assert [(j.state, j.final) for j in states["8.srv"]] == [("FAILED", True)]
    assert [j.state for j in states["9"]] == ["COMPLETED"]
    assert states["10.srv"] == []
    monkeypatch.setenv("PATH", str(tmp_path / "none"))
    assert job_states(["7"]) is None  # no qstat to ask: nothing is known


def test_reconcile_verdicts(tmp_path: Path):
    """How a run's state follows from its jobs' (tether.batches.reconcile.verdict)."""
    from tether.batches.reconcile import Waiting, verdict
    from tether.executors.slurm import JobState
    from tether.store.state import RunState

    def of(status: str, began: bool, *jobs: JobState, ids: tuple[str, ...] = ("5",)) -> Any:
        w = Waiting("r", tmp_path, RunState(status=status), "slurm", list(ids), began)
        w.found = list(jobs)
        return verdict(w, "Slurm")

    cancelled = JobState("5", "CANCELLED", "None", True)
    failed = JobState("5", "NODE_FAIL", "", True)
    assert of("running", True, JobState("5", "RUNNING", "None", False)) is None
    assert of("queued", False, JobState("5_1", "PENDING", "Priority", False), cancelled) is None
    assert of("running", True, cancelled) == (
        "terminated",
        "its Slurm job ended: Slurm job 5 CANCELLED",
    )
    assert of("running", True, failed)[0] == "failed"
    assert of("running", True)[0] == "unknown"  # known neither to squeue nor to sacct
    assert of("queued", False, cancelled)[0] == "terminated"
    assert of("queued", False, failed) == (
        "failed",
        "its batch's jobs failed before its task ran (Slurm job 5 NODE_FAIL)",
    )
    assert of("queued", False, ids=())[1] == "its batch ended before its jobs were submitted"
