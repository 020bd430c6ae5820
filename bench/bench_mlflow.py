"""What `mlflow=True` adds to a run: the same `@tether.experiment` with and without it.

Three fresh `python script.py` processes, run round-robin from one temporary folder with
TETHER_RUNS pointing at a temporary runs root (its SQLite MLflow store made once, before the
timing, so no run pays MLflow's schema migration):

- plain: `@tether.experiment(defaults=..., snapshot=False)`, 200 rows of two metrics;
- mlflow: the same with `mlflow=True`: the run's process starts the background sync at its end;
- live (for context): `mlflow=True` with TETHER_MLFLOW_LIVE=1, rows sent as the run goes, so
  MLflow's import and store set-up are the run's (what every run paid before the background
  sync).

The time of a run is its process's wall time, from start to exit. Between rounds, outside the
timed part, the script waits for the background syncs to end (on each run's sync lock), so no
run is timed while another one's sync loads the machine, and their time is shown too. Goal:
median(mlflow) - median(plain) <= 0.5 s. After timing, each MLflow run is read back with
MlflowClient: FINISHED, its params and every point once, so a sync that did not happen cannot
pass as a fast one.

    .venv/bin/python bench/bench_mlflow.py      # BENCH_REPEAT (default 5), BENCH_WARMUP (1)
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchlib import (
    BenchError,
    Command,
    Timing,
    begin,
    fail,
    precompile_tether,
    print_table,
    record,
    repeat_count,
    row,
    secs,
    time_commands,
    versions,
    versions_line,
    warmup_count,
)

GOAL_S = 0.5  # what mlflow=True may add to a run
ROWS = 200

SCRIPT = """\
import tether


@tether.experiment(defaults={{"lr": 0.1, "model": {{"depth": 2}}}}, snapshot=False{extra})
def main(cfg, run):
    for step in range({rows}):
        run.log_metrics({{"loss": 1 / (step + 1), "acc": step / {rows}}}, step=step)


if __name__ == "__main__":
    main()
"""


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


def wait_for_syncs(runs_root: Path, waits: list[float], seen: set[str]) -> None:
    """Wait (bounded) for the background sync of every run that has one; record how long."""
    from tether.track.sinks.mlflow_after import SYNC_LOCK, wait_for_sync

    for folder in sorted(runs_root.iterdir()):
        if folder.name in seen or not (folder / SYNC_LOCK).exists():
            continue
        start = time.perf_counter()
        if not wait_for_sync(folder, 600):
            raise BenchError(f"the MLflow sync of {folder} still runs after 600 s")
        waits.append(time.perf_counter() - start)
        seen.add(folder.name)


def check_runs(runs_root: Path, uri: str, expected: int) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found = 0
    for folder in sorted(runs_root.iterdir()):
        summary = folder / "summary.json"
        if not summary.is_file():
            continue
        state = json.loads(summary.read_text()).get("sinks", {}).get("mlflow")
        if state is None:
            continue
        if state.get("status") != "ok" or state.get("rows") != ROWS:
            raise BenchError(f"{folder.name}: MLflow record {state}")
        run = client.get_run(state["run_id"])
        points = client.get_metric_history(state["run_id"], "loss")
        if run.info.status != "FINISHED" or len(points) != ROWS or run.data.params["lr"] != "0.1":
            raise BenchError(f"{folder.name}: MLflow run {run.info.status}, {len(points)} points")
        found += 1
    if found != expected:
        raise BenchError(f"{found} complete MLflow runs, expected {expected}")


def main() -> int:
    begin()
    precompile_tether()
    repeat, warm = repeat_count(5), warmup_count(1)
    found = versions("mlflow")
    print(versions_line(found))
    with tempfile.TemporaryDirectory(prefix="bench-mlflow-") as tmp:
        work = Path(tmp)
        runs_root = work / "runs"
        runs_root.mkdir()
        uri = f"sqlite:///{runs_root / 'mlflow.db'}"
        from mlflow.tracking import MlflowClient

        MlflowClient(uri).search_experiments()  # the store made (and migrated) once
        env = dict(os.environ, TETHER_RUNS=str(runs_root))
        for key in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "TETHER_SINKS", LIVE):
            env.pop(key, None)
        scripts = {
            "plain": SCRIPT.format(extra="", rows=ROWS),
            "with_mlflow": SCRIPT.format(extra=", mlflow=True", rows=ROWS),
        }
        for name, text in scripts.items():
            (work / f"{name}.py").write_text(text)
        commands = [
            Command("plain run", [sys.executable, "plain.py"], cwd=work, env=env),
            Command("mlflow=True run", [sys.executable, "with_mlflow.py"], cwd=work, env=env),
            Command(
                "mlflow=True, live",
                [sys.executable, "with_mlflow.py"],
                cwd=work,
                env={**env, LIVE: "1"},
            ),
        ]
        print(load())
        waits: list[float] = []
        seen: set[str] = set()
        for _ in range(warm):
            time_commands(commands, repeat=1, warmup=0)
            wait_for_syncs(runs_root, waits, seen)
        waits.clear()
        timings = [Timing(c.label, [str(a) for a in c.argv]) for c in commands]
        for _ in range(repeat):
            # plain, mlflow=True, (the wait for its background sync, timed apart), live
            done = time_commands(commands[:2], 1, 0)
            wait_for_syncs(runs_root, waits, seen)
            done += time_commands(commands[2:], 1, 0)
            for timing, sample in zip(timings, done, strict=True):
                timing.samples += sample.samples
            wait_for_syncs(runs_root, [], seen)
        print(load())
        check_runs(runs_root, uri, 2 * (warm + repeat))
    plain, after, live = timings
    print_table(timings)
    added = after.median - plain.median
    added_live = live.median - plain.median
    verdict = "OK" if added <= GOAL_S else "MISSED"
    print(
        f"mlflow=True adds {secs(added)} to a run (ratio {after.median / plain.median:.2f}; "
        f"goal <= {GOAL_S} s)  {verdict}"
    )
    print(f"live (for context) adds {secs(added_live)}")
    if waits:
        print(
            "the background sync went on after the mlflow=True run's exit for "
            f"{secs(statistics.median(waits))} (median)"
        )
    record(
        "mlflow",
        [
            row(
                f"seconds mlflow=True adds to a run / {GOAL_S:g} s allowed",
                added / GOAL_S,
                1.0,
                value=added,
                baseline=GOAL_S,
            )
        ],
        versions=found,
        metric_rows=ROWS,
        timings=[t.as_dict() for t in timings],
        added_s=round(added, 4),
        added_live_s=round(added_live, 4),
        ratio=round(after.median / plain.median, 3),
        background_wait_s=[round(w, 3) for w in waits],
        goal_s=GOAL_S,
    )
    return 0


LIVE = "TETHER_MLFLOW_LIVE"

if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        sys.exit(fail(exc))
