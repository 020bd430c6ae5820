"""Metric logging: tether.History against MLflow's log_batch and a bare JSON-lines writer.

1. One million scalars, 10 keys x 100,000 steps, logged one step at a time:
   - tether: `history.update(values, step=i)` inside a run, then `history.flush()` (every row in
     metrics.jsonl, summary.json and the index written: the timing ends when all is on disk);
   - MLflow: `MlflowClient.log_batch` with the step's 10 metrics, per step, on a SQLite store
     (MLflow's default), for a fixed time budget (BENCH_MLFLOW_SECONDS, default 10 s) and
     extrapolated to the million values;
   - the floor: a bare loop of `json.dumps(row)` + `file.write` of the same rows.
   Goals: tether >= 1000 x faster than log_batch, and >= 0.5 x the speed of the bare writer.
2. The overhead of `history.update({"train/loss": loss, "train/acc": acc}, step=i)` (a 0-d
   tensor and a float) in a tiny torch CPU training loop (an MLP 64-512-512-10, 300k weights, on
   batches of 128 digit-sized inputs, one thread) against the same loop without it,
   in CPU time (all threads, so the flush thread's work counts), 1000 steps a run, interleaved,
   best of max(20, 6 x BENCH_REPEAT) runs each; each run ends with `history.flush()`, so its
   rows are converted and written inside the timing. Goal: < 1 %.

    .venv-bench/bin/python bench/bench_logging.py        # or: make bench
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import (
    BenchError,
    fail,
    precompile_tether,
    repeat_count,
    save_results,
    versions,
    versions_line,
)

KEYS = [f"train/k{j}" for j in range(10)]
STEPS = 100_000
GOAL_MLFLOW = 1000.0  # tether at least this many times faster than log_batch
GOAL_BARE = 0.5  # tether at least this fraction of the bare writer's speed
GOAL_OVERHEAD = 1.0  # percent
TRAIN_STEPS = 1000
BATCH = 128
WIDTH = 512


def values_for(step: int) -> dict[str, float]:
    return {k: (step * 10 + j) * 1e-3 for j, k in enumerate(KEYS)}


# A thousand distinct value dicts, reused: building them is not what is measured.
VALUES = [values_for(i) for i in range(1000)]


def time_history(folder: Path) -> float:
    import tether

    with tether.start_run({"bench": "history"}, name="bench", snapshot=False) as run:
        history = tether.History(run=run)
        start = time.perf_counter()
        for step in range(STEPS):
            history.update(VALUES[step % 1000], step=step)
        history.flush()
        elapsed = time.perf_counter() - start
    rows = (run.dir / "metrics.jsonl").read_text().count("\n")
    if rows != STEPS:
        raise BenchError(f"History wrote {rows} rows, not {STEPS}")
    return elapsed


def time_bare(folder: Path) -> float:
    path = folder / f"bare-{time.monotonic_ns()}.jsonl"
    start = time.perf_counter()
    with open(path, "w", encoding="utf-8") as fh:
        for step in range(STEPS):
            row = {"step": step, "t": round(time.time(), 3)}
            row.update(VALUES[step % 1000])
            fh.write(json.dumps(row) + "\n")
    return time.perf_counter() - start


def mlflow_rate(folder: Path, budget: float) -> tuple[float, int]:
    """Values per second through log_batch (10 metrics per call) on a fresh SQLite store."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.create_experiment("bench", artifact_location=(folder / "art").as_uri())
    run_id = client.create_run(experiment).info.run_id
    logged = 0
    step = 0
    start = time.perf_counter()
    while time.perf_counter() - start < budget:
        stamp = int(time.time() * 1000)
        metrics = [Metric(k, v, stamp, step) for k, v in VALUES[step % 1000].items()]
        client.log_batch(run_id, metrics=metrics)
        logged += len(metrics)
        step += 1
    elapsed = time.perf_counter() - start
    return logged / elapsed, logged


def training_overhead(folder: Path, repeat: int) -> dict[str, Any]:
    import torch

    from tether.track.history import History

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, WIDTH),
        torch.nn.ReLU(),
        torch.nn.Linear(WIDTH, WIDTH),
        torch.nn.ReLU(),
        torch.nn.Linear(WIDTH, 10),
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(BATCH, 64), torch.randint(0, 10, (BATCH,))
    loss_fn = torch.nn.CrossEntropyLoss()

    def loop(history: History | None) -> float:
        start = time.process_time()  # CPU time of every thread: the flush thread's work counts
        for step in range(TRAIN_STEPS):
            opt.zero_grad(set_to_none=True)
            out = model(x)
            loss = loss_fn(out, y)
            loss.backward()
            opt.step()
            if history is not None:
                history.update({"train/loss": loss, "train/acc": 0.5}, step=step)
        if history is not None:
            history.flush()  # every row of this loop converted and written: part of the cost
        return time.process_time() - start

    # The same work alone, for context: CPU per update() call and per row flushed.
    weight = torch.tensor(2.0, requires_grad=True)
    losses = [weight * i for i in range(TRAIN_STEPS)]
    alone = History(path=folder / "alone.jsonl", flush_every=3600, flush_rows=10**9)
    update_s, flush_s = [], []
    for _ in range(5):
        start = time.process_time()
        for step, loss in enumerate(losses):
            alone.update({"train/loss": loss, "train/acc": 0.5}, step=step)
        mid = time.process_time()
        alone.flush()
        update_s.append(mid - start)
        flush_s.append(time.process_time() - mid)
    alone.close()

    history = History(path=folder / "train.jsonl")
    loop(None)  # warm up
    loop(history)
    without, with_history = [], []
    for _ in range(repeat):  # interleaved pairs: a burst of load elsewhere hits both alike
        without.append(loop(None))
        with_history.append(loop(history))
    history.close()
    base, ours = min(without), min(with_history)
    pairs = [w / b - 1 for w, b in zip(with_history, without, strict=True)]
    return {
        "step_us": round(base / TRAIN_STEPS * 1e6, 1),
        "without_s": [round(t, 4) for t in without],
        "with_s": [round(t, 4) for t in with_history],
        "overhead_pct": round((ours / base - 1) * 100, 2),
        "median_pair_overhead_pct": round(statistics.median(pairs) * 100, 2),
        "update_us_alone": round(min(update_s) / TRAIN_STEPS * 1e6, 2),
        "flush_us_per_row_alone": round(min(flush_s) / TRAIN_STEPS * 1e6, 2),
    }


def verdict(ok: bool) -> str:
    return "OK" if ok else "MISSED"


def main() -> int:
    repeat = repeat_count(3)
    budget = float(os.environ.get("BENCH_MLFLOW_SECONDS", "10"))
    precompile_tether()
    with tempfile.TemporaryDirectory(prefix="tether-bench-logging-") as tmp:
        folder = Path(tmp)
        os.environ["TETHER_RUNS"] = str(folder / "runs")
        try:
            import mlflow  # noqa: F401
            import torch  # noqa: F401
        except ImportError as exc:
            return fail(BenchError(f"{exc.name} is not installed; run `make bench`"))
        history_s, bare_s = [], []
        for _ in range(repeat):  # interleaved, so load from elsewhere hits both alike
            history_s.append(time_history(folder))
            bare_s.append(time_bare(folder))
        rate, logged = mlflow_rate(folder, budget)
        training = training_overhead(folder, max(repeat * 6, 20))
    values = STEPS * len(KEYS)
    ours, bare = statistics.median(history_s), statistics.median(bare_s)
    mlflow_s = values / rate
    vs_mlflow, vs_bare = mlflow_s / ours, bare / ours
    print(f"1M scalars ({len(KEYS)} keys x {STEPS:,} steps), median of {repeat}:")
    print(f"  tether History        {ours:8.2f} s   {values / ours:12,.0f} values/s")
    print(f"  bare json.dumps+write {bare:8.2f} s   {values / bare:12,.0f} values/s")
    print(
        f"  MLflow log_batch      {mlflow_s:8.0f} s   {rate:12,.0f} values/s "
        f"(extrapolated from {logged:,} values in {budget:.0f} s)"
    )
    print(
        f"History vs MLflow log_batch: ratio {vs_mlflow:,.0f}x faster (goal >= "
        f"{GOAL_MLFLOW:.0f}x)  {verdict(vs_mlflow >= GOAL_MLFLOW)}"
    )
    print(
        f"History vs bare writer: ratio {vs_bare:.2f} of its speed (goal >= {GOAL_BARE})  "
        f"{verdict(vs_bare >= GOAL_BARE)}"
    )
    overhead = training["overhead_pct"]
    print(
        f"update() in a torch CPU training loop ({training['step_us']} us/step): ratio "
        f"{overhead:+.2f} % overhead, best of {len(training['with_s'])} (goal < "
        f"{GOAL_OVERHEAD} %; median of pairs {training['median_pair_overhead_pct']:+.2f} %)  "
        f"{verdict(overhead < GOAL_OVERHEAD)}"
    )
    alone = training["update_us_alone"] + training["flush_us_per_row_alone"]
    share = alone / training["step_us"] * 100
    print(
        f"  alone: update() {training['update_us_alone']} us + flush "
        f"{training['flush_us_per_row_alone']} us per row = {share:.2f} % of a step"
    )
    found = versions("tether", "mlflow", "torch")
    print(versions_line(found))
    save_results(
        "logging",
        {
            "goal": "History >= 1000x MLflow log_batch, >= 0.5x bare writer; "
            "update overhead < 1% in a torch loop",
            "history_s": history_s,
            "bare_s": bare_s,
            "mlflow_values_per_s": round(rate, 1),
            "mlflow_extrapolated_s": round(mlflow_s, 1),
            "ratio_vs_mlflow": round(vs_mlflow, 1),
            "ratio_vs_bare": round(vs_bare, 3),
            "training": training,
            "met": vs_mlflow >= GOAL_MLFLOW and vs_bare >= GOAL_BARE and overhead < GOAL_OVERHEAD,
            "versions": found,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
