"""Re-checking an unchanged tree: tether's warm `hash_data` against `git status --porcelain`.

For each size (default 1,000, 10,000 and 100,000 files of 1 KiB, 256 to a folder) the tree is
built once under BENCH_HASH_DIR (default bench/results, git-ignored), added and committed in a
git repository of its own, and the stat cache is filled. Then, interleaved:

- git status: `git status --porcelain` in that repository (it lstat()s every tracked file and
  lists every folder for untracked ones: the same system calls as tether's re-check);
- tether re-check: `hash_data(tree)` in this process with the filled cache (nothing is read).

tether is timed in-process (no interpreter start), git as a process (its start is ~1 ms, noise
at 100k files). Goal (issue 19): tether <= 2 x git at 100,000 files; the per-file cost at each
size shows how both grow (bench/results/recheck.json: the goal row, every timing, the ratio
and the microseconds a file at each size, tether's CPU seconds; the load before and after).

    .venv-bench/bin/python bench/bench_recheck.py      # or: bash bench/run.sh recheck

Environment: BENCH_REPEAT (default 7), BENCH_RECHECK_SIZES (comma-separated, default
1000,10000,100000).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import (
    RESULTS_DIR,
    BenchError,
    Timing,
    begin,
    fail,
    ratio_row,
    record,
    repeat_count,
    versions,
    versions_line,
)

GOAL = 2.0  # tether re-check time / git status time at the largest size, at most
OLD = 1_600_000_000
PER_DIR = 256


def build(root: Path, n: int) -> None:
    marker = root.with_name(root.name + ".built")
    if marker.is_file() and marker.read_text() == f"{n}\n" and (root / "data").is_dir():
        return
    if root.exists():
        shutil.rmtree(root)
    print(f"building {root} ({n:,} files, once) ...", flush=True)
    for i in range(n):
        folder = root / "data" / f"d{i // PER_DIR:04d}"
        if i % PER_DIR == 0:
            folder.mkdir(parents=True)
        path = folder / f"f{i:06d}.bin"
        path.write_bytes(i.to_bytes(8, "little") * 128)
        os.utime(path, (OLD, OLD))
    who = {"NAME": "bench", "EMAIL": "bench@example.invalid"}
    env = {
        **os.environ,
        **{f"GIT_{r}_{k}": v for r in ("AUTHOR", "COMMITTER") for k, v in who.items()},
    }
    for argv in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "tree"]):
        subprocess.run(argv, cwd=root, check=True, env=env, stdout=subprocess.DEVNULL)
    marker.write_text(f"{n}\n")


def git_status(root: Path) -> float:
    start = time.perf_counter()
    out = subprocess.run(
        ["git", "status", "--porcelain"], cwd=root, check=True, capture_output=True
    ).stdout
    elapsed = time.perf_counter() - start
    if out.strip():
        raise RuntimeError(f"{root}: git status is not clean: {out[:200]!r}")
    return elapsed


def main() -> int:
    from tether.capture.datahash import HashStats, hash_data

    repeat = repeat_count(7)
    sizes = [int(x) for x in os.environ.get("BENCH_RECHECK_SIZES", "1000,10000,100000").split(",")]
    base = Path(os.environ.get("BENCH_HASH_DIR", RESULTS_DIR))
    base.mkdir(parents=True, exist_ok=True)
    begin()
    sized: list[dict[str, object]] = []
    timings: list[dict[str, object]] = []
    try:
        for n in sizes:
            root = base / f"recheck-{n}"
            build(root, n)
            with tempfile.TemporaryDirectory(prefix="tether-bench-recheck-") as tmp:
                db = Path(tmp) / "hashes.db"
                data = root / "data"  # the repository's work tree, without .git
                hash_data([data], cache=db)  # fill the cache
                git_status(root)  # warm git's index and the page cache
                hash_data([data], cache=db)
                tether = Timing(f"tether re-check, {n:,} files", ["hash_data", str(data)])
                git = Timing(f"git status --porcelain, {n:,} files", ["git", "status"])
                cpu_s: list[float] = []
                for _ in range(repeat):  # interleaved: git, tether, git, tether, ...
                    git.samples.append(git_status(root))
                    st = HashStats()
                    c0 = time.process_time()
                    start = time.perf_counter()
                    hash_data([data], cache=db, stats=st)
                    tether.samples.append(time.perf_counter() - start)
                    cpu_s.append(time.process_time() - c0)
                    if st.files_read:
                        raise BenchError(f"re-check read {st.files_read} files")
            timings += [tether.as_dict(), git.as_dict()]
            t, g = tether.median, git.median
            sized.append(
                {
                    "files": n,
                    "tether_median_s": round(t, 5),
                    "tether_cpu_median_s": round(statistics.median(cpu_s), 5),
                    "git_median_s": round(g, 5),
                    "tether_us_per_file": round(t / n * 1e6, 2),
                    "git_us_per_file": round(g / n * 1e6, 2),
                    "ratio": round(t / g, 3),
                }
            )
    except (subprocess.CalledProcessError, OSError, RuntimeError) as exc:
        return fail(exc)
    print(f"re-check of an unchanged tree, median of {repeat} interleaved rounds:")
    print(f"  {'files':>8}  {'tether':>9}  {'cpu':>9}  {'git status':>10}  {'us/file':>14}  ratio")
    for r in sized:
        print(
            f"  {r['files']:>8,}  {r['tether_median_s']:7.4f} s  {r['tether_cpu_median_s']:7.4f} s"
            f"  {r['git_median_s']:8.4f} s  {r['tether_us_per_file']:>6} / "
            f"{r['git_us_per_file']:<6}  {r['ratio']:.2f}"
        )
    last = sized[-1]
    rows = [
        ratio_row(
            f"re-check of {last['files']:,} unchanged files / git status --porcelain",
            float(last["tether_median_s"]),  # type: ignore[arg-type]
            float(last["git_median_s"]),  # type: ignore[arg-type]
            GOAL,
            note=f"tether CPU {last['tether_cpu_median_s']} s",
        )
    ]
    git_version = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout
    found = {**versions("tether", "blake3"), "git": git_version.strip()}
    print(versions_line(found))
    record(
        "recheck",
        rows,
        sizes=sized,
        timings=timings,
        ratio_by_files={f"{r['files']:,}": r["ratio"] for r in sized},
        us_per_file_tether={f"{r['files']:,}": r["tether_us_per_file"] for r in sized},
        us_per_file_git={f"{r['files']:,}": r["git_us_per_file"] for r in sized},
        versions=found,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
