"""Dispatch cost of tether's executors: every task a child run, against the raw tools.

(a) local: 200 tasks of ~20 ms of CPU work each (a busy loop on `time.process_time`) through
    `tether.batches.decorated.run_tasks(..., executor="local", n_jobs=<cores>)`, where each
    task is a child run of a batch run (run.lock, state.json, index row, task pool claim),
    against raw `joblib.Parallel(n_jobs=<cores>)` on the same function. Both run warm (loky
    workers started and the modules imported by a first, untimed round). Goal: <= 1.1x.
(b) no-op: 1000 tasks that do nothing, the same three ways: tether local against joblib
    (goal <= 1.5x) and against tether's serial executor (goal <= 1.0x: the local executor is
    never slower than running the tasks one by one in this process).
(c) config size: the per-task cost of (b) on the serial executor with a config that holds a
    200-element list, against a config of two keys. Goal <= 1.1x: a child's cost does not grow
    with the config (run.lock still holds the whole config).
(d) slurm: 200 tasks of the same work through `run_tasks(..., executor="slurm")` (a job array
    of `array_parallelism` serial workers pulling from the task pool) against raw submitit
    (`SlurmExecutor.map_array`, one array task per item, the same `array_parallelism`), waiting
    for every result file. Only when a Slurm controller answers (`sudo bash
    scripts/slurm-up.sh`). Goal: <= 1.5x.

Every round runs the compared commands one after the other (a, b, c, a, b, c, ...).

    .venv-bench/bin/python bench/bench_executors.py   # or: bash bench/run.sh executors

Environment: BENCH_REPEAT (timed rounds, default 5), BENCH_EXEC_TASKS (tasks of (a), default
200), BENCH_NOOP_TASKS (tasks of (b) and (c), default 1000), BENCH_SLURM_TASKS (default 200;
0 skips (d)), BENCH_TASK_MS (default 20).
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

from benchlib import begin, fail, ratio_row, record, repeat_count, verdict, versions, versions_line

LOCAL_GOAL = 1.1
NOOP_GOAL = 1.5
SERIAL_GOAL = 1.0
CONFIG_GOAL = 1.1
SLURM_GOAL = 1.5
TASK_MS = float(os.environ.get("BENCH_TASK_MS", "20"))
BIG_LIST = 200


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


def tether_noop(cfg: Any) -> int:
    return int(cfg.i)


def raw_task(i: int, ms: float) -> int:
    spin(ms)
    return i


def raw_noop(i: int) -> int:
    return i


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _median(samples: list[float]) -> float:
    return statistics.median(samples)


def _show(label: str, samples: list[float]) -> None:
    shown = ", ".join(f"{s:.3f}" for s in samples)
    print(f"    {label:<38} {_median(samples):8.3f} s  [{shown}]")


def bench_local(n_tasks: int, n_noop: int, repeat: int) -> tuple[list[dict[str, Any]], dict]:
    from joblib import Parallel, delayed

    from tether.batches.decorated import run_tasks

    jobs = cores()
    small = {"i": 0, "ms": TASK_MS}
    big = {"i": 0, "ms": TASK_MS, "grid": list(range(BIG_LIST))}

    def raw(n: int, noop: bool) -> float:
        t0 = time.perf_counter()
        if noop:
            out = Parallel(n_jobs=jobs)(delayed(raw_noop)(i) for i in range(n))
        else:
            out = Parallel(n_jobs=jobs)(delayed(raw_task)(i, TASK_MS) for i in range(n))
        assert out == list(range(n))
        return time.perf_counter() - t0

    def ours(n: int, noop: bool, executor: str = "local", cfg: dict = small) -> float:
        t0 = time.perf_counter()
        result = run_tasks(
            tether_noop if noop else tether_task,
            cfg,
            task_to="i",
            tasks=list(range(n)),
            executor=executor,
            n_jobs=jobs,
            progress=False,
        )
        elapsed = time.perf_counter() - t0
        assert result.ok and result.results == list(range(n)), result.counts
        return elapsed

    # Warm: loky workers up, tether imported in them, the serial path's imports done.
    raw(2 * jobs, False)
    ours(2 * jobs, False)
    ours(2 * jobs, True, "serial")
    t: dict[str, list[float]] = {
        k: [] for k in ("joblib", "tether", "joblib noop", "tether noop", "serial noop", "big")
    }
    for _ in range(repeat):  # interleaved, so drift in the machine's load hits all alike
        t["joblib"].append(raw(n_tasks, False))
        t["tether"].append(ours(n_tasks, False))
        t["joblib noop"].append(raw(n_noop, True))
        t["tether noop"].append(ours(n_noop, True))
        t["serial noop"].append(ours(n_noop, True, "serial"))
        t["big"].append(ours(n_noop, True, "serial", big))
    m = {k: _median(v) for k, v in t.items()}
    print(f"  (a) {n_tasks} tasks of {TASK_MS:g} ms on {jobs} workers (median of {repeat}):")
    _show("joblib.Parallel", t["joblib"])
    _show("tether local (child runs)", t["tether"])
    print(f"    (pure CPU floor {n_tasks * TASK_MS / 1000 / jobs:.2f} s)")
    print(f"  (b) {n_noop} no-op tasks on {jobs} workers:")
    _show("joblib.Parallel", t["joblib noop"])
    _show("tether local (child runs)", t["tether noop"])
    _show("tether serial (child runs)", t["serial noop"])
    print(f"  (c) {n_noop} no-op tasks, serial, config with a {BIG_LIST}-element list:")
    _show("tether serial, 2-key config", t["serial noop"])
    _show(f"tether serial, {BIG_LIST}-element list", t["big"])
    per_task = m["serial noop"] / n_noop * 1000
    per_task_big = m["big"] / n_noop * 1000
    print(f"    per task: {per_task:.3f} ms (2 keys), {per_task_big:.3f} ms ({BIG_LIST} list)")
    rows = [
        ratio_row(
            f"local, {n_tasks} x {TASK_MS:g} ms tasks / joblib",
            m["tether"],
            m["joblib"],
            LOCAL_GOAL,
        ),
        ratio_row(
            f"local, {n_noop} no-op tasks / joblib", m["tether noop"], m["joblib noop"], NOOP_GOAL
        ),
        ratio_row(
            f"local / serial executor, {n_noop} no-op tasks",
            m["tether noop"],
            m["serial noop"],
            SERIAL_GOAL,
        ),
        ratio_row(
            f"no-op task, {BIG_LIST}-element list config / 2-key config",
            per_task_big,
            per_task,
            CONFIG_GOAL,
            unit="ms",
        ),
    ]
    data = {
        "tasks": n_tasks,
        "noop_tasks": n_noop,
        "task_ms": TASK_MS,
        "workers": jobs,
        "samples_s": {k: [round(x, 4) for x in v] for k, v in t.items()},
        "per_task_ms": round(per_task, 4),
        "per_task_big_ms": round(per_task_big, 4),
    }
    return rows, data


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
    begin()
    found = versions("tether", "joblib", "submitit", "omegaconf")
    print(versions_line(found))
    results: dict[str, Any] = {"versions": found}
    rows: list[dict[str, Any]] = []
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
        local_rows, results["local"] = bench_local(
            int(os.environ.get("BENCH_EXEC_TASKS", "200")),
            int(os.environ.get("BENCH_NOOP_TASKS", "1000")),
            repeat_count(5),
        )
        rows += local_rows
        n_slurm = int(os.environ.get("BENCH_SLURM_TASKS", "200"))
        if n_slurm > 0:
            problem = slurm_ready()
            if problem:
                print(f"  slurm: skipped: {problem}")
            else:
                results["slurm"] = bench_slurm(n_slurm, work)
                rows.append(
                    ratio_row(
                        f"slurm, {n_slurm} tasks / submitit map_array",
                        results["slurm"]["tether_s"],
                        results["slurm"]["submitit_s"],
                        SLURM_GOAL,
                    )
                )
    record("executors", rows, **results)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as exc:
        sys.exit(fail(exc))
