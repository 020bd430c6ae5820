"""`tether doctor` cost: every check, against importing torch alone (the doctor's slowest
probe, which it cannot avoid: torch is imported in a child process to see that it works).

Three commands, measured round-robin in one run (see benchlib):

1. `tether doctor --json`: every check (21), run concurrently;
2. `tether doctor --json --check torch`: only the torch probe (tether's start-up + the child);
3. `python -c "import torch"`: the floor.

Goals: the whole doctor under 3 s (so it can run before every job), and at most 1.3 x the
import of torch (the 20 other checks hide behind the torch probe). The doctor exits 1 when a
check fails on this machine; that still measures it (only an exit above 1 is a broken run).

    .venv-bench/bin/python bench/bench_doctor.py      # or: bash bench/run.sh doctor

Environment: BENCH_REPEAT (default 10), BENCH_WARMUP.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchlib import (
    BenchError,
    Command,
    begin,
    fail,
    precompile_tether,
    print_table,
    ratio_row,
    record,
    repeat_count,
    row,
    time_commands,
    venv_script,
    versions,
    versions_line,
    warmup_count,
)

GOAL_S = 3.0
GOAL_RATIO = 1.3
# The doctor exits 0 (ok, warnings) or 1 (a check failed here); both are a complete doctor.
ACCEPT = 'out=$("$@"); code=$?; [ "$code" -le 1 ] || exit "$code"; printf %s "$out" >/dev/null'


def _doctor(tether: str, *args: str) -> list[str]:
    return ["sh", "-c", ACCEPT, "sh", tether, "doctor", "--json", *args]


def main() -> int:
    begin()
    repeat = repeat_count(10)
    precompile_tether()
    try:
        tether = venv_script("tether")
    except BenchError as exc:
        return fail(exc)
    with tempfile.TemporaryDirectory(prefix="tether-bench-doctor-") as tmp:
        work = Path(tmp) / "work"
        work.mkdir()
        # W&B offline: no connection attempt to api.wandb.ai from a machine without network.
        env = dict(os.environ, TETHER_RUNS=str(Path(tmp) / "runs"), WANDB_MODE="offline")
        env.pop("TETHER_SCHEDULER", None)
        probe = subprocess.run(
            [tether, "doctor", "--json"], cwd=work, env=env, capture_output=True, text=True
        )
        if probe.returncode > 1:
            return fail(BenchError(f"tether doctor failed: {probe.stderr.strip()}"))
        report = json.loads(probe.stdout)
        torch_check = next(c for c in report["checks"] if c["name"] == "torch")
        if torch_check["status"] != "ok":
            return fail(BenchError(f"torch is not importable here: {torch_check['summary']}"))
        commands = [
            Command("tether doctor --json", _doctor(tether), cwd=work, env=env),
            Command("tether doctor --check torch", _doctor(tether, "--check", "torch"), work, env),
            Command('python -c "import torch"', [sys.executable, "-c", "import torch"], work, env),
        ]
        try:
            ours, torch_only, floor = time_commands(commands, repeat, warmup_count(1))
        except BenchError as exc:
            return fail(exc)
    print(f"checks: {len(report['checks'])} ({report['status']} on this machine)")
    print(f"tether doctor, median of {repeat} runs each:")
    print_table([ours, torch_only, floor])
    found = versions("tether", "torch")
    print(versions_line(found))
    rows = [
        ratio_row("tether doctor --json / import torch", ours.median, floor.median, GOAL_RATIO),
        row(
            f"tether doctor --json, seconds / {GOAL_S:g} s",
            ours.median / GOAL_S,
            1.0,
            value=ours.median,
            baseline=GOAL_S,
        ),
    ]
    record(
        "doctor",
        rows,
        checks=len(report["checks"]),
        versions=found,
        timings=[t.as_dict() for t in (ours, torch_only, floor)],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
