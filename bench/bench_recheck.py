"""Re-checking an unchanged tree: tether's warm `hash_data` against `git status --porcelain`.

For each size (default 1,000, 10,000 and 100,000 files of 1 KiB, 256 to a folder) the tree is
built once under BENCH_HASH_DIR (default bench/results, git-ignored), added and committed in a
git repository of its own, and the stat cache is filled. Then, interleaved:

- git status: `git status --porcelain` in that repository (it lstat()s every tracked file and
  lists every folder for untracked ones: the same system calls as tether's re-check);
- tether re-check: `hash_data(tree)` in this process with the filled cache (nothing is read).

tether is timed in-process (no interpreter start), git as a process (its start is ~1 ms, noise
at 100k files). Goal (issue 19): tether <= 2 x git at 100,000 files; the per-file cost at each
size shows how both grow.

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

from benchlib import RESULTS_DIR, fail, repeat_count, save_results, versions

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
    load_before = os.getloadavg()
    print(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}")
    rows: list[dict[str, object]] = []
    try:
        for n in sizes:
            root = base / f"recheck-{n}"
            build(root, n)
            with tempfile.TemporaryDirectory(prefix="tether-bench-recheck-") as tmp:
                db = Path(tmp) / "hashes.db"
                data = root / "data"  # the repository's work tree, without .git
                hash_data([data], cache=db)  # fill the cache
                git_status(root)  # warm git's index and the page cache
                tether_s: list[float] = []
                git_s: list[float] = []
                for _ in range(repeat):
                    git_s.append(git_status(root))
                    st = HashStats()
                    start = time.perf_counter()
                    hash_data([data], cache=db, stats=st)
                    tether_s.append(time.perf_counter() - start)
                    if st.files_read:
                        raise RuntimeError(f"re-check read {st.files_read} files")
            t, g = statistics.median(tether_s), statistics.median(git_s)
            rows.append(
                {
                    "files": n,
                    "tether_median_s": round(t, 5),
                    "git_median_s": round(g, 5),
                    "tether_us_per_file": round(t / n * 1e6, 2),
                    "git_us_per_file": round(g / n * 1e6, 2),
                    "ratio": round(t / g, 3),
                    "tether_samples_s": [round(x, 5) for x in tether_s],
                    "git_samples_s": [round(x, 5) for x in git_s],
                }
            )
    except (subprocess.CalledProcessError, OSError, RuntimeError) as exc:
        return fail(exc)
    load_after = os.getloadavg()
    print(f"re-check of an unchanged tree, median of {repeat} interleaved rounds:")
    print(f"  {'files':>8}  {'tether':>9}  {'git status':>10}  {'us/file':>14}  ratio")
    for r in rows:
        print(
            f"  {r['files']:>8,}  {r['tether_median_s']:7.4f} s  {r['git_median_s']:8.4f} s  "
            f"{r['tether_us_per_file']:>6} / {r['git_us_per_file']:<6}  {r['ratio']:.2f}"
        )
    last = rows[-1]
    ok = float(last["ratio"]) <= GOAL  # type: ignore[arg-type]
    print(
        f"tether re-check vs git status ({last['files']:,} files): ratio {last['ratio']:.2f} "
        f"(goal <= {GOAL})  {'OK' if ok else 'MISSED'}"
    )
    print(f"load average after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    git_version = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout
    found = {**versions("tether", "blake3"), "git": git_version.strip()}
    print("versions: " + ", ".join(f"{k} {v}" for k, v in found.items()))
    save_results(
        "recheck",
        {"sizes": rows, "load_before": load_before, "load_after": load_after, "versions": found},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
