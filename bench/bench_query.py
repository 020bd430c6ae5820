"""Run listing queries: tether's index against a directory scan and against MLflow.

One query, a config and a metric filter with a sort, first 20 runs:

    tether runs --where 'op = train and config.optim = adam and metrics.loss < 0.5' \\
                --sort -metrics.accuracy -n 20

timed four ways over the same synthetic runs:

  (a) the library, `Store(root).query(where, sort, limit=20)` (opening the store included);
  (b) `tether runs --where ... --sort ... --json -n 20`, a fresh process each time;
  (c) a directory scan that reads every run folder's files and filters in Python, the way gage
      and Guild list runs (run.lock first, summary.json only for runs that pass the config
      test);
  (d) MLflow's `MlflowClient.search_runs` with the same filter and order over the same runs in
      an MLflow SQLite store (at 5k runs: MLflow creates runs at ~20/s).

Goals: at 100k runs the library query >= 1000x faster than the scan, the command end to end
<= 0.05x the scan; at 5k runs the library query >= 10x faster than search_runs.

Then the reconcile step of an ordinary listing: `tether runs -n 20` at 100k runs against
`tether --help` (the interpreter and the CLI's start-up: the floor of any command), goal <=
1.5x, with 0 change-journal entries pending (the ordinary case: three look-ups in the journal,
no run folder read) and with 100 pending (entries naming 100 runs, as writers killed before
their index update, or any other process's writes, leave them: their folders are read again).
Before each timed listing with entries pending, 100 new ones are appended (untimed); the
commands are interleaved.

The runs are generated (files written directly, the index through `Index.rebuild`) into
bench/results/query/ (git-ignored) and kept there for the next time; the MLflow store too.

    .venv-bench/bin/python bench/bench_query.py        # or: make bench / bash bench/run.sh query

Environment: BENCH_QUERY_SIZES (default 1000,10000,100000), BENCH_QUERY_MLFLOW (runs in the
MLflow comparison, default 5000; 0 skips it), BENCH_REPEAT (timed repetitions of the fast
measurements, default 30), BENCH_RECONCILE_RUNS (runs in the reconcile comparison, default
100000; 0 skips it), BENCH_RECONCILE_PENDING (entries pending, default 0,100).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchlib import (
    RESULTS_DIR,
    BenchError,
    Command,
    Timing,
    begin,
    fail,
    precompile_tether,
    ratio_row,
    record,
    repeat_count,
    secs,
    time_commands,
    venv_script,
    versions,
    versions_line,
)

GEN_VERSION = 1
WHERE = "op = train and config.optim = adam and metrics.loss < 0.5"
SORT = "-metrics.accuracy"
LIMIT = 20
MLFLOW_FILTER = "attributes.run_name = 'train' and params.optim = 'adam' and metrics.loss < 0.5"
MLFLOW_ORDER = ["metrics.accuracy DESC"]
GOAL_LIBRARY = 1000.0  # x faster than the scan, at 100k
GOAL_CLI = 0.05  # x the scan's time, at 100k
GOAL_MLFLOW = 10.0  # x faster than search_runs, at 5k
GOAL_RECONCILE = 1.5  # `tether runs -n 20` at 100k runs, x `tether --help`
STORE_DIR = RESULTS_DIR / "query"
T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


# -- synthetic runs -------------------------------------------------------------------------
def synth(i: int) -> dict[str, Any]:
    """Run number i, the same whatever the store size (so 5k is the first 5k of 100k)."""
    rng = random.Random(i)
    ms = T0_MS + i * 60_000 + rng.randrange(60_000)
    value = (ms << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64) | (0b10 << 62)
    value |= rng.getrandbits(62)
    name = rng.choices(("train", "evaluate", "prepare"), weights=(60, 25, 15))[0]
    config = {
        "seed": i,
        "lr": rng.choice((0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1)),
        "batch_size": rng.choice((32, 64, 128, 256)),
        "epochs": rng.choice((10, 20, 50)),
        "optim": rng.choice(("adam", "sgd", "adamw")),
        "model": {
            "name": rng.choice(("resnet", "vit", "mlp")),
            "depth": rng.choice((18, 34, 50)),
            "dropout": rng.choice((0.0, 0.1, 0.2)),
        },
        "data": {"path": "data/train", "augment": rng.random() < 0.5},
    }
    steps = config["epochs"] * 10
    acc = round(rng.random(), 6)
    loss = round(rng.random() * 2, 6)
    metrics = {
        "accuracy": {"last": acc, "min": round(acc * 0.2, 6), "max": acc, "step": steps},
        "loss": {"last": loss, "min": loss, "max": round(loss * 3 + 1, 6), "step": steps},
    }
    created = _iso(ms)
    return {
        "id": str(uuid.UUID(int=value)),
        "name": name,
        "created": created,
        "started": _iso(ms + 50),
        "stopped": _iso(ms + 50 + rng.randrange(10_000, 3_600_000)),
        "status": "completed" if rng.random() < 0.9 else "failed",
        "config": config,
        "commit": f"{rng.getrandbits(160):040x}",
        "metrics": metrics,
    }


def _iso(ms: int) -> str:
    seconds, rest = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{rest * 1000:06d}Z"


def build_store(n: int) -> Path:
    """bench/results/query/runs-<n>: n run folders and their index, made once and kept."""
    from tether.lock import RunLock, SourceRecord, dump_yaml
    from tether.store.index import SCHEMA_VERSION, Index
    from tether.store.records import Attributes, RunRecord
    from tether.store.state import RunState

    root = STORE_DIR / f"runs-{n}"
    stamp = root / ".bench-complete"
    want = f"generator {GEN_VERSION} index {SCHEMA_VERSION} runs {n}\n"
    if stamp.exists() and stamp.read_text() == want:
        return root
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    start = time.perf_counter()

    def records() -> Iterator[RunRecord]:
        for i in range(n):
            r = synth(i)
            lock = RunLock(
                id=r["id"],
                name=r["name"],
                created=r["created"],
                command=["python", f"{r['name']}.py", f"lr={r['config']['lr']}"],
                config=r["config"],
                sources=[SourceRecord(path=".", commit=r["commit"], head=r["commit"])],
                env={"python": "3.11.7", "platform": "linux-x86_64", "host": "bench"},
            )
            state = RunState(
                status=r["status"],
                pid=1000 + i % 30000,
                host="bench",
                started=r["started"],
                stopped=r["stopped"],
                exit_code=0 if r["status"] == "completed" else 1,
            )
            summary = {"metrics": r["metrics"]}
            folder = root / r["id"]
            folder.mkdir()
            (folder / "run.lock").write_text(dump_yaml(lock.to_dict()), encoding="utf-8")
            (folder / "state.json").write_text(json.dumps(state.to_dict()), encoding="utf-8")
            (folder / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
            yield RunRecord(r["id"], folder, lock, state, Attributes(), summary)

    index = Index(root / "index.db")
    count = index.rebuild(records())
    index.close()
    assert count == n
    stamp.write_text(want)
    print(f"  made {n} runs in {root} ({time.perf_counter() - start:.1f} s)")
    return root


# -- the four ways --------------------------------------------------------------------------
def library_query(root: Path) -> list[str]:
    """Open the store and query it, as a script would: connection and checks included."""
    from tether.store import Store

    store = Store(root)
    rows = store.query(where=WHERE, sort=SORT, limit=LIMIT)
    store.index.close()
    return [r.id for r in rows]


def open_store(root: Path) -> Any:
    from tether.store import Store

    store = Store(root)
    store.query(limit=1)
    return store


def json_floor(root: Path) -> int:
    """Only open and parse every run's summary.json: less than any scan can do."""
    n = 0
    for entry in os.scandir(root):
        if entry.is_dir():
            try:
                with open(os.path.join(entry.path, "summary.json"), encoding="utf-8") as fh:
                    n += len(json.load(fh))
            except (OSError, ValueError):
                pass
    return n


def scan(root: Path) -> list[str]:
    """List runs the way gage and Guild do: open every run folder, read its files, filter."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    hits = []
    for entry in os.scandir(root):
        if not entry.is_dir():
            continue
        try:
            with open(os.path.join(entry.path, "run.lock"), encoding="utf-8") as fh:
                lock = yaml.load(fh, Loader=loader)
            config = lock.get("config") or {}
            if lock.get("name") != "train" or config.get("optim") != "adam":
                continue
            with open(os.path.join(entry.path, "summary.json"), encoding="utf-8") as fh:
                metrics = json.load(fh).get("metrics") or {}
        except (OSError, ValueError, yaml.YAMLError):
            continue
        loss = (metrics.get("loss") or {}).get("last")
        if not isinstance(loss, (int, float)) or not loss < 0.5:
            continue
        acc = (metrics.get("accuracy") or {}).get("last")
        hits.append((acc is None, -(acc or 0.0), lock.get("created") or "", lock["id"]))
    # Newest first among equal accuracies, as tether breaks ties.
    hits.sort(key=lambda h: (h[0], h[1], _neg(h[2]), _neg(h[3])))
    return [h[3] for h in hits[:LIMIT]]


def _neg(text: str) -> tuple[int, ...]:
    return tuple(-ord(c) for c in text)


def time_fn(label: str, fn: Callable[[], Any], repeat: int, warmup: int = 1) -> Timing:
    for _ in range(warmup):
        fn()
    timing = Timing(label, [])
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        timing.samples.append(time.perf_counter() - start)
    return timing


def cli_command(root: Path) -> Command:
    tether = venv_script("tether")
    env = dict(os.environ, TETHER_RUNS=str(root))
    argv = [tether, "runs", "--where", WHERE, "--sort", SORT, "--json", "-n", str(LIMIT)]
    return Command("tether runs --where", argv, env=env)


def cli_ids(root: Path) -> list[str]:
    import subprocess

    cmd = cli_command(root)
    out = subprocess.run(list(cmd.argv), env=dict(cmd.env or {}), capture_output=True, text=True)
    if out.returncode != 0:
        raise BenchError(f"tether runs failed: {out.stderr.strip()}")
    return [r["id"] for r in json.loads(out.stdout)]


# -- MLflow ---------------------------------------------------------------------------------
def mlflow_store(n: int) -> tuple[Any, str] | None:
    """An MLflow SQLite store holding the first n synthetic runs: (client, experiment id)."""
    try:
        import logging

        import mlflow
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.tracking import MlflowClient
    except ImportError:
        print("  mlflow is not installed in this venv: skipping (d); `make bench` installs it")
        return None
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.ERROR)
    folder = STORE_DIR / f"mlflow-{n}"
    stamp = folder / ".bench-complete"
    want = f"generator {GEN_VERSION} runs {n} mlflow {mlflow.__version__}\n"
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    if stamp.exists() and stamp.read_text() == want:
        client = MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name("bench")
        return client, exp.experiment_id
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment("bench", artifact_location=str(folder / "artifacts"))
    print(f"  creating {n} MLflow runs once (MLflow writes ~20 runs/s), kept in {folder}")
    start = time.perf_counter()
    for i in range(n):
        r = synth(i)
        flat = _flatten(r["config"])
        run = client.create_run(exp_id, run_name=r["name"], start_time=_ms(r["started"]))
        ts = _ms(r["stopped"])
        metrics = [Metric(k, float(v["last"]), ts, int(v["step"])) for k, v in r["metrics"].items()]
        params = [Param(k, str(v)) for k, v in flat.items()]
        tags = [RunTag("source.commit", r["commit"])]
        client.log_batch(run.info.run_id, metrics=metrics, params=params, tags=tags)
        status = "FINISHED" if r["status"] == "completed" else "FAILED"
        client.set_terminated(run.info.run_id, status=status, end_time=ts)
        if (i + 1) % 1000 == 0:
            print(f"    {i + 1} runs, {time.perf_counter() - start:.0f} s")
    stamp.write_text(want)
    return client, exp_id


def _flatten(obj: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _ms(iso: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def mlflow_seeds(client: Any, exp_id: str) -> list[int]:
    runs = client.search_runs(
        [exp_id], filter_string=MLFLOW_FILTER, order_by=MLFLOW_ORDER, max_results=LIMIT
    )
    return [int(r.data.params["seed"]) for r in runs]


def seeds_of(root: Path, ids: list[str]) -> list[int]:
    from tether.store import Store
    from tether.store.select import values_of

    store = Store(root)
    found = values_of(store.index, ids, ["config.seed"])
    return [int(found[i]["config.seed"]) for i in ids]


# -- the reconcile step of an ordinary listing -------------------------------------------------
def reconcile_bench(n: int, pendings: list[int], repeat: int) -> tuple[list[str], dict[str, Any]]:
    """`tether runs -n 20` with k journal entries pending, against `tether --help`."""
    from tether.store import Store
    from tether.store.journal import Journal

    root = build_store(n)
    Store(root).list(limit=1)  # applies what an earlier benchmark left pending
    journal = Journal(root)
    ids = [synth(i)["id"] for i in range(0, n, max(1, n // 1000))]
    tether = venv_script("tether")
    env = dict(os.environ, TETHER_RUNS=str(root))
    help_cmd = Command("tether --help", [tether, "--help"], env=env)
    listing = [tether, "runs", "-n", str(LIMIT)]
    cmds = {k: Command(f"tether runs -n {LIMIT}, {k} pending", listing, env=env) for k in pendings}
    timings = {k: Timing(c.label, list(c.argv)) for k, c in cmds.items()}
    base = Timing(help_cmd.label, list(help_cmd.argv))
    turn = 0

    def add_pending(k: int) -> None:
        nonlocal turn
        for j in range(k):
            journal.append(ids[(turn + j) % len(ids)], "state")
        turn += k

    for rep_no in range(repeat + 1):  # the first round warms up, untimed
        (t,) = time_commands([help_cmd], 1, warmup=0)
        if rep_no:
            base.samples += t.samples
        for k, cmd in cmds.items():
            add_pending(k)
            if k:
                pending = journal.end() - (Store(root).index.position() or (None, 0))[1]
                if pending != k:
                    raise BenchError(f"{pending} journal entries pending, not {k}")
            (t,) = time_commands([cmd], 1, warmup=0)
            if rep_no:
                timings[k].samples += t.samples
    # The reconcile step alone, in this process: bringing an open index up to date.
    steps: dict[int, Timing] = {}
    for k in pendings:
        steps[k] = Timing(f"reconcile step, {k} pending", [])
        for _ in range(repeat):
            store = Store(root)
            store.index.position()  # opened and checked: not part of the step
            add_pending(k)
            start = time.perf_counter()
            store._readable_index()
            steps[k].samples.append(time.perf_counter() - start)
            store.close_index()
    print(f"{n} runs, reconcile on read:")
    lines = []
    result: dict[str, Any] = {"runs": n, "help_s": base.as_dict(), "pending": {}}
    for k, t in timings.items():
        ratio = t.median / base.median
        print(
            f"  {t.label:<32} median {fmt(t.median):>10}  min {fmt(t.best):>10}"
            f"  ({len(t.samples)} runs)"
        )
        verdict = "OK" if ratio <= GOAL_RECONCILE else "MISSED"
        lines.append(
            f"{n} runs: {t.label} {fmt(t.median)} vs {base.label} {fmt(base.median)}: "
            f"ratio {ratio:.2f} (goal <= {GOAL_RECONCILE}) {verdict}"
        )
        result["pending"][str(k)] = {
            "listing_s": t.as_dict(),
            "ratio": round(ratio, 3),
            "step_s": steps[k].as_dict(),
        }
    print(f"  {base.label:<32} median {fmt(base.median):>10}  min {fmt(base.best):>10}")
    for t in steps.values():
        print(f"  {t.label:<32} median {fmt(t.median):>10}  min {fmt(t.best):>10}")
        lines.append(f"{n} runs: {t.label}: {fmt(t.median)} (in process)")
    return lines, result


# -- report ---------------------------------------------------------------------------------
def fmt(seconds: float) -> str:
    if seconds < 0.01:
        return f"{seconds * 1000:.2f} ms"
    return secs(seconds)


def main() -> int:
    begin()
    sizes = [
        int(s) for s in os.environ.get("BENCH_QUERY_SIZES", "1000,10000,100000").split(",") if s
    ]
    n_mlflow = int(os.environ.get("BENCH_QUERY_MLFLOW", "5000"))
    n_reconcile = int(os.environ.get("BENCH_RECONCILE_RUNS", "100000"))
    pendings = [int(k) for k in os.environ.get("BENCH_RECONCILE_PENDING", "0,100").split(",")]
    repeat = repeat_count(30)
    precompile_tether()
    print(f"query: where {WHERE!r}, sort {SORT!r}, first {LIMIT}")
    results: list[dict[str, Any]] = []
    lines: list[str] = []
    try:
        for n in sizes:
            root = build_store(n)
            lib = time_fn("library query", lambda root=root: library_query(root), repeat)
            store = open_store(root)
            warm = time_fn(
                "query, store open",
                lambda store=store: store.query(where=WHERE, sort=SORT, limit=LIMIT),
                repeat,
            )
            scan_reps = max(2, min(repeat, 200_000 // n // 2))
            base = time_fn("directory scan", lambda root=root: scan(root), scan_reps)
            floor = time_fn("json floor", lambda root=root: json_floor(root), scan_reps)
            (cli,) = time_commands([cli_command(root)], max(5, repeat // 3), warmup=1)
            # All three must give the same runs in the same order.
            a, b, c = library_query(root), cli_ids(root), scan(root)
            if not a == b == c or len(a) != LIMIT:
                raise BenchError(f"{n} runs: the library, the command and the scan disagree")
            speedup = base.median / lib.median
            cli_ratio = cli.median / base.median
            print(f"{n} runs:")
            for t in (lib, warm, cli, base, floor):
                print(
                    f"  {t.label:<20} median {fmt(t.median):>10}  min {fmt(t.best):>10}"
                    f"  ({len(t.samples)} runs)"
                )
            goal = n >= 100_000
            ok_lib = "OK" if speedup >= GOAL_LIBRARY else "MISSED"
            ok_cli = "OK" if cli_ratio <= GOAL_CLI else "MISSED"
            lines.append(
                f"{n} runs: library query {fmt(lib.median)} vs scan {fmt(base.median)}: "
                f"{speedup:.0f}x faster, ratio {1 / speedup:.5f}"
                + (f" (goal >= {GOAL_LIBRARY:.0f}x) {ok_lib}" if goal else "")
            )
            lines.append(
                f"{n} runs: tether runs --where {fmt(cli.median)} vs scan {fmt(base.median)}: "
                f"ratio {cli_ratio:.3f}" + (f" (goal <= {GOAL_CLI}) {ok_cli}" if goal else "")
            )
            results.append(
                {
                    "runs": n,
                    "library_s": lib.as_dict(),
                    "library_open_store_s": warm.as_dict(),
                    "cli_s": cli.as_dict(),
                    "scan_s": base.as_dict(),
                    "json_floor_s": floor.as_dict(),
                    "library_speedup": round(speedup, 1),
                    "cli_ratio": round(cli_ratio, 4),
                }
            )
        mlflow_result: dict[str, Any] | None = None
        if n_mlflow > 0:
            store = mlflow_store(n_mlflow)
            if store is not None:
                client, exp_id = store
                root = build_store(n_mlflow)
                mine = seeds_of(root, library_query(root))
                theirs = mlflow_seeds(client, exp_id)
                if mine != theirs:
                    raise BenchError(f"tether and MLflow disagree: {mine} != {theirs}")
                lib = time_fn("library query", lambda: library_query(root), repeat)
                ml = time_fn(
                    "mlflow search_runs", lambda: mlflow_seeds(client, exp_id), max(5, repeat // 3)
                )
                speedup = ml.median / lib.median
                print(f"{n_mlflow} runs, against MLflow:")
                for t in (lib, ml):
                    print(
                        f"  {t.label:<20} median {fmt(t.median):>10}  min {fmt(t.best):>10}"
                        f"  ({len(t.samples)} runs)"
                    )
                verdict = "OK" if speedup >= GOAL_MLFLOW else "MISSED"
                lines.append(
                    f"{n_mlflow} runs: library query {fmt(lib.median)} vs MLflow search_runs "
                    f"{fmt(ml.median)}: {speedup:.0f}x faster, ratio {1 / speedup:.4f} "
                    f"(goal >= {GOAL_MLFLOW:.0f}x) {verdict}"
                )
                mlflow_result = {
                    "runs": n_mlflow,
                    "library_s": lib.as_dict(),
                    "search_runs_s": ml.as_dict(),
                    "speedup": round(speedup, 1),
                }
        reconcile_result: dict[str, Any] | None = None
        if n_reconcile > 0:
            found_lines, reconcile_result = reconcile_bench(
                n_reconcile, pendings, max(5, repeat // 2)
            )
            lines += found_lines
    except BenchError as exc:
        return fail(exc)
    print()
    for line in lines:
        print(line)
    found = versions("tether", "mlflow", "PyYAML")
    print(versions_line(found))
    rows = []
    for size in results:
        if size["runs"] < 100_000:
            continue  # the goals are set at 100k runs; the smaller stores show the growth
        lib_s, scan_s = size["library_s"]["median_s"], size["scan_s"]["median_s"]
        cli_s = size["cli_s"]["median_s"]
        rows.append(
            ratio_row(
                f"{size['runs']} runs: directory scan / library query",
                scan_s,
                lib_s,
                GOAL_LIBRARY,
                ">=",
            )
        )
        rows.append(
            ratio_row(f"{size['runs']} runs: tether runs --where / scan", cli_s, scan_s, GOAL_CLI)
        )
    if mlflow_result is not None:
        rows.append(
            ratio_row(
                f"{mlflow_result['runs']} runs: MLflow search_runs / library query",
                mlflow_result["search_runs_s"]["median_s"],
                mlflow_result["library_s"]["median_s"],
                GOAL_MLFLOW,
                ">=",
            )
        )
    if reconcile_result is not None:
        for k, entry in reconcile_result["pending"].items():
            rows.append(
                ratio_row(
                    f"{reconcile_result['runs']} runs, {k} pending: tether runs -n 20 / --help",
                    entry["listing_s"]["median_s"],
                    reconcile_result["help_s"]["median_s"],
                    GOAL_RECONCILE,
                )
            )
    record(
        "query",
        rows,
        where=WHERE,
        sort=SORT,
        limit=LIMIT,
        sizes=results,
        mlflow=mlflow_result,
        reconcile=reconcile_result,
        versions=found,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
