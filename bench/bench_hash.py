"""Hashing a ~1 GiB tree of mixed file sizes: tether's `hash_data` against `b3sum` and DVC.

The tree (built once, kept under bench/results/, git-ignored): 2 x 256 MiB, 256 x 1 MiB and
16,384 x 16 KiB files (16,642 files, 1 GiB). With the page cache warm, each measurement reads
all of it:

- plain read: every file read in 1 MiB chunks by one thread, nothing computed (the floor);
- b3sum: the Debian `b3sum` over all files (it hashes one file at a time, each with all cores);
- dvc file_md5: `dvc_data.hashfile.hash.file_md5` on each file, as DVC hashes (only in the
  bench venv: `make bench` installs dvc there; the column is skipped when it is missing);
- tether cold: `hash_data(tree)` with an empty stat cache (every file read and hashed);
- tether warm: `hash_data(tree)` again with the cache filled (stat only, nothing read).

Goals (issue 3): tether cold >= 1.2 x b3sum throughput and >= 4 x DVC. A second tree of
100,000 x 16 KiB files measures re-hashing an unchanged tree: warm >= 20 x faster than cold.

    .venv-bench/bin/python bench/bench_hash.py      # or: make bench / bash bench/run.sh hash

Environment: BENCH_REPEAT (timed rounds, default 3; the median is reported), BENCH_HASH_DIR
(where the trees live, default bench/results), BENCH_HASH_REHASH_FILES (files of the second
tree, default 100000; 0 skips it).
"""

from __future__ import annotations

import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchlib import RESULTS_DIR, BenchError, fail, repeat_count, save_results, versions

GOAL_B3SUM = 1.2  # tether cold throughput / b3sum throughput, at least
GOAL_DVC = 4.0  # tether cold throughput / dvc throughput, at least
GOAL_REHASH = 20.0  # cold time / warm time on the unchanged 100k-file tree, at least
OLD = 1_600_000_000  # mtime given to the built files: far outside tether's racy window

MIXED = (("big", 2, 256 << 20), ("medium", 256, 1 << 20), ("small", 16384, 16 << 10))
SMALL_PER_DIR = 256


def _spec_text(spec: object) -> str:
    return repr(spec) + "\n"


def build_tree(root: Path, layout: tuple[tuple[str, int, int], ...], seed: int) -> list[Path]:
    """Write the tree once; later runs reuse it when its recorded layout matches."""
    marker = root.with_name(root.name + ".built")
    if marker.is_file() and marker.read_text() == _spec_text(layout) and root.is_dir():
        return list_files(root)
    if root.exists():
        shutil.rmtree(root)
    print(f"building {root} (once) ...", flush=True)
    rng = random.Random(seed)
    block = rng.randbytes(4 << 20)
    for kind, count, size in layout:
        for i in range(count):
            folder = (
                root / kind / f"{i // SMALL_PER_DIR:03d}" if count > SMALL_PER_DIR else root / kind
            )
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{kind}-{i:05d}.bin"
            with open(path, "wb") as fh:
                # Distinct content per file: a random prefix, then slices of a random block.
                fh.write(rng.randbytes(64))
                left = size - 64
                while left > 0:
                    start = rng.randrange(0, len(block) - min(left, 1 << 20))
                    piece = block[start : start + min(left, 1 << 20)]
                    fh.write(piece)
                    left -= len(piece)
            os.utime(path, (OLD, OLD))
    marker.write_text(_spec_text(layout))
    return list_files(root)


def list_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


# -- the contenders -----------------------------------------------------------------------------
def plain_read(files: list[Path]) -> None:
    buf = bytearray(1 << 20)
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        try:
            while os.readv(fd, [buf]):
                pass
        finally:
            os.close(fd)


def b3sum_runner(files: list[Path]) -> Callable[[], None] | None:
    exe = shutil.which("b3sum")
    if exe is None:
        return None
    # Many files per process, as `find -print0 | xargs -0 b3sum` would run it.
    chunks: list[list[str]] = [[]]
    length = 0
    for f in files:
        if length > 100_000:
            chunks.append([])
            length = 0
        chunks[-1].append(str(f))
        length += len(str(f)) + 1

    def run() -> None:
        for chunk in chunks:
            subprocess.run([exe, *chunk], check=True, stdout=subprocess.DEVNULL)

    return run


def dvc_runner(files: list[Path]) -> Callable[[], None] | None:
    try:
        from dvc_data.hashfile.hash import file_md5
    except ImportError:
        return None

    names = [str(f) for f in files]

    def run() -> None:
        for name in names:
            file_md5(name)

    return run


def tether_runner(root: Path, cache_db: Path | None) -> Callable[[], None]:
    from tether.capture.datahash import hash_data

    def run() -> None:
        if cache_db is None:  # cold: a fresh, empty cache each time
            with tempfile.TemporaryDirectory(prefix="tether-bench-cache-") as tmp:
                hash_data([root], cache=Path(tmp) / "hashes.db")
        else:
            hash_data([root], cache=cache_db)

    return run


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and its finished children so far."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def measure(
    contenders: dict[str, Callable[[], None]],
    repeat: int,
    cpu: dict[str, list[float]] | None = None,
) -> dict[str, list[float]]:
    """Wall times, round-robin (a, b, c, a, b, c, ...) so drifting load hits all alike.

    `cpu`, when given, gets the CPU seconds of each sample: on a busy machine, where the
    threads of one contender wait for a core, CPU time shows the work itself.
    """
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeat):
        for name, fn in contenders.items():
            c0 = cpu_seconds()
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
            if cpu is not None:
                cpu.setdefault(name, []).append(cpu_seconds() - c0)
    return samples


def verdict(ok: bool) -> str:
    return "OK" if ok else "MISSED"


def main() -> int:
    repeat = repeat_count(3)
    base = Path(os.environ.get("BENCH_HASH_DIR", RESULTS_DIR))
    rehash_files = int(os.environ.get("BENCH_HASH_REHASH_FILES", "100000"))
    base.mkdir(parents=True, exist_ok=True)
    tree = base / "hash-tree"
    files = build_tree(tree, MIXED, seed=3)
    total = sum(f.stat().st_size for f in files)
    plain_read(files)  # warm the page cache

    with tempfile.TemporaryDirectory(prefix="tether-bench-warm-") as tmp:
        warm_db = Path(tmp) / "hashes.db"
        tether_runner(tree, warm_db)()  # fill the cache for the warm runs
        contenders: dict[str, Callable[[], None]] = {
            "plain read (1 thread)": lambda: plain_read(files)
        }
        b3 = b3sum_runner(files)
        if b3 is None:
            print("b3sum not found (Debian: apt-get install b3sum); its column is skipped")
        else:
            contenders["b3sum"] = b3
        dvc = dvc_runner(files)
        if dvc is None:
            print("dvc_data not importable (it lives in .venv-bench); its column is skipped")
        else:
            contenders["dvc file_md5"] = dvc
        contenders["tether cold"] = tether_runner(tree, None)
        contenders["tether warm"] = tether_runner(tree, warm_db)
        cpu: dict[str, list[float]] = {}
        try:
            samples = measure(contenders, repeat, cpu)
        except (subprocess.CalledProcessError, OSError) as exc:
            return fail(BenchError(str(exc)))

    medians = {name: statistics.median(s) for name, s in samples.items()}
    cpu_medians = {name: statistics.median(s) for name, s in cpu.items()}
    print(f"hashing {len(files):,} files, {total / 2**30:.2f} GiB, median of {repeat} rounds:")
    width = max(len(n) for n in medians)
    print(f"  {'':<{width}}  {'wall':>9}  {'GB/s':>6}  {'cpu':>9}")
    for name, t in medians.items():
        print(f"  {name:<{width}}  {t:7.3f} s  {total / t / 1e9:6.2f}  {cpu_medians[name]:7.3f} s")
    results: dict[str, object] = {
        "files": len(files),
        "bytes": total,
        "timings": {
            name: {
                "median_s": round(medians[name], 4),
                "samples_s": [round(x, 4) for x in s],
                "cpu_median_s": round(cpu_medians[name], 4),
            }
            for name, s in samples.items()
        },
        "gb_per_s": {name: round(total / t / 1e9, 3) for name, t in medians.items()},
    }
    cold = medians["tether cold"]
    if "b3sum" in medians:
        ratio = medians["b3sum"] / cold
        print(
            f"tether cold vs b3sum: throughput ratio {ratio:.2f} (goal >= {GOAL_B3SUM})  "
            f"{verdict(ratio >= GOAL_B3SUM)}"
        )
        results["ratio_b3sum"] = round(ratio, 3)
    if "dvc file_md5" in medians:
        ratio = medians["dvc file_md5"] / cold
        print(
            f"tether cold vs dvc file_md5: throughput ratio {ratio:.2f} (goal >= {GOAL_DVC})  "
            f"{verdict(ratio >= GOAL_DVC)}"
        )
        results["ratio_dvc"] = round(ratio, 3)
    print(f"tether warm vs cold on this tree: {cold / medians['tether warm']:.1f} x faster")

    if rehash_files > 0:
        many = base / "hash-tree-many"
        many_files = build_tree(many, (("small", rehash_files, 16 << 10),), seed=5)
        plain_read(many_files)
        del many_files
        with tempfile.TemporaryDirectory(prefix="tether-bench-warm-") as tmp:
            warm_db = Path(tmp) / "hashes.db"
            tether_runner(many, warm_db)()
            rs = measure(
                {"cold": tether_runner(many, None), "warm": tether_runner(many, warm_db)}, repeat
            )
        rcold, rwarm = statistics.median(rs["cold"]), statistics.median(rs["warm"])
        ratio = rcold / rwarm
        print(
            f"re-hash of an unchanged tree of {rehash_files:,} x 16 KiB files: "
            f"cold {rcold:.3f} s, warm {rwarm:.3f} s ({rwarm / rehash_files * 1e6:.1f} us/file)"
        )
        print(
            f"tether warm vs cold ({rehash_files:,} files): speed-up ratio {ratio:.1f} "
            f"(goal >= {GOAL_REHASH})  {verdict(ratio >= GOAL_REHASH)}"
        )
        results["rehash"] = {
            "files": rehash_files,
            "cold_median_s": round(rcold, 4),
            "warm_median_s": round(rwarm, 4),
            "cold_samples_s": [round(x, 4) for x in rs["cold"]],
            "warm_samples_s": [round(x, 4) for x in rs["warm"]],
            "ratio": round(ratio, 2),
        }
    found = versions("tether", "blake3", "dvc-data")
    exe = shutil.which("b3sum")
    found["b3sum"] = (
        subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()
        if exe
        else "missing"
    )
    print("versions: " + ", ".join(f"{k} {v}" for k, v in found.items()))
    results["versions"] = found
    save_results("hash", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
