"""Launch overhead: `tether launch -n 2 python -c pass` against the same job started by hand.

Two comparisons, each measured round-robin in one run (see benchlib):

1. against raw `mpiexec -n 2 python -c pass`: the baseline is exactly the mpiexec command tether
   builds (from `tether launch --dry-run`, so `--allow-run-as-root` and the mapping flags are
   the same), so the difference is tether's own cost: start-up, scheduler detection, the MPI
   flavour check, and the run record (run.lock, state, index, launch.json, output.log).
   Goal: tether <= 1.5 x mpiexec.
2. against `torchrun --nproc-per-node 2` running the same `python -c pass` per rank
   (`--no-python`): torchrun imports torch in its launcher. Goal: tether <= 0.5 x torchrun.

Every tether launch must leave a completed run with launch.json saying `completed`, so a
broken launch cannot pass as a fast one.

    .venv-bench/bin/python bench/bench_launch.py      # or: make bench / bash bench/run.sh launch

Environment: BENCH_REPEAT (default 20 for the mpiexec comparison; torchrun runs a quarter as
often, at least 3), BENCH_WARMUP.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchlib import (
    BenchError,
    Command,
    fail,
    precompile_tether,
    print_table,
    ratio_line,
    repeat_count,
    save_results,
    time_commands,
    venv_script,
    versions,
    versions_line,
    warmup_count,
)

GOAL_MPIEXEC = 1.5
GOAL_TORCHRUN = 0.5
JOB = ["python", "-c", "pass"]


def _check_runs(runs: Path, expected: int) -> None:
    """Every timed (and warm-up) tether launch left a completed run and launch.json."""
    folders = [p for p in runs.iterdir() if (p / "run.lock").is_file()]
    if len(folders) != expected:
        raise BenchError(f"expected {expected} launch runs in {runs}, found {len(folders)}")
    for folder in folders:
        state = json.loads((folder / "state.json").read_text())
        launch = json.loads((folder / "launch.json").read_text())
        if state["status"] != "completed" or launch["outcome"] != "completed":
            raise BenchError(f"run {folder.name} is {state['status']} / {launch['outcome']}")


def main() -> int:
    repeat = repeat_count(20)
    slow_repeat = max(3, repeat // 4)
    warmup = warmup_count()
    precompile_tether()
    try:
        tether = venv_script("tether")
        torchrun = venv_script("torchrun")
        if shutil.which("mpiexec") is None:
            raise BenchError("mpiexec is not installed (apt-get install openmpi-bin)")
    except BenchError as exc:
        return fail(exc)
    with tempfile.TemporaryDirectory(prefix="tether-bench-launch-") as tmp:
        work = Path(tmp) / "work"  # outside any git repository: no source snapshot
        work.mkdir()
        runs = Path(tmp) / "runs"
        env = dict(os.environ, TETHER_RUNS=str(runs))
        env.pop("TETHER_SCHEDULER", None)
        launch_argv = [tether, "launch", "-n", "2", *JOB]
        dry = subprocess.run(
            [tether, "launch", "--dry-run", "-n", "2", *JOB],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
        )
        if dry.returncode != 0:
            return fail(BenchError(f"tether launch --dry-run failed: {dry.stderr.strip()}"))
        raw_argv = shlex.split(dry.stdout)
        ours = Command("tether launch -n 2", launch_argv, cwd=work, env=env)
        mpiexec = Command("mpiexec -n 2 (same argv)", raw_argv, cwd=work, env=env)
        floor = Command("python -c pass", JOB, cwd=work, env=env)
        torch_cmd = [torchrun, "--nproc-per-node", "2", "--no-python", *JOB]
        torch = Command("torchrun --nproc-per-node 2", torch_cmd, cwd=work, env=env)
        try:
            ours1, raw, base = time_commands([ours, mpiexec, floor], repeat, warmup)
            ours2, slow = time_commands([ours, torch], slow_repeat, min(warmup, 1))
            _check_runs(runs, (warmup + repeat) + (min(warmup, 1) + slow_repeat))
        except BenchError as exc:
            return fail(exc)
    print(f"raw mpiexec argv: {shlex.join(raw_argv)}")
    print(f"against mpiexec, median of {repeat} runs each:")
    print_table([ours1, raw, base])
    print(ratio_line(ours1, raw, GOAL_MPIEXEC, base))
    print(f"overhead over mpiexec: {1000 * (ours1.median - raw.median):.0f} ms")
    print(f"against torchrun, median of {slow_repeat} runs each:")
    print_table([ours2, slow])
    print(ratio_line(ours2, slow, GOAL_TORCHRUN))
    r1, r2 = ours1.median / raw.median, ours2.median / slow.median
    found = versions("tether", "torch", "click")
    found["mpiexec"] = _mpi_version()
    print(versions_line(found))
    save_results(
        "launch",
        {
            "goals": {
                "mpiexec": f"tether launch <= {GOAL_MPIEXEC} x mpiexec",
                "torchrun": f"tether launch <= {GOAL_TORCHRUN} x torchrun",
            },
            "ratios": {"mpiexec": round(r1, 3), "torchrun": round(r2, 3)},
            "met": {"mpiexec": r1 <= GOAL_MPIEXEC, "torchrun": r2 <= GOAL_TORCHRUN},
            "overhead_ms": round(1000 * (ours1.median - raw.median), 1),
            "raw_argv": raw_argv,
            "versions": found,
            "timings": [t.as_dict() for t in (ours1, raw, base, ours2, slow)],
        },
    )
    return 0


def _mpi_version() -> str:
    try:
        out = subprocess.run(["mpiexec", "--version"], capture_output=True, text=True).stdout
    except OSError:
        return "missing"
    return out.strip().splitlines()[0] if out.strip() else "unknown"


if __name__ == "__main__":
    sys.exit(main())
