"""`tether push` to a folder remote: a first push of N runs, then the same push with nothing
changed (the second must move 0 bytes: it compares the remote's entries, not files).

  (a) the first push of N runs (default 1,000; bench_query's synthetic runs) into an empty
      folder remote: the baseline;
  (b) the repeated push, nothing changed: its time against (a), the bytes it moved (goal 0)
      and its time extrapolated to 10k runs (linear in N; goal under 5 s).

    .venv/bin/python bench/bench_push.py

Environment: BENCH_PUSH_RUNS (default 1000), BENCH_REPEAT (repeated pushes, default 3).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench_query
from benchlib import begin, machine, record, repeat_count, row, venv_script

GOAL_10K_S = 5.0


def push(root: Path, remote: Path) -> tuple[float, dict[str, object]]:
    env = {**os.environ, "TETHER_RUNS": str(root)}
    argv = [venv_script("tether"), "push", str(remote), "--json"]
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if proc.returncode not in (0, 3):
        raise SystemExit(f"tether push failed ({proc.returncode}): {proc.stderr}")
    return took, json.loads(proc.stdout)


def main() -> int:
    n = int(os.environ.get("BENCH_PUSH_RUNS", "1000"))
    repeat = repeat_count(3)
    source = bench_query.build_store(n)
    begin()
    with tempfile.TemporaryDirectory(prefix="bench-push-") as tmp:
        root = Path(tmp) / "runs"
        shutil.copytree(source, root, symlinks=True)  # the kept store stays as it was made
        remote = Path(tmp) / "remote"
        first_s, first = push(root, remote)
        print(
            f"  first push: {n} runs, {first['files']} files, {first['bytes']} bytes "
            f"in {first_s:.2f} s"
        )
        again: list[float] = []
        moved = 0
        for _ in range(repeat):
            took, out = push(root, remote)
            again.append(took)
            moved += int(out["bytes"]) + int(out["files"])  # type: ignore[call-overload]
        median = statistics.median(again)
        print(
            f"  repeated push, nothing changed: {median:.2f} s (median of {repeat}), "
            f"{moved} bytes and files moved"
        )
    at_10k = median * 10_000 / n
    rows = [
        row(
            "push unchanged / first push",
            median / first_s,
            1.0,
            value=median,
            baseline=first_s,
            note=f"{n} runs to a folder remote",
        ),
        row("bytes moved by the unchanged push", float(moved), 0.0, value=moved, unit="B"),
        row(
            "push unchanged, 10k runs / 5 s",
            at_10k / GOAL_10K_S,
            1.0,
            value=at_10k,
            baseline=GOAL_10K_S,
            note=(
                "measured at 10k runs"
                if n == 10_000
                else f"measured at {n} runs, extrapolated linearly to 10k"
            ),
        ),
    ]
    record(
        "push",
        rows,
        runs=n,
        first_s=first_s,
        unchanged_s=again,
        machine=machine(),
        command=f"BENCH_PUSH_RUNS={n} .venv/bin/python bench/bench_push.py",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
