"""Metric logging: what History.update costs, and tether.History against MLflow's log_batch and a
bare JSON-lines writer.

1. The CPU of one `history.update(values, step=i)` of three scalars, for each kind of value a
   training loop logs: Python floats, NumPy float32 scalars, 0-d float32 torch tensors (CPU).
   CPU time of the whole process (time.process_time: the flush thread's work, converting and
   writing the rows, counts), over BENCH_UPDATES updates (default 200,000) ending with
   `history.flush()`, on the History of a run; the kinds interleaved, median of
   max(3, BENCH_REPEAT) rounds. The caller's own share (time.thread_time of the loop) and the
   same without `step=` are printed beside it. Goal: <= 2 us, so a 0.2 ms step pays under 1 %.
2. One million scalars, 10 keys x 100,000 steps, logged one step at a time, three ways:
   - tether: `history.update(values, step=i)` inside a run, then `history.flush()` (every row in
     metrics.jsonl, summary.json and the index written: the timing ends when all is on disk);
   - the floor: a bare loop of `json.dumps(row)` + `file.write` of the same rows;
   - MLflow: `MlflowClient.log_batch` with the step's 10 metrics, per step, on a SQLite store
     (MLflow's default), extrapolated to the million values. Each round logs into a fresh
     store (a new SQLite file: its speed drifts as a store grows) for BENCH_MLFLOW_SECONDS
     (default 4 s) after 20 untimed calls.
   The three run in turn in each of max(3, BENCH_REPEAT) rounds; the ratios are those of the
   medians. Goals: tether >= 1000 x faster than log_batch, >= 0.5 x the bare writer's speed.
3. The overhead of `history.update({"train/loss": loss, "train/acc": acc}, step=i)` (a 0-d
   tensor with its graph and a float) in a tiny torch CPU training loop (an MLP 64-512-512-10,
   300k weights, on batches of 128, one thread) against the same loop without it, in CPU time
   of the process, 1000 steps a run ending with `history.flush()`, interleaved pairs, best of
   max(20, 6 x BENCH_REPEAT) runs each. Goal: < 1 %.

    .venv-bench/bin/python bench/bench_logging.py        # or: bash bench/run.sh logging

Environment: BENCH_REPEAT (rounds, default 3), BENCH_UPDATES, BENCH_MLFLOW_SECONDS,
BENCH_TRAIN_PAIRS (the training pairs, default max(20, 6 x BENCH_REPEAT)).
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
    Timing,
    begin,
    fail,
    precompile_tether,
    ratio_row,
    record,
    repeat_count,
    versions,
    versions_line,
)

KEYS = [f"train/k{j}" for j in range(10)]
STEPS = 100_000
GOAL_UPDATE_US = 2.0  # CPU per update of a few scalars
GOAL_MLFLOW = 1000.0  # tether at least this many times faster than log_batch
GOAL_BARE = 0.5  # tether at least this fraction of the bare writer's speed
GOAL_OVERHEAD = 1.0  # percent
TRAIN_STEPS = 1000
BATCH = 128
WIDTH = 512
KINDS = ("python floats", "numpy float32", "0-d torch")


def values_for(step: int) -> dict[str, float]:
    return {k: (step * 10 + j) * 1e-3 for j, k in enumerate(KEYS)}


# A thousand distinct value dicts, reused: building them is not what is measured.
VALUES = [values_for(i) for i in range(1000)]


# -- 1. CPU per update ----------------------------------------------------------------------------
def three_values(kind: str) -> list[dict[str, Any]]:
    """A thousand rows of three scalars of a kind, like a loss, an accuracy and a rate."""
    import numpy as np
    import torch

    rows = [(0.5 + i * 1e-4, i / 1000, 1e-3 * (1 - i / 2000)) for i in range(1000)]
    if kind == "python floats":
        return [{"loss": a, "acc": b, "lr": c} for a, b, c in rows]
    if kind == "numpy float32":
        f32 = np.float32
        return [{"loss": f32(a), "acc": f32(b), "lr": f32(c)} for a, b, c in rows]
    t = torch.tensor
    return [{"loss": t(a), "acc": t(b), "lr": t(c)} for a, b, c in rows]


def time_updates(kind: str, n: int, with_step: bool) -> tuple[float, float]:
    """(process CPU, the caller's thread CPU) per update, in microseconds."""
    import tether

    values = three_values(kind)
    with tether.start_run({"bench": "update"}, name="bench-update", snapshot=False) as run:
        history = tether.History(run=run)
        update = history.update
        update(values[0], step=0)
        history.flush()  # the keys are known and the flush thread runs: steady state
        start, mine = time.process_time(), time.thread_time()
        if with_step:
            for i in range(n):
                update(values[i % 1000], step=i)
        else:
            for i in range(n):
                update(values[i % 1000])
        caller = time.thread_time() - mine
        history.flush()
        spent = time.process_time() - start
    return spent / n * 1e6, caller / n * 1e6


def update_costs(repeat: int, n: int) -> dict[str, Any]:
    samples: dict[str, list[tuple[float, float]]] = {}
    for _ in range(repeat):  # the kinds in turn, so load from elsewhere hits each alike
        for kind in KINDS:
            for with_step in (True, False):
                label = kind if with_step else f"{kind}, no step"
                samples.setdefault(label, []).append(time_updates(kind, n, with_step))
    out: dict[str, Any] = {}
    for label, runs in samples.items():
        out[label] = {
            "process_us": round(statistics.median(r[0] for r in runs), 3),
            "caller_us": round(statistics.median(r[1] for r in runs), 3),
            "process_samples_us": [round(r[0], 3) for r in runs],
        }
    return out


# -- 2. one million values ------------------------------------------------------------------------
def time_history() -> float:
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

    store = folder / f"mlflow-{time.monotonic_ns()}"
    store.mkdir()
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    experiment = client.create_experiment("bench", artifact_location=(store / "art").as_uri())
    run_id = client.create_run(experiment).info.run_id

    def batch(step: int) -> list[Any]:
        stamp = int(time.time() * 1000)
        return [Metric(k, v, stamp, step) for k, v in VALUES[step % 1000].items()]

    for step in range(20):  # the connection, the statements and the tables warm
        client.log_batch(run_id, metrics=batch(step))
    logged, step = 0, 20
    start = time.perf_counter()
    while time.perf_counter() - start < budget:
        metrics = batch(step)
        client.log_batch(run_id, metrics=metrics)
        logged += len(metrics)
        step += 1
    elapsed = time.perf_counter() - start
    return logged / elapsed, logged


def million(folder: Path, repeat: int, budget: float) -> dict[str, Any]:
    history_s, bare_s, mlflow_s, rates = [], [], [], []
    for _ in range(repeat):  # interleaved, so load from elsewhere hits all three alike
        history_s.append(time_history())
        bare_s.append(time_bare(folder))
        rate, _ = mlflow_rate(folder, budget)
        rates.append(rate)
        mlflow_s.append(STEPS * len(KEYS) / rate)
    return {"history_s": history_s, "bare_s": bare_s, "mlflow_s": mlflow_s, "rates": rates}


# -- 3. a training loop ---------------------------------------------------------------------------
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
    }


def main() -> int:
    repeat = max(3, repeat_count(3))
    budget = float(os.environ.get("BENCH_MLFLOW_SECONDS", "4"))
    updates = int(os.environ.get("BENCH_UPDATES", "200000"))
    begin()
    precompile_tether()
    try:
        import mlflow  # noqa: F401
        import numpy  # noqa: F401
        import torch
    except ImportError as exc:
        raise BenchError(f"{exc.name} is not installed; run `make bench`") from exc
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="tether-bench-logging-") as tmp:
        folder = Path(tmp)
        os.environ["TETHER_RUNS"] = str(folder / "runs")
        per_update = update_costs(repeat, updates)
        big = million(folder, repeat, budget)
        pairs = int(os.environ.get("BENCH_TRAIN_PAIRS", max(repeat * 6, 20)))
        training = training_overhead(folder, pairs)

    print(f"CPU per History.update of 3 scalars ({updates:,} updates, median of {repeat}):")
    for label, m in per_update.items():
        print(
            f"  {label:<26} {m['process_us']:6.2f} us  (the caller's thread "
            f"{m['caller_us']:.2f} us, the flush thread the rest)"
        )
    values = STEPS * len(KEYS)
    ours = statistics.median(big["history_s"])
    bare = statistics.median(big["bare_s"])
    theirs = statistics.median(big["mlflow_s"])
    print(f"1M scalars ({len(KEYS)} keys x {STEPS:,} steps), median of {repeat}:")
    print(f"  tether History        {ours:8.2f} s   {values / ours:12,.0f} values/s")
    print(f"  bare json.dumps+write {bare:8.2f} s   {values / bare:12,.0f} values/s")
    print(
        f"  MLflow log_batch      {theirs:8.0f} s   {values / theirs:12,.0f} values/s "
        f"(a fresh store a round, {budget:g} s each: "
        + ", ".join(f"{r:,.0f}" for r in big["rates"])
        + " values/s)"
    )
    print(
        f"update() in a torch CPU training loop ({training['step_us']} us/step): "
        f"{training['overhead_pct']:+.2f} % overhead, best of {len(training['with_s'])} "
        f"(median of pairs {training['median_pair_overhead_pct']:+.2f} %)"
    )
    found = versions("tether", "mlflow", "torch", "numpy")
    print(versions_line(found))

    per_call = "History.update CPU per call, {} / 2 us"
    rows = [
        ratio_row(
            per_call.format(name),
            per_update[kind]["process_us"],
            GOAL_UPDATE_US,
            1.0,
            unit="us",
        )
        for kind, name in zip(
            KINDS, ("python floats", "numpy scalars", "0-d torch tensors"), strict=True
        )
    ]
    rows += [
        ratio_row(
            "History / MLflow log_batch throughput, 1M values",
            values / ours,
            values / theirs,
            GOAL_MLFLOW,
            ">=",
            unit="values/s",
        ),
        ratio_row(
            "History / bare writer throughput, 1M values",
            values / ours,
            values / bare,
            GOAL_BARE,
            ">=",
            unit="values/s",
        ),
        ratio_row(
            f"update() in a training loop ({training['step_us']:.0f} us a step), overhead / 1 %",
            training["overhead_pct"],
            GOAL_OVERHEAD,
            1.0,
            unit="%",
        ),
    ]
    record(
        "logging",
        rows,
        timings=[
            Timing("tether History, 1M values", [], big["history_s"]).as_dict(),
            Timing("bare json.dumps + write, 1M values", [], big["bare_s"]).as_dict(),
            Timing("MLflow log_batch, 1M values (extrapolated)", [], big["mlflow_s"]).as_dict(),
        ],
        update_us={label: m["process_us"] for label, m in per_update.items()},
        caller_us={label: m["caller_us"] for label, m in per_update.items()},
        per_update=per_update,
        mlflow_values_per_s=[round(r, 1) for r in big["rates"]],
        mlflow_seconds_per_round=budget,
        training=training,
        versions=found,
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as exc:
        sys.exit(fail(exc))
