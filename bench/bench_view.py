"""`tether view`: its API and its page against the CLI on the same runs, in the same run.

  (a) the first page (50 runs) of the API at 100k runs, at the server (Starlette's app called
      in-process, no network), plain and with the where/sort of bench_query; goal < 100 ms;
  (b) `tether runs --json -n 50` on the same runs, a fresh process each time (the baseline);
  (c) the runs table painted in Chromium (a real `tether view`, Playwright): from navigation to
      the first row shown; goal < 300 ms;
  (d) 50 runs x 10,000 steps overlaid on one chart (the compare page): from navigation to the
      chart drawn; goal < 500 ms: the first load (every metrics.jsonl parsed) and later ones
      (the server's cache of unchanged files).

Not measured yet: the runs page of `mlflow server` on the same 5k runs.

The 100k runs are bench_query's (bench/results/query/runs-100000, made there if missing); the
50 runs of 10,000 steps are made by a real `tether.start_run` into bench/results/view/.

    .venv/bin/python bench/bench_view.py

Environment: BENCH_VIEW_RUNS (default 100000), BENCH_REPEAT (default 20).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import bench_query
from benchlib import RESULTS_DIR, Command, machine, repeat_count, save_results, time_commands

VIEW_DIR = RESULTS_DIR / "view"
PAGE = 50
CURVES, STEPS = 50, 10_000
CHROMIUM = "/usr/bin/chromium"
GOALS = {
    "api_first_page_s": 0.100,
    "paint_first_page_s": 0.300,
    "overlay_cold_s": 0.500,
    "overlay_s": 0.500,
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


def start_view(root: Path) -> tuple[subprocess.Popen[str], str]:
    tether = Path(sys.executable).parent / "tether"
    proc = subprocess.Popen(
        [str(tether), "view", "--port", "0", "--runs-dir", str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
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
        proc, url = start_view(curves)
        try:
            page = browser.new_page()
            page.goto(url)
            page.wait_for_selector("table#runs tbody tr")
            ids = page.eval_on_selector_all(
                "table#runs tbody tr", "rs => rs.map(r => r.dataset.id)"
            )
            target = url.split("?")[0] + "#/compare?runs=" + ",".join(ids[:CURVES])
            samples = []
            for i in range(max(3, repeat // 4) + 1):
                start = time.perf_counter()
                page.goto(target.replace("#", f"?r={i}#"))
                page.wait_for_selector(".chart[data-key=loss] canvas")
                samples.append(time.perf_counter() - start)
            # The first load parses 50 metrics.jsonl files; later ones hit the server's cache
            # of unchanged files (what back/forward and a second look cost).
            out["overlay_cold_s"] = samples[0]
            out["overlay_s"] = statistics.median(samples[1:])
            out["overlay_curves"] = len(ids[:CURVES])
        finally:
            stop_view(proc)
        browser.close()
    return out


def main() -> int:
    repeat = repeat_count(20)
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
    for key, value in results.items():
        goal = GOALS.get(key)
        mark = "" if goal is None else (" OK" if value < goal else f" MISSED (goal {goal}s)")
        shown = f"{value * 1000:.1f} ms" if key.endswith("_s") else str(value)
        print(f"  {key}: {shown}{mark}")
    print(f"  API first page vs CLI: {results['cli_first_page_s'] / api['plain']:.1f}x faster")
    save_results("view", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
