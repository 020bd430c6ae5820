"""`tether view`: its API and its page against the CLI on the same runs, in the same run.

  (a) the first page (50 runs) of the API at 100k runs, at the server (Starlette's app called
      in-process, no network), plain and with the where/sort of bench_query; goal < 100 ms;
  (b) `tether runs --json -n 50` on the same runs, a fresh process each time (the baseline);
  (c) the runs table painted in Chromium (a real `tether view`, Playwright): from navigation to
      the first row shown; goal < 300 ms;
  (d) 50 runs x 10,000 steps overlaid on one chart (the compare page): from navigation to the
      chart drawn; goal < 500 ms: the first load (every metrics.jsonl parsed) and later ones
      (the server's memory of unchanged files), and the first load after a restart of the
      server (the series kept on this host's cache disk: tether.web.seriescache).

  (e) the runs page of `mlflow server` (its search-runs API, `POST /api/2.0/mlflow/runs/search`,
      max_results 50) against `tether view`'s `/api/runs?limit=50`, both over HTTP on 127.0.0.1,
      on the same 5k runs (bench_query's first 5k, logged into MLflow's SQLite store once
      and kept), plain and with the same filter; the ratio printed.

The 100k runs are bench_query's (bench/results/query/runs-100000, made there if missing); the
50 runs of 10,000 steps are made by a real `tether.start_run` into bench/results/view/.

    .venv/bin/python bench/bench_view.py

Environment: BENCH_VIEW_RUNS (default 100000), BENCH_MLFLOW_RUNS (default 5000),
BENCH_REPEAT (default 20).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import bench_query
from benchlib import (
    RESULTS_DIR,
    Command,
    begin,
    machine,
    ratio_row,
    record,
    repeat_count,
    time_commands,
)

VIEW_DIR = RESULTS_DIR / "view"
PAGE = 50
CURVES, STEPS = 50, 10_000
CHROMIUM = "/usr/bin/chromium"
# Budgets in seconds (docs/web.md); each goal row is the time measured / its budget, <= 1.
GOALS = {
    "api_first_page_s": 0.100,
    "paint_first_page_s": 0.300,
    "overlay_cold_s": 0.500,
    "overlay_s": 0.500,
    "overlay_restart_s": 0.500,
}
LABELS = {
    "api_first_page_s": "API first page of 50, 100k runs",
    "paint_first_page_s": "table painted in Chromium",
    "overlay_cold_s": "compare 50 x 10k steps, first load",
    "overlay_s": "the same, again (server memory)",
    "overlay_restart_s": "the same, after a restart (host cache)",
}


def overlay_runs() -> Path:
    """50 runs of 10,000 steps each, made once and kept."""
    root = VIEW_DIR / f"runs-{CURVES}x{STEPS}"
    stamp = root / ".bench-complete"
    if stamp.exists():
        return root
    if root.exists():
        shutil.rmtree(root)
    os.environ["TETHER_RUNS"] = str(root)
    import tether

    for i in range(CURVES):
        with tether.start_run({"seed": i}, name="curve", snapshot=False) as run:
            for step in range(STEPS):
                run.log_metrics({"loss": 1.0 / (step + 1) + i * 1e-3}, step=step)
    stamp.write_text(f"{CURVES}x{STEPS}\n")
    return root


def api_first_page(root: Path, repeat: int) -> dict[str, float]:
    from starlette.testclient import TestClient

    from tether.web.app import build_app
    from tether.web.security import Policy

    policy = Policy("127.0.0.1", 8765)
    client = TestClient(build_app(root, policy), base_url="http://127.0.0.1:8765")
    out = {}
    cases: list[tuple[str, dict[str, str]]] = [
        ("plain", {"limit": str(PAGE)}),
        ("where+sort", {"limit": str(PAGE), "where": bench_query.WHERE, "sort": bench_query.SORT}),
    ]
    for label, params in cases:
        client.get("/api/runs", params=params).raise_for_status()  # warm
        samples = []
        for _ in range(repeat):
            start = time.perf_counter()
            client.get("/api/runs", params=params).raise_for_status()
            samples.append(time.perf_counter() - start)
        out[label] = statistics.median(samples)
    return out


def start_view(root: Path, cache: Path | None = None) -> tuple[subprocess.Popen[str], str]:
    tether = Path(sys.executable).parent / "tether"
    env = {**os.environ, "TETHER_CACHE_DIR": str(cache)} if cache else None
    proc = subprocess.Popen(
        [str(tether), "view", "--port", "0", "--runs-dir", str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    found = re.search(r"http://\S+", proc.stdout.readline())
    assert found, "tether view printed no URL"
    return proc, found.group(0)


def stop_view(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)


def browser_times(big: Path, curves: Path, repeat: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    out: dict[str, Any] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        proc, url = start_view(big)
        try:
            page = browser.new_page()
            page.goto(url)  # takes the token cookie
            page.wait_for_selector("table#runs tbody tr")
            samples = []
            for _ in range(repeat):
                start = time.perf_counter()
                page.goto(url.split("?")[0] + f"?r={time.time_ns()}#/runs")
                page.wait_for_selector("table#runs tbody tr")
                samples.append(time.perf_counter() - start)
            out["paint_first_page_s"] = statistics.median(samples)
        finally:
            stop_view(proc)
        # A cache folder of this run's own: the first load is cold (no entry on disk), the
        # load after a restart finds the series the first one kept there.
        cache = VIEW_DIR / f"cache-{os.getpid()}"
        shutil.rmtree(cache, ignore_errors=True)
        try:
            proc, url = start_view(curves, cache)
            try:
                page = browser.new_page()
                page.goto(url)
                page.wait_for_selector("table#runs tbody tr")
                # From the API: the table holds only the rows in view.
                found = _get(url.split("?")[0].rstrip("/") + f"/api/runs?limit={CURVES}")
                ids = [r["id"] for r in found["runs"]]
                compare = "#/compare?runs=" + ",".join(ids[:CURVES])
                target = url.split("?")[0] + compare
                samples = []
                for i in range(max(3, repeat // 4) + 1):
                    start = time.perf_counter()
                    page.goto(target.replace("#", f"?r={i}#"))
                    page.wait_for_selector(".chart[data-key=loss] canvas")
                    samples.append(time.perf_counter() - start)
                # The first load parses 50 metrics.jsonl files; later ones hit the server's
                # memory of unchanged files (what back/forward and a second look cost).
                out["overlay_cold_s"] = samples[0]
                out["overlay_s"] = statistics.median(samples[1:])
                out["overlay_curves"] = len(ids[:CURVES])
            finally:
                stop_view(proc)
            proc, url = start_view(curves, cache)  # a new server: memory empty, disk kept
            try:
                page = browser.new_page()
                page.goto(url)
                page.wait_for_selector("table#runs tbody tr")
                start = time.perf_counter()
                page.goto(url.split("?")[0] + "?restart=1" + compare)
                page.wait_for_selector(".chart[data-key=loss] canvas")
                out["overlay_restart_s"] = time.perf_counter() - start
            finally:
                stop_view(proc)
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        browser.close()
    return out


# The same filter in both languages (bench_query's WHERE).
MLFLOW_FILTER = "tags.mlflow.runName = 'train' and params.optim = 'adam' and metrics.loss < 0.5"


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in config.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def mlflow_store(n: int) -> tuple[Path, str]:
    """bench_query's first n runs in an MLflow SQLite store (params, final metrics, run name,
    status, times), logged once by MlflowClient and kept: (the db, its experiment id)."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    folder = VIEW_DIR / f"mlflow-{n}"
    db = folder / "mlflow.db"
    stamp = folder / ".bench-complete"
    uri = f"sqlite:///{db}"
    if stamp.exists():
        return db, stamp.read_text().strip()
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("bench", artifact_location=str(folder / "artifacts"))
    start = time.perf_counter()
    for i in range(n):
        r = bench_query.synth(i)
        began = int(datetime.fromisoformat(r["started"].replace("Z", "+00:00")).timestamp() * 1e3)
        run = client.create_run(experiment, start_time=began, tags={"mlflow.runName": r["name"]})
        run_id = run.info.run_id
        params = [Param(k, str(v)) for k, v in _flat(r["config"]).items()]
        metrics = [Metric(k, m["last"], began, m["step"]) for k, m in r["metrics"].items()]
        client.log_batch(run_id, metrics=metrics, params=params, tags=[RunTag("bench", "1")])
        status = "FINISHED" if r["status"] == "completed" else "FAILED"
        client.set_terminated(run_id, status)
    print(f"  logged {n} runs into MLflow in {time.perf_counter() - start:.0f} s", flush=True)
    stamp.write_text(f"{experiment}\n")
    return db, experiment


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read())


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=60) as answer:
        return json.loads(answer.read())


def _median(call: Any, repeat: int) -> float:
    call()  # warm
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def against_mlflow(n: int, repeat: int) -> dict[str, Any]:
    """(e): both servers over HTTP on the same n runs, in this run."""
    db, experiment = mlflow_store(n)
    tether_root = bench_query.build_store(n)
    port = free_port()
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    server = subprocess.Popen(
        [
            str(mlflow_bin),
            "server",
            "--backend-store-uri",
            f"sqlite:///{db}",
            "--default-artifact-root",
            str(db.parent / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    out: dict[str, Any] = {"mlflow_runs": n}
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:  # readiness: /health answers once the server has started
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError(f"mlflow server did not start on port {port}")
            time.sleep(0.2)
        search = f"{base}/api/2.0/mlflow/runs/search"
        plain = {"experiment_ids": [experiment], "max_results": PAGE}
        found = _post(search, plain)
        assert len(found.get("runs", [])) == PAGE, found
        filtered = {**plain, "filter": MLFLOW_FILTER, "order_by": ["metrics.accuracy DESC"]}
        out["mlflow_search_s"] = _median(lambda: _post(search, plain), repeat)
        out["mlflow_search_filter_s"] = _median(lambda: _post(search, filtered), repeat)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    proc, url = start_view(tether_root)
    try:
        runs = url.split("?")[0].rstrip("/") + "/api/runs"
        page = _get(f"{runs}?limit={PAGE}")
        assert len(page["runs"]) == PAGE and page["total"] == n, page["total"]
        query = urllib.parse.urlencode(
            {"limit": PAGE, "where": bench_query.WHERE, "sort": bench_query.SORT}
        )
        out["tether_http_page_s"] = _median(lambda: _get(f"{runs}?limit={PAGE}"), repeat)
        out["tether_http_filter_s"] = _median(lambda: _get(f"{runs}?{query}"), repeat)
    finally:
        stop_view(proc)
    return out


def main() -> int:
    repeat = repeat_count(20)
    begin()
    n = int(os.environ.get("BENCH_VIEW_RUNS", "100000"))
    big = bench_query.build_store(n)
    curves = overlay_runs()
    print(f"tether view at {n} runs ({machine()['cores']} cores)")
    api = api_first_page(big, repeat)
    tether = str(Path(sys.executable).parent / "tether")
    (cli,) = time_commands(
        [
            Command(
                "tether runs --json -n 50",
                [tether, "--runs-dir", str(big), "runs", "--json", "-n", str(PAGE)],
            )
        ],
        repeat=max(3, repeat // 4),
        warmup=1,
    )
    results: dict[str, Any] = {
        "runs": n,
        "api_first_page_s": api["plain"],
        "api_where_sort_s": api["where+sort"],
        "cli_first_page_s": cli.median,
    }
    if shutil.which(CHROMIUM):
        results.update(browser_times(big, curves, max(5, repeat // 2)))
    if shutil.which(str(Path(sys.executable).parent / "mlflow")):
        results.update(against_mlflow(int(os.environ.get("BENCH_MLFLOW_RUNS", "5000")), repeat))
    rows = []
    for key, value in results.items():
        shown = f"{value * 1000:.1f} ms" if key.endswith("_s") else str(value)
        print(f"  {key}: {shown}")
        if key in GOALS:
            rows.append(
                ratio_row(f"{LABELS[key]} / {GOALS[key]:g} s budget", value, GOALS[key], 1.0)
            )
    print(f"  API first page vs CLI: {results['cli_first_page_s'] / api['plain']:.1f}x faster")
    if "mlflow_search_s" in results:
        for what, ours, theirs in (
            ("first page", "tether_http_page_s", "mlflow_search_s"),
            ("filtered, sorted page", "tether_http_filter_s", "mlflow_search_filter_s"),
        ):
            ratio = results[theirs] / results[ours]
            print(
                f"  {what} at {results['mlflow_runs']} runs: tether view {ratio:.1f}x faster"
                " than mlflow server"
            )
    record("view", rows, **results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
