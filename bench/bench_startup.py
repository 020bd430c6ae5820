"""Start-up time of the `tether` command against `dvc --version`.

Measures the wall time of `tether --help` (the console script of the bench venv) and of
`dvc --version` from the same venv, each as a fresh process, and reports the ratio of the
medians. Goal: tether <= 0.35 x dvc (issue 19). `python -c pass` is shown as the floor that no
Python command can go below.

    .venv-bench/bin/python bench/bench_startup.py      # or: make bench
"""

from __future__ import annotations

import sys
import tempfile

from benchlib import (
    BenchError,
    Command,
    begin,
    fail,
    precompile_tether,
    print_table,
    ratio_line,
    ratio_row,
    record,
    repeat_count,
    time_commands,
    venv_script,
    versions,
    versions_line,
)

GOAL = 0.35


def main() -> int:
    repeat = repeat_count(30)
    begin()
    precompile_tether()
    try:
        tether = venv_script("tether")
        dvc = venv_script("dvc")
    except BenchError as exc:
        return fail(exc)
    # From an empty folder: neither tool should find a project or repository to inspect.
    with tempfile.TemporaryDirectory(prefix="tether-bench-startup-") as tmp:
        commands = [
            Command("tether --help", [tether, "--help"], cwd=tmp),
            Command("dvc --version", [dvc, "--version"], cwd=tmp),
            Command("python -c pass", [sys.executable, "-c", "pass"], cwd=tmp),
        ]
        try:
            ours, baseline, floor = time_commands(commands, repeat)
        except BenchError as exc:
            return fail(exc)
    print(f"start-up, median of {repeat} runs each:")
    print_table([ours, baseline, floor])
    print(ratio_line(ours, baseline, GOAL, floor))
    found = versions("tether", "dvc", "click")
    print(versions_line(found))
    rows = [
        ratio_row(
            "tether --help / dvc --version",
            ours.median,
            baseline.median,
            GOAL,
            note=f"floor python -c pass {floor.median:.4f} s",
        )
    ]
    record("startup", rows, versions=found, timings=[t.as_dict() for t in (ours, baseline, floor)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
