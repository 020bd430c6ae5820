"""Helpers shared by bench/bench_*.py: time commands, report a ratio against a goal, save results.

Every benchmark compares tether against a baseline measured in the same run, on the same
machine, so the ratio means something even when the machine is busy or slow. Scripts exit 0
when a goal is missed (they print MISSED); a non-zero exit means the benchmark itself broke.

Environment: BENCH_REPEAT sets the number of timed repetitions of each command (each script
has its own default), BENCH_WARMUP the untimed runs before them.

The conventions every script follows (docs/benchmarks.md is generated from what they write):

    load = begin()                                   # prints the load average before
    ...                                              # time the compared commands interleaved
    rows = [ratio_row("launch / mpiexec", ours.median, raw.median, goal=1.5)]
    record("launch", rows, timings=[...], ...)       # prints the load after and the rows,
                                                     # writes bench/results/launch.json

A row is one ratio with its goal: {metric, value, baseline, ratio, goal, op, ok}; `op` is "<="
(a cost: the ratio must stay at or under the goal) or ">=" (a speed-up or a throughput).
`python scripts/bench_docs.py` renders the rows (and the `timings`) into docs/benchmarks.md and
`--summary` prints every ratio with OK/MISSED at the end of `make bench`.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"  # one JSON per benchmark, tracked (the docs come from it)
LOAD_AT_IMPORT = os.getloadavg()  # the load before, for a script that does not call `begin`
_load_before: tuple[float, float, float] | None = None
SCRIPT = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else BENCH_DIR  # before chdir


class BenchError(RuntimeError):
    """The benchmark could not measure what it meant to (a command failed, a tool is missing)."""


def repeat_count(default: int) -> int:
    return max(1, int(os.environ.get("BENCH_REPEAT", default)))


def warmup_count(default: int = 2) -> int:
    return max(0, int(os.environ.get("BENCH_WARMUP", default)))


def venv_script(name: str) -> str:
    """A console script installed beside the running interpreter (the bench venv's bin/)."""
    # sys.executable, not its resolved target: the venv's bin/ holds the scripts.
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise BenchError(f"{name} is not installed beside {sys.executable}; run `make bench`")
    return str(path)


@dataclass
class Command:
    label: str
    argv: Sequence[str]
    cwd: str | os.PathLike[str] | None = None
    env: Mapping[str, str] | None = None


@dataclass
class Timing:
    label: str
    argv: list[str]
    samples: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # CPU seconds of each sample, when measured

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def best(self) -> float:
        return min(self.samples)

    @property
    def worst(self) -> float:
        return max(self.samples)

    def as_dict(self) -> dict[str, object]:
        return {
            "label": self.label,
            "argv": self.argv,
            "median_s": round(self.median, 4),
            "min_s": round(self.best, 4),
            "max_s": round(self.worst, 4),
            "samples_s": [round(s, 4) for s in self.samples],
            **({"cpu_median_s": round(statistics.median(self.cpu), 4)} if self.cpu else {}),
        }


def _run_once(cmd: Command) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        list(cmd.argv),
        cwd=cmd.cwd,
        env=dict(cmd.env) if cmd.env is not None else None,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-15:]
        raise BenchError(
            f"{cmd.label}: `{' '.join(cmd.argv)}` exited {proc.returncode}\n" + "\n".join(tail)
        )
    return elapsed


def time_commands(
    commands: Sequence[Command], repeat: int, warmup: int | None = None
) -> list[Timing]:
    """Wall time of each command, `repeat` times after `warmup` untimed runs.

    The commands run round-robin (a, b, c, a, b, c, ...) so that drift in the machine's load
    affects all of them alike.
    """
    warm = warmup_count() if warmup is None else warmup
    timings = [Timing(c.label, [str(a) for a in c.argv]) for c in commands]
    for _ in range(warm):
        for cmd in commands:
            _run_once(cmd)
    for _ in range(repeat):
        for cmd, timing in zip(commands, timings, strict=True):
            timing.samples.append(_run_once(cmd))
    return timings


def secs(value: float) -> str:
    return f"{value:.3f} s"


def print_table(timings: Sequence[Timing]) -> None:
    width = max(len(t.label) for t in timings)
    print(f"  {'command':<{width}}  {'median':>9}  {'min':>9}  {'max':>9}  runs")
    for t in timings:
        print(
            f"  {t.label:<{width}}  {secs(t.median):>9}  {secs(t.best):>9}  "
            f"{secs(t.worst):>9}  {len(t.samples)}"
        )


def verdict(ratio: float, goal: float, op: str = "<=") -> str:
    return "OK" if meets(ratio, goal, op) else "MISSED"


def meets(ratio: float, goal: float, op: str = "<=") -> bool:
    if op not in ("<=", ">="):
        raise BenchError(f"goal operator {op!r}: expected '<=' or '>='")
    return ratio <= goal if op == "<=" else ratio >= goal


# -- load, rows and results --------------------------------------------------------------------
def load_text(load: Sequence[float]) -> str:
    return " ".join(f"{x:.2f}" for x in load)


def begin() -> tuple[float, float, float]:
    """Print and remember the load average before the measurements (1, 5, 15 minutes)."""
    global _load_before
    _load_before = os.getloadavg()
    print(f"load average before: {load_text(_load_before)} ({machine()['cores']} cores)")
    return _load_before


def row(
    metric: str,
    ratio: float,
    goal: float,
    op: str = "<=",
    *,
    value: float | None = None,
    baseline: float | None = None,
    unit: str = "s",
    note: str = "",
) -> dict[str, object]:
    """One goal's result: what is compared (`value` against `baseline`, in `unit`), the ratio,
    the goal and whether it is met."""
    out: dict[str, object] = {
        "metric": metric,
        "value": None if value is None else round(value, 6),
        "baseline": None if baseline is None else round(baseline, 6),
        "unit": unit,
        "ratio": round(ratio, 4),
        "goal": goal,
        "op": op,
        "ok": meets(ratio, goal, op),
    }
    if note:
        out["note"] = note
    return out


def ratio_row(
    metric: str, value: float, baseline: float, goal: float, op: str = "<=", **kw: Any
) -> dict[str, object]:
    """A row whose ratio is value / baseline (times: <= goals; throughputs: >= goals)."""
    if baseline <= 0:
        raise BenchError(f"{metric}: the baseline measured {baseline}, cannot make a ratio")
    return row(metric, value / baseline, goal, op, value=value, baseline=baseline, **kw)


def row_line(r: Mapping[str, Any]) -> str:
    """`metric: ratio 1.23 (goal <= 1.5)  OK`, the line run.sh's summary collects."""
    ok = "OK" if r["ok"] else "MISSED"
    return f"{r['metric']}: ratio {r['ratio']:.3g} (goal {r['op']} {r['goal']:g})  {ok}"


def record(name: str, rows: Sequence[Mapping[str, Any]], **data: Any) -> Path:
    """Print the load average after and the rows; write bench/results/<name>.json with them."""
    for r in rows:
        print(row_line(r))
    path = save_results(name, {"rows": list(rows), **data})
    print(f"load average after: {load_text(os.getloadavg())}; results: {path}")
    return path


def commit() -> str:
    """The commit measured (short hash, `+dirty` when the tree had changes), or "unknown"."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def command_line() -> str:
    """How this script was run: the BENCH_* settings and the script (for the docs)."""
    settings = [f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("BENCH_")]
    try:
        shown = str(SCRIPT.relative_to(ROOT))
    except ValueError:
        shown = str(SCRIPT)
    return " ".join([*settings, "python", shown, *sys.argv[1:]])


def ratio_line(ours: Timing, baseline: Timing, goal: float, floor: Timing | None = None) -> str:
    ratio = ours.median / baseline.median
    line = (
        f"{ours.label}: {secs(ours.median)}  {baseline.label}: {secs(baseline.median)}  "
        f"ratio {ratio:.2f} (goal <= {goal})"
    )
    if floor is not None:
        line += f"  floor {floor.label} {secs(floor.median)}"
    return f"{line}  {verdict(ratio, goal)}"


def versions(*dists: str) -> dict[str, str]:
    """Installed versions of the given distributions ("missing" when not installed)."""
    from importlib import metadata

    found = {}
    for dist in dists:
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "missing"
    return found


def versions_line(found: Mapping[str, str]) -> str:
    return "versions: " + ", ".join(f"{name} {version}" for name, version in found.items())


def machine() -> dict[str, object]:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 0
    return {
        "cores": cores,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "executable": sys.executable,
    }


def save_results(name: str, data: Mapping[str, object]) -> Path:
    """Write bench/results/<name>.json (tracked: docs/benchmarks.md is generated from it), with
    the machine, the commit, the command and the load average before and after."""
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    before = _load_before or LOAD_AT_IMPORT
    payload: dict[str, object] = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": commit(),
        "command": command_line(),
        "machine": machine(),
        "load_before": [round(x, 2) for x in before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        **data,
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)  # a reader (bench_docs.py) never sees half a file
    return path


def precompile_tether() -> None:
    """Write tether's .pyc files, as installing a wheel would.

    The package is installed editable, and with PYTHONDONTWRITEBYTECODE=1 (set on some machines
    and in CI) its modules would be compiled from source in every timed process, while the
    peers' site-packages were byte-compiled by pip at install time.
    """
    import compileall

    import tether

    compileall.compile_dir(Path(tether.__file__).parent, quiet=1)


def fail(exc: BaseException) -> int:
    print(f"bench: BROKEN: {exc}", file=sys.stderr)
    return 1
