"""Dispatch cost of tether's executors: every task a child run, against the raw tools.

(a) local: 1000 tasks of ~20 ms of CPU work each (a busy loop on `time.process_time`) through
    `tether.batches.decorated.run_tasks(..., executor="local", n_jobs=<cores>)`, where each
    task is a child run of a batch run (run.lock, state.json, index row, task pool claim),
    against raw `joblib.Parallel(n_jobs=<cores>)` on the same function. Both run warm (loky
    workers started and the modules imported by a first, untimed round). Goal: <= 1.1x.
(b) slurm: 200 tasks of the same work through `run_tasks(..., executor="slurm")` (a job array
    of `array_parallelism` serial workers pulling from the task pool) against raw submitit
    (`SlurmExecutor.map_array`, one array task per item, the same `array_parallelism`), waiting
    for every result file. Only when a Slurm controller answers (`sudo bash
    scripts/slurm-up.sh`). Goal: <= 1.5x.

    .venv-bench/bin/python bench/bench_executors.py   # or: bash bench/run.sh executors

Environment: BENCH_REPEAT (timed rounds of (a), default 3), BENCH_EXEC_TASKS (default 1000),
BENCH_SLURM_TASKS (default 200; 0 skips (b)), BENCH_TASK_MS (default 20).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import fail, repeat_count, save_results, verdict, versions, versions_line

LOCAL_GOAL = 1.1
SLURM_GOAL = 1.5
TASK_MS = float(os.environ.get("BENCH_TASK_MS", "20"))


def spin(ms: float) -> int:
    """About `ms` milliseconds of CPU work."""
    t0 = time.process_time()
    n = 0
    while time.process_time() - t0 < ms / 1000:
        n += 1
    return n


def tether_task(cfg: Any) -> int:
    spin(cfg.ms)
    return int(cfg.i)


def raw_task(i: int, ms: float) -> int:
    spin(ms)
    return i


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def bench_local(n_tasks: int, repeat: int) -> dict[str, Any]:
    from joblib import Parallel, delayed

    from tether.batches.decorated import run_tasks

    jobs = cores()
    cfg = {"i": 0, "ms": TASK_MS}

    def raw(n: int) -> float:
        t0 = time.perf_counter()
        out = Parallel(n_jobs=jobs)(delayed(raw_task)(i, TASK_MS) for i in range(n))
        assert out == list(range(n))
        return time.perf_counter() - t0

    def ours(n: int) -> float:
        t0 = time.perf_counter()
        result = run_tasks(
            tether_task,
            cfg,
            task_to="i",
            tasks=list(range(n)),
            executor="local",
            n_jobs=jobs,
            progress=False,
        )
        elapsed = time.perf_counter() - t0
        assert result.ok and result.results == list(range(n)), result.counts
        return elapsed

    raw(2 * jobs)  # warm: loky workers up, tether imported in them
    ours(2 * jobs)
    raw_s, ours_s = [], []
    for _ in range(repeat):  # alternate, so drift in the machine's load hits both alike
        raw_s.append(raw(n_tasks))
        ours_s.append(ours(n_tasks))
    ratio = statistics.median(ours_s) / statistics.median(raw_s)
    print(f"  local, {n_tasks} tasks of {TASK_MS:g} ms on {jobs} workers (median of {repeat}):")
    print(f"    joblib.Parallel              {statistics.median(raw_s):8.2f} s  {raw_s}")
    print(f"    tether local (child runs)    {statistics.median(ours_s):8.2f} s  {ours_s}")
    floor = n_tasks * TASK_MS / 1000 / jobs
    print(f"    (pure CPU floor {floor:.2f} s)")
    print(
        f"tether local: {statistics.median(ours_s):.3f} s  joblib: "
        f"{statistics.median(raw_s):.3f} s  ratio {ratio:.2f} (goal <= {LOCAL_GOAL})  "
        f"{verdict(ratio, LOCAL_GOAL)}"
    )
    return {
        "tasks": n_tasks,
        "task_ms": TASK_MS,
        "workers": jobs,
        "joblib_s": [round(s, 3) for s in raw_s],
        "tether_s": [round(s, 3) for s in ours_s],
        "ratio": round(ratio, 3),
        "goal": LOCAL_GOAL,
    }


def slurm_ready() -> str | None:
    if shutil.which("sbatch") is None:
        return "sbatch not installed (sudo bash scripts/slurm-up.sh)"
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    if proc.returncode != 0 or not proc.stdout.strip():
        return "no Slurm controller answers (sudo bash scripts/slurm-up.sh)"
    return None


def bench_slurm(n_tasks: int, folder: Path) -> dict[str, Any]:
    import submitit
    import yaml

    from tether.batches.decorated import run_tasks

    parallelism = max(
        1,
        int(
            subprocess.run(
                ["sinfo", "-h", "-o", "%c"], capture_output=True, text=True
            ).stdout.split()[0]
        ),
    )
    conf = folder / "slurm.yaml"
    conf.write_text(
        yaml.safe_dump({"time": 30, "cpus_per_task": 1, "array_parallelism": parallelism})
    )

    t0 = time.perf_counter()
    ex = submitit.SlurmExecutor(folder=str(folder / "raw" / "%j"))
    ex.update_parameters(time=30, cpus_per_task=1, array_parallelism=parallelism)
    jobs = ex.map_array(raw_task, list(range(n_tasks)), [TASK_MS] * n_tasks)
    while not all(j.paths.result_pickle.exists() for j in jobs):
        time.sleep(0.2)
    raw_s = time.perf_counter() - t0
    assert sorted(j.result() for j in jobs) == list(range(n_tasks))

    t0 = time.perf_counter()
    result = run_tasks(
        tether_task,
        {"i": 0, "ms": TASK_MS},
        task_to="i",
        tasks=list(range(n_tasks)),
        slurm_config=str(conf),
        progress=False,
    )
    ours_s = time.perf_counter() - t0
    assert result.ok and result.results == list(range(n_tasks)), result.counts
    ratio = ours_s / raw_s
    print(f"  slurm, {n_tasks} tasks of {TASK_MS:g} ms, array_parallelism {parallelism}:")
    print(f"    submitit map_array ({n_tasks} array tasks)    {raw_s:8.2f} s")
    print(f"    tether slurm ({parallelism} pool workers)       {ours_s:8.2f} s")
    print(
        f"tether slurm: {ours_s:.3f} s  submitit: {raw_s:.3f} s  ratio {ratio:.2f} "
        f"(goal <= {SLURM_GOAL})  {verdict(ratio, SLURM_GOAL)}"
    )
    return {
        "tasks": n_tasks,
        "array_parallelism": parallelism,
        "submitit_s": round(raw_s, 3),
        "tether_s": round(ours_s, 3),
        "ratio": round(ratio, 3),
        "goal": SLURM_GOAL,
    }


def main() -> int:
    found = versions("tether", "joblib", "submitit", "omegaconf")
    print(versions_line(found))
    results: dict[str, Any] = {"versions": found}
    with tempfile.TemporaryDirectory(prefix="tether-bench-exec-") as tmp:
        work = Path(tmp)
        os.environ["TETHER_RUNS"] = str(work / "runs")
        code = work / "code"
        code.mkdir()
        (code / "job.py").write_text("# the code a batch snapshots\n")
        for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "code"]):
            subprocess.run(
                ["git", "-c", "user.name=bench", "-c", "user.email=b@x", *args],
                cwd=code,
                check=True,
            )
        os.chdir(code)  # a small repository: each batch takes one git snapshot of it
        results["local"] = bench_local(
            int(os.environ.get("BENCH_EXEC_TASKS", "1000")), repeat_count(3)
        )
        n_slurm = int(os.environ.get("BENCH_SLURM_TASKS", "200"))
        if n_slurm > 0:
            problem = slurm_ready()
            if problem:
                print(f"  slurm: skipped: {problem}")
            else:
                results["slurm"] = bench_slurm(n_slurm, work)
    path = save_results("executors", results)
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as exc:
        sys.exit(fail(exc))
