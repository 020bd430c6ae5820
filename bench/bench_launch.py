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
import statistics
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
    time_commands,
    venv_script,
    versions,
    versions_line,
    warmup_count,
)

# Run in a fresh interpreter: times (ms since the interpreter's start of the script) when the
# job's launcher starts and ends, when tether exits, and tether's own CPU (the ranks' not
# included): where a launch's overhead over the bare launcher goes.
PHASES = r"""
import atexit, json, resource, subprocess, sys, time
t0 = time.perf_counter()
marks = {}
popen, wait = subprocess.Popen.__init__, subprocess.Popen.wait
def _popen(self, args, *a, **k):
    what = "version asked, ms" if "--version" in args else "job started, ms"
    marks.setdefault(what, 1000 * (time.perf_counter() - t0))
    popen(self, args, *a, **k)
def _wait(self, *a, **k):
    out = wait(self, *a, **k)
    if "--version" not in self.args:
        marks.setdefault("job ended, ms", 1000 * (time.perf_counter() - t0))
    return out
subprocess.Popen.__init__, subprocess.Popen.wait = _popen, _wait
def _done():
    marks["tether exits, ms"] = 1000 * (time.perf_counter() - t0)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    marks["tether CPU, ms"] = 1000 * (ru.ru_utime + ru.ru_stime)
    marks["modules loaded"] = len(sys.modules)
    print(json.dumps(marks), file=sys.__stderr__)
atexit.register(_done)
sys.argv = ["tether", *sys.argv[1:]]
from tether.cli.main import main
main()
"""

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
    begin()
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
            phases = [_phases(launch_argv[1:], work, env) for _ in range(max(5, repeat // 2))]
            _check_runs(runs, (warmup + repeat) + (min(warmup, 1) + slow_repeat) + len(phases))
        except BenchError as exc:
            return fail(exc)
    print(f"raw mpiexec argv: {shlex.join(raw_argv)}")
    print(f"against mpiexec, median of {repeat} runs each:")
    print_table([ours1, raw, base])
    print(f"overhead over mpiexec: {1000 * (ours1.median - raw.median):.0f} ms")
    phases_median = {k: statistics.median(p.get(k, 0.0) for p in phases) for k in phases[0]}
    print(f"where a launch's time goes (median of {len(phases)} in-process timelines, ms):")
    for key, value in phases_median.items():
        print(f"  {key:<16} {value:8.1f}")
    print(f"against torchrun, median of {slow_repeat} runs each:")
    print_table([ours2, slow])
    found = versions("tether", "torch", "click")
    found["mpiexec"] = _mpi_version()
    print(versions_line(found))
    rows = [
        ratio_row("tether launch -n 2 / mpiexec -n 2", ours1.median, raw.median, GOAL_MPIEXEC),
        ratio_row("tether launch -n 2 / torchrun", ours2.median, slow.median, GOAL_TORCHRUN),
    ]
    record(
        "launch",
        rows,
        overhead_ms=round(1000 * (ours1.median - raw.median), 1),
        phases_ms={k: round(v, 1) for k, v in phases_median.items()},
        raw_argv=raw_argv,
        versions=found,
        timings=[t.as_dict() for t in (ours1, raw, base, ours2, slow)],
    )
    return 0


def _phases(args: list[str], cwd: Path, env: dict[str, str]) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, "-c", PHASES, *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise BenchError(f"the launch timeline failed: {proc.stderr.strip()[-500:]}")
    marks: dict[str, float] = json.loads(proc.stderr.strip().splitlines()[-1])
    return marks


def _mpi_version() -> str:
    try:
        out = subprocess.run(["mpiexec", "--version"], capture_output=True, text=True).stdout
    except OSError:
        return "missing"
    return out.strip().splitlines()[0] if out.strip() else "unknown"


if __name__ == "__main__":
    sys.exit(main())
