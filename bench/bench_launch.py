"""Launch overhead: `tether launch -n 2 python -c pass` against the same job started by hand.

Two comparisons, each measured round-robin in one run (see benchlib):

1. against raw `mpiexec -n 2 python -c pass`: the baseline is exactly the mpiexec command tether
   builds (from `tether launch --dry-run`, so `--allow-run-as-root` and the mapping flags are
   the same), so the difference is tether's own cost: start-up, scheduler detection, the MPI
   flavour check, and the run record (run.lock, state, index, launch.json, output.log).
   Goal: tether <= 1.5 x mpiexec.
2. against `torchrun --nproc-per-node 2` running the same `python -c pass` per rank
   (`--no-python`): torchrun imports torch in its launcher. Goal: tether <= 0.5 x torchrun.

Beside them, measured the same way: a Python front-end that only starts the same mpiexec and
waits for it (no parsing, no record: the least any launcher written in Python costs), and
`python -c pass`. Every command gets the same PATH, the bench venv's bin/ first, so the ranks'
`python` is the same interpreter under tether (which puts its own bin/ first) and by hand.
Then, for where the overhead goes: the CPU time of each command with all it starts (getrusage
of the children, steadier than wall time on a shared machine), a timeline of launches in a
fresh interpreter (when the job starts and ends, tether's CPU before the job and in all, the
modules loaded), and the import time of the launch path, group by group.

Every tether launch must leave a completed run with launch.json saying `completed`, so a
broken launch cannot pass as a fast one.

    .venv-bench/bin/python bench/bench_launch.py      # or: make bench / bash bench/run.sh launch

Environment: BENCH_REPEAT (default 20 for the mpiexec comparison; torchrun runs a quarter as
often, at least 3), BENCH_WARMUP.
"""

from __future__ import annotations

import json
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

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
# included), all of it and what was spent before the job started (the interpreter's own start
# included), with the modules loaded then and at the end: where a launch's overhead over the
# bare launcher goes.
PHASES = r"""
import atexit, json, resource, subprocess, sys, time
t0 = time.perf_counter()
marks = {}
popen, wait = subprocess.Popen.__init__, subprocess.Popen.wait
def _cpu():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return 1000 * (ru.ru_utime + ru.ru_stime)
def _popen(self, args, *a, **k):
    if "--version" not in args and "job started, ms" not in marks:
        marks["job started, ms"] = 1000 * (time.perf_counter() - t0)
        marks["tether CPU before the job, ms"] = _cpu()
        marks["modules before the job"] = len(sys.modules)
    popen(self, args, *a, **k)
def _wait(self, *a, **k):
    out = wait(self, *a, **k)
    if "--version" not in self.args:
        marks.setdefault("job ended, ms", 1000 * (time.perf_counter() - t0))
    return out
subprocess.Popen.__init__, subprocess.Popen.wait = _popen, _wait
def _done():
    marks["tether exits, ms"] = 1000 * (time.perf_counter() - t0)
    marks["tether CPU, ms"] = _cpu()
    marks["modules loaded"] = len(sys.modules)
    print(json.dumps(marks), file=sys.__stderr__)
atexit.register(_done)
sys.argv = ["tether", *sys.argv[1:]]
from tether.cli.main import main
main()
"""

# Import time of the launch path in fresh interpreters, group after group (each one's cost is
# what it adds to those before it): click, tether's modules up to the job's start, and the run
# record's, loaded while the job runs.
IMPORT_GROUPS = [
    ("click", ["click"]),
    (
        "tether up to the job's start",
        [
            "tether.cli.main",
            "tether.cli.launch",
            "tether.distributed.launch",
            "tether.distributed.resolver",
        ],
    ),
    (
        "the run record (while the job runs)",
        ["tether.session.start", "tether.store.ranks", "tether.capture.output", "yaml", "sqlite3"],
    ),
]
IMPORTS = r"""
import json, sys, time
out = {}
for label, names in json.loads(sys.argv[1]):
    t = time.perf_counter()
    for name in names:
        __import__(name)
    out[label + ", ms"] = 1000 * (time.perf_counter() - t)
print(json.dumps(out))
"""

# The least any Python front-end costs: start the launcher and wait for it (no parsing, no
# record). What tether adds beyond this is its own; up to this is Python's.
FRONT_END = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"

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
        # The ranks' `python` is the bench venv's for every command: tether puts its
        # interpreter's bin/ first on the job's PATH, and the raw commands get the same PATH
        # (else they might run a slower shim, such as pyenv's, or another Python).
        bin_dir = str(Path(tether).parent)
        env = dict(os.environ, TETHER_RUNS=str(runs))
        env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
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
        front = Command(
            "python front-end, spawn and wait only",
            [sys.executable, "-c", FRONT_END, *raw_argv],
            cwd=work,
            env=env,
        )
        floor = Command("python -c pass", JOB, cwd=work, env=env)
        torch_cmd = [torchrun, "--nproc-per-node", "2", "--no-python", *JOB]
        torch = Command("torchrun --nproc-per-node 2", torch_cmd, cwd=work, env=env)
        try:
            ours1, raw, bare, base = time_commands([ours, mpiexec, front, floor], repeat, warmup)
            cpu = _cpu_ms([ours, mpiexec, front, floor], max(5, repeat // 2))
            ours2, slow = time_commands([ours, torch], slow_repeat, min(warmup, 1))
            phases = [_phases(launch_argv[1:], work, env) for _ in range(max(5, repeat // 2))]
            imports = _imports(work, env, max(5, repeat // 2))
            timed = (warmup + repeat) + len(cpu["samples"]) + (min(warmup, 1) + slow_repeat)
            _check_runs(runs, timed + len(phases))
        except BenchError as exc:
            return fail(exc)
    print(f"raw mpiexec argv: {shlex.join(raw_argv)}")
    print(f"against mpiexec, median of {repeat} runs each:")
    print_table([ours1, raw, bare, base])
    print(f"overhead over mpiexec: {1000 * (ours1.median - raw.median):.0f} ms")
    cpu_ms = cpu["median"]
    print(
        f"CPU time (getrusage of the children: the command and all it starts), median of "
        f"{len(cpu['samples'])}, ms:"
    )
    _print_numbers(cpu_ms)
    phases_median = {k: statistics.median(p.get(k, 0.0) for p in phases) for k in phases[0]}
    print(f"where a launch's time goes (median of {len(phases)} in-process timelines, ms):")
    _print_numbers(phases_median)
    print(f"import time of the launch path (median of {len(imports)} fresh interpreters, ms):")
    imports_ms = {k: statistics.median(i[k] for i in imports) for k in imports[0]}
    _print_numbers(imports_ms)
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
        front_end_ratio=round(bare.median / raw.median, 3),
        phases_ms={k: round(v, 1) for k, v in phases_median.items()},
        cpu_ms={k: round(v, 1) for k, v in cpu_ms.items()},
        imports_ms={k: round(v, 1) for k, v in imports_ms.items()},
        raw_argv=raw_argv,
        versions=found,
        timings=[t.as_dict() for t in (ours1, raw, bare, base, ours2, slow)],
    )
    return 0


def _print_numbers(numbers: dict[str, float]) -> None:
    width = max(len(k) for k in numbers)
    for key, value in numbers.items():
        print(f"  {key:<{width}} {value:8.1f}")


def _cpu_ms(commands: list[Command], rounds: int) -> dict[str, Any]:
    """CPU time (user + system) of each command and everything it starts (RUSAGE_CHILDREN: the
    launcher and the ranks too), round-robin like the wall times: on two cores shared with
    other work, CPU time is steadier than wall time."""
    samples: dict[str, list[float]] = {c.label: [] for c in commands}
    for _ in range(rounds):
        for cmd in commands:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            proc = subprocess.run(
                list(cmd.argv),
                cwd=cmd.cwd,
                env=dict(cmd.env or os.environ),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                check=False,
            )
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if proc.returncode != 0:
                raise BenchError(f"{cmd.label} exited {proc.returncode}: {proc.stderr[-500:]!r}")
            used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            samples[cmd.label].append(1000 * used)
    median = {label: statistics.median(values) for label, values in samples.items()}
    return {"median": median, "samples": samples[commands[0].label]}


def _imports(cwd: Path, env: dict[str, str], rounds: int) -> list[dict[str, float]]:
    groups = json.dumps(IMPORT_GROUPS)
    out = []
    for _ in range(rounds):
        proc = subprocess.run(
            [sys.executable, "-c", IMPORTS, groups],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise BenchError(f"timing the imports failed: {proc.stderr.strip()[-500:]}")
        out.append(json.loads(proc.stdout))
    return out


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
