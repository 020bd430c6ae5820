"""`tether run OP --optimize`: searches on real Optuna studies, real `tether` processes and real
run folders (the example of examples/search), on the local executor and on the one-node Slurm.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tether.clock import parse_iso

from ._support import TETHER, World, wait_for

optuna = pytest.importorskip("optuna")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "search"
pytestmark = [pytest.mark.integration]

SPACE = ["lr=loguniform(1e-4,1e-1)", "width=uniform(8,128)", "act=[relu,tanh]"]
SEARCH = ["run", "train", *SPACE, "--minimize", "loss"]
# The example's command (examples/search/tether.toml).
EXAMPLE_SEARCH = [
    *SEARCH,
    "--optimize",
    "tpe",
    "--trials",
    "20",
    "--n-jobs",
    "2",
    "--prune",
    "median",
]


def _project(world: World) -> None:
    for name in ("tether.toml", "train.py"):
        shutil.copyfile(EXAMPLE / name, world.work / name)


def _batch(world: World) -> dict[str, Any]:
    [batch] = [r for r in world.listing() if r["name"] == "train+batch"]
    return batch


def _trials(world: World) -> list[dict[str, Any]]:
    return [r for r in world.listing() if r["name"] == "train"]


def _study(batch_dir: str) -> Any:
    from tether.search.study import load_study

    return load_study(Path(batch_dir))


def _state(run_dir: str) -> dict[str, Any]:
    return json.loads((Path(run_dir) / "state.json").read_text())


def _steps(run_dir: str) -> list[int]:
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [row["step"] for row in map(json.loads, lines) if "step" in row]


def _finished_by_slot(study: Any) -> dict[int, list[Any]]:
    slots: dict[int, list[Any]] = {}
    for t in study.get_trials(deepcopy=False):
        if t.state.is_finished() and t.state.name != "FAIL":
            slots.setdefault(t.user_attrs["tether_slot"], []).append(t)
    return slots


def _check_marks(world: World, batch: dict[str, Any]) -> None:
    """Pruned trials are terminated runs tagged `pruned`; the best trial's run alone is `best`."""
    study = _study(batch["dir"])
    runs = {r["id"]: r for r in _trials(world)}
    for t in study.get_trials(deepcopy=False):
        run = runs[t.user_attrs["tether_run"]] if "tether_run" in t.user_attrs else None
        if t.state.name == "PRUNED":
            assert run is not None and run["status"] == "terminated", t
            assert "pruned" in run["tags"], run
            state = _state(run["dir"])
            assert state["exit_code"] == 77 and "pruned" in state["error"]
            assert _steps(run["dir"])[-1] == max(t.intermediate_values)  # stopped there
        elif t.state.name == "COMPLETE":
            assert run is not None and run["status"] == "completed" and "pruned" not in run["tags"]
    best = [r["id"] for r in runs.values() if "best" in r["tags"]]
    assert best == [study.best_trial.user_attrs["tether_run"]]


def test_a_20_trial_tpe_search_keeps_both_workers_busy_and_show_prints_the_study(
    world: World,
) -> None:
    """No barrier: a worker whose trial ends asks the study for the next one at once, while the
    other worker's trial goes on. With a barrier (Hydra's Optuna sweeper: batches of n_jobs
    trials) half the trials would start with no other trial running (a batch's first)."""
    _project(world)
    proc = world.tether(*EXAMPLE_SEARCH)
    assert proc.returncode == 0, proc.stderr
    batch = _batch(world)
    trials = _trials(world)
    assert len(trials) == 20 and all(t["parent"] == batch["id"] for t in trials)
    study = _study(batch["dir"])
    slots = _finished_by_slot(study)
    assert sorted(slots) == list(range(20)) and all(len(v) == 1 for v in slots.values())
    spans = sorted(
        (parse_iso(s["started"]), parse_iso(s["stopped"]))
        for s in (_state(t["dir"]) for t in trials)
    )
    # The trials running (started, not yet stopped) when each trial after the first two began.
    running_at_start = [
        sum(1 for a, b in spans[:k] if b > start) for k, (start, _) in enumerate(spans) if k >= 2
    ]
    assert max(running_at_start) <= 1  # two workers: never more than two trials at once
    busy = sum(1 for n in running_at_start if n == 1)
    assert busy >= 0.7 * len(running_at_start), running_at_start
    _check_marks(world, batch)
    shown = world.tether_ok("show", batch["id"][:13])
    best = study.best_trial
    assert f"best:     trial {best.number} (run {best.user_attrs['tether_run'][:13]})" in shown
    importance = shown.split("importance:", 1)[1].split("trials", 1)[0]
    assert {"lr", "width", "act"} <= {line.split()[0] for line in importance.strip().splitlines()}
    assert (
        len([line for line in shown.splitlines() if " complete " in line or " pruned " in line])
        == 20
    )
    data = json.loads(world.tether_ok("show", batch["id"][:13], "--json"))
    assert data["study"]["best"]["number"] == best.number
    assert set(data["study"]["importance"]) == {"lr", "width", "act"}


def test_a_search_killed_after_8_trials_resumes_to_20_without_repeating_a_trial(
    world: World,
) -> None:
    """SIGKILL of the whole batch (driver, workers and trials) after 8 finished trials; the same
    command with --resume goes on to 20: the finished trials are not run again and the ones in
    flight continue in their own runs, as the same trials of the study."""
    _project(world)
    env = {"TETHER_TASK_LEASE": "2"}  # a killed worker's trial is taken over this soon
    proc = subprocess.Popen(
        [TETHER, *EXAMPLE_SEARCH],
        cwd=world.work,
        env=world.environ(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )

    def eight_finished() -> list[Any] | None:
        journal = list(world.runs.glob("*/study.journal"))
        if not journal:
            return None
        done = [t for t in _study(str(journal[0].parent)).get_trials() if t.state.is_finished()]
        return done if len(done) >= 8 else None

    try:
        wait_for(eight_finished, "8 finished trials", timeout=180, proc=proc)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    # What a lost node leaves: the trials' own processes gone too (any in a group of their own).
    for trial in _trials(world):
        pid = _state(trial["dir"]).get("pid")
        if _state(trial["dir"])["status"] == "running" and pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    batch = _batch(world)
    before = {
        t.number: t.user_attrs["tether_run"]
        for t in _study(batch["dir"]).get_trials()
        if t.state.is_finished() and t.state.name != "FAIL"
    }
    assert 8 <= len(before) < 20
    resumed = world.tether(*EXAMPLE_SEARCH, "--resume", env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming search {batch['id'][:13]}" in resumed.stderr
    assert [r["id"] for r in world.listing() if r["name"] == "train+batch"] == [batch["id"]]
    study = _study(batch["dir"])
    slots = _finished_by_slot(study)
    assert sorted(slots) == list(range(20)) and all(len(v) == 1 for v in slots.values())
    finished = {t.number: t.user_attrs["tether_run"] for v in slots.values() for t in v}
    assert {n: finished[n] for n in before} == before  # the same trials, the same runs
    trials = _trials(world)
    assert sorted(t["id"] for t in trials) == sorted(finished.values())  # one run per trial
    for number, run_id in before.items():
        run = next(t for t in trials if t["id"] == run_id)
        assert len(_state(run["dir"])["attempts"]) == 1, number  # not run again
    params = [tuple(sorted(t.params.items())) for v in slots.values() for t in v]
    assert len(set(params)) == 20
    assert not [t for t in study.get_trials() if t.state.name == "RUNNING"]
    for run in trials:  # a trial in flight at the kill went on in its run, as its next attempt
        attempts = _state(run["dir"])["attempts"]
        assert len(attempts) <= 2 and attempts[-1]["status"] in ("completed", "terminated")
    _check_marks(world, batch)


def test_pruned_trials_are_marked_and_the_others_run_every_epoch(world: World) -> None:
    """A seeded random search, one trial at a time: the median pruner stops the trials that do
    worse than the median of the completed ones at the same epoch."""
    _project(world)
    proc = world.tether(
        *SEARCH, "--optimize", "random", "--seed", "1", "--trials", "10", "--prune", "median"
    )
    assert proc.returncode == 0, proc.stderr
    batch = _batch(world)
    study = _study(batch["dir"])
    states = [t.state.name for t in study.get_trials()]
    assert "PRUNED" in states and "COMPLETE" in states, states
    for t in study.get_trials():
        if t.state.name == "COMPLETE":
            assert sorted(t.intermediate_values) == list(range(8))
    _check_marks(world, batch)
    assert "pruned by the search at step" in proc.stderr
    pruned = next(t for t in _trials(world) if "pruned" in t["tags"])
    assert list(pruned["metrics"]) == ["loss"]  # the pruning line is read as no metric
    assert all('"step"' in line for line in (Path(pruned["dir"]) / "metrics.jsonl").open())


def test_warm_start_seeds_the_study_with_earlier_runs_of_the_same_code_and_data(
    world: World,
) -> None:
    _project(world)
    world.tether_ok(*SEARCH, "--optimize", "random", "--seed", "1", "--trials", "4")
    earlier = {t["id"] for t in _trials(world) if t["status"] == "completed"}
    assert len(earlier) == 4
    world.tether_ok(*SEARCH, "--optimize", "tpe", "--trials", "3", "--warm-start")
    newest = max(
        (r for r in world.listing() if r["name"] == "train+batch"), key=lambda r: r["created"]
    )
    study = _study(newest["dir"])
    warm = {
        t.user_attrs["tether_warm"] for t in study.get_trials() if "tether_warm" in t.user_attrs
    }
    assert warm == earlier
    assert len([t for t in study.get_trials() if "tether_slot" in t.user_attrs]) == 3


def test_a_grid_search_runs_each_point_once(world: World) -> None:
    _project(world)
    world.tether_ok(
        "run",
        "train",
        "lr=[0.001,0.01]",
        "act=[relu,tanh]",
        "--optimize",
        "grid",
        "--minimize",
        "loss",
    )
    study = _study(_batch(world)["dir"])
    points = sorted((t.params["lr"], t.params["act"]) for t in study.get_trials())
    assert points == [(0.001, "relu"), (0.001, "tanh"), (0.01, "relu"), (0.01, "tanh")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--optimize", "bayes", "--trials", "3"], "--optimize 'bayes': expected one of tpe"),
        (["--optimize", "tpe"], "--optimize tpe needs --trials N"),
        (["--optimize", "tpe", "--trials", "3", "--prune", "early"], "--prune 'early'"),
    ],
)
def test_bad_search_options_get_one_line(world: World, args: list[str], message: str) -> None:
    _project(world)
    proc = world.tether("run", "train", *SPACE, "--minimize", "loss", *args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not world.run_dirs()


def test_a_search_needs_an_objective_and_a_space(world: World) -> None:
    _project(world)
    proc = world.tether("run", "train", *SPACE, "--optimize", "tpe", "--trials", "3")
    assert proc.returncode == 2 and "--minimize KEY or --maximize KEY" in proc.stderr
    proc = world.tether(
        "run", "train", "lr=0.1", "--optimize", "tpe", "--trials", "3", "--minimize", "loss"
    )
    assert proc.returncode == 2 and "needs a flag to search" in proc.stderr


# -- Slurm ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def slurm() -> None:
    from .test_slurm import _cluster_problem

    problem = _cluster_problem()
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI needs the real Slurm: {problem}")
    pytest.skip(problem)


@pytest.mark.slurm
def test_the_search_runs_on_slurm(slurm: None, world: World) -> None:
    """The same search with --executor slurm: the workers are array jobs that ask the study
    themselves (its journal file is in the batch folder, which every job reaches)."""
    _project(world)
    config = world.work / "slurm.yaml"
    config.write_text(yaml.safe_dump({"time": 30, "cpus_per_task": 1, "lease_s": 3}))
    argv = [TETHER, *SEARCH, "--optimize", "tpe", "--trials", "6", "--n-jobs", "2"]
    proc = subprocess.run(
        [*argv, "--executor", "slurm", "--slurm-config", str(config)],
        cwd=world.work,
        env=world.environ(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    batch = _batch(world)
    slots = _finished_by_slot(_study(batch["dir"]))
    assert sorted(slots) == list(range(6))
    jobs = {_state(t["dir"])["attempts"][0].get("job_id") for t in _trials(world)}
    assert None not in jobs and len(jobs) >= 1  # each trial ran in a Slurm job
    _check_marks(world, batch)
