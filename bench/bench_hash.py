"""Hashing a ~1 GiB tree of mixed file sizes: tether's `hash_data` against `b3sum` and DVC.

The tree (built once, kept under bench/results/, git-ignored): 2 x 256 MiB, 256 x 1 MiB and
16,384 x 16 KiB files (16,642 files, 1 GiB). With the page cache warm, each measurement reads
all of it, interleaved round by round (a, b, c, a, b, c, ...):

- plain read: every file read in 1 MiB chunks by one thread, nothing computed (the floor);
- read+hash loop: `os.walk`, then each file read whole and hashed by one thread, what a
  one-line Python hasher does;
- b3sum: the Debian `b3sum` over all files (it hashes one file at a time, each with all cores);
- dvc file_md5: `dvc_data.hashfile.hash.file_md5` on each file, as DVC hashes (only where
  dvc-data is importable: `make bench` installs dvc in the bench venv; else skipped);
- tether cold: `hash_data(tree)` with an empty stat cache (every file read and hashed), with
  the default threads and with `threads=1`;
- tether warm: `hash_data(tree)` again with the cache filled (stat only, nothing read).

Goals (issue 19): tether cold >= 1.5 x b3sum throughput and >= 4 x DVC. A second tree of
100,000 x 1 KiB files: tether cold at least as fast as the one-thread read+hash loop (ratio of
times <= 1), and warm >= 20 x faster than cold. The CPU seconds of each contender are printed
and recorded too: on a busy machine they show the work itself (where no core is free, a
throughput ratio is the CPU ratio, whatever the threads). The load average is printed before
and after; bench/results/hash.json holds the rows (benchlib.record) and every timing.

    .venv-bench/bin/python bench/bench_hash.py      # or: make bench / bash bench/run.sh hash

Environment: BENCH_REPEAT (timed rounds, default 5; the median is reported), BENCH_HASH_DIR
(where the trees live, default bench/results), BENCH_HASH_SCALE (divides every file count
of the mixed tree, for quick runs: 4 gives 256 MiB), BENCH_HASH_REHASH_FILES (files of the
second tree, default 100000; 0 skips it).
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

GOAL_B3SUM = 1.5  # tether cold throughput / b3sum throughput, at least
GOAL_DVC = 4.0  # tether cold throughput / dvc throughput, at least
GOAL_REHASH = 20.0  # cold time / warm time on the unchanged 100k-file tree, at least
GOAL_LOOP = 1.0  # tether cold time / one-thread read+hash loop time on 100k x 1 KiB, at most
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


def hash_loop(root: Path) -> None:
    """The one-thread Python hasher: walk, read each file whole, blake3 it."""
    from blake3 import blake3

    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            with open(os.path.join(dirpath, name), "rb") as fh:
                blake3(fh.read()).digest()


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


def tether_runner(
    root: Path, cache_db: Path | None, threads: int | None = None
) -> Callable[[], None]:
    from tether.capture.datahash import hash_data

    def run() -> None:
        if cache_db is None:  # cold: a fresh, empty cache each time
            with tempfile.TemporaryDirectory(prefix="tether-bench-cache-") as tmp:
                hash_data([root], cache=Path(tmp) / "hashes.db", threads=threads)
        else:
            hash_data([root], cache=cache_db, threads=threads)

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


def mixed_tree(base: Path, scale: int, repeat: int) -> tuple[list[dict[str, object]], dict]:
    """The mixed tree: every contender, interleaved; (rows, results)."""
    layout = tuple((k, max(1, n // scale), size) for k, n, size in MIXED)
    tree = base / ("hash-tree" if scale == 1 else f"hash-tree-{scale}")
    files = build_tree(tree, layout, seed=3)
    total = sum(f.stat().st_size for f in files)
    plain_read(files)  # warm the page cache
    with tempfile.TemporaryDirectory(prefix="tether-bench-warm-") as tmp:
        warm_db = Path(tmp) / "hashes.db"
        tether_runner(tree, warm_db)()  # fill the cache for the warm runs
        contenders: dict[str, Callable[[], None]] = {
            "plain read (1 thread)": lambda: plain_read(files),
            "read+hash loop (1 thread)": lambda: hash_loop(tree),
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
        contenders["tether cold threads=1"] = tether_runner(tree, None, threads=1)
        contenders["tether warm"] = tether_runner(tree, warm_db)
        cpu: dict[str, list[float]] = {}
        samples = measure(contenders, repeat, cpu)
    medians = {name: statistics.median(s) for name, s in samples.items()}
    cpu_medians = {name: statistics.median(s) for name, s in cpu.items()}
    print(f"hashing {len(files):,} files, {total / 2**30:.2f} GiB, median of {repeat} rounds:")
    width = max(len(n) for n in medians)
    print(f"  {'':<{width}}  {'wall':>9}  {'GB/s':>6}  {'cpu':>9}")
    for name, t in medians.items():
        print(f"  {name:<{width}}  {t:7.3f} s  {total / t / 1e9:6.2f}  {cpu_medians[name]:7.3f} s")
    gbps = {name: total / t / 1e9 for name, t in medians.items()}
    rows: list[dict[str, object]] = []
    for peer, goal in (("b3sum", GOAL_B3SUM), ("dvc file_md5", GOAL_DVC)):
        if peer in medians:
            rows.append(
                ratio_row(
                    f"mixed tree ({total / 2**30:.2g} GiB), cold: tether / {peer} throughput",
                    gbps["tether cold"],
                    gbps[peer],
                    goal,
                    ">=",
                    unit="GB/s",
                    note=f"CPU {cpu_medians['tether cold']:.3f} s against "
                    f"{cpu_medians[peer]:.3f} s",
                )
            )
    print(
        f"tether warm vs cold on this tree: {medians['tether cold'] / medians['tether warm']:.1f} x"
    )
    results = {
        "files": len(files),
        "bytes": total,
        "timings": [Timing(n, [], samples[n], cpu[n]).as_dict() for n in samples],
        "cpu_s": {n: round(v, 4) for n, v in cpu_medians.items()},
        "gb_per_s": {n: round(v, 3) for n, v in gbps.items()},
    }
    return rows, results


def small_files(base: Path, n: int, repeat: int) -> tuple[list[dict[str, object]], dict]:
    """The tree of `n` x 1 KiB files: tether cold against the one-thread loop, and warm."""
    many = base / "hash-tree-many"
    many_files = build_tree(many, (("small", n, 1 << 10),), seed=5)
    plain_read(many_files)
    del many_files
    with tempfile.TemporaryDirectory(prefix="tether-bench-warm-") as tmp:
        warm_db = Path(tmp) / "hashes.db"
        tether_runner(many, warm_db)()
        rcpu: dict[str, list[float]] = {}
        rs = measure(
            {
                "loop": lambda: hash_loop(many),
                "cold": tether_runner(many, None),
                "cold threads=1": tether_runner(many, None, threads=1),
                "warm": tether_runner(many, warm_db),
            },
            repeat,
            rcpu,
        )
    rmed = {k: statistics.median(v) for k, v in rs.items()}
    cpu_med = {k: statistics.median(v) for k, v in rcpu.items()}
    print(f"{n:,} x 1 KiB files, median of {repeat} rounds:")
    for name, t in rmed.items():
        per_file = t / n * 1e6
        print(f"  {name:<15} {t:7.3f} s  cpu {cpu_med[name]:7.3f} s  {per_file:6.2f} us/file")
    rows = [
        ratio_row(
            f"{n:,} x 1 KiB files, cold: tether / one-thread read+hash loop",
            rmed["cold"],
            rmed["loop"],
            GOAL_LOOP,
            note=f"CPU {cpu_med['cold']:.3f} s against {cpu_med['loop']:.3f} s",
        ),
        ratio_row(
            f"{n:,} x 1 KiB files: warm speed-up over cold",
            rmed["cold"],
            rmed["warm"],
            GOAL_REHASH,
            ">=",
        ),
    ]
    results = {
        "small_files": {
            "files": n,
            "timings": [Timing(k, [], rs[k], rcpu[k]).as_dict() for k in rs],
        },
        "small_files_s": {k: round(v, 4) for k, v in rmed.items()},
        "small_files_cpu_s": {k: round(v, 4) for k, v in cpu_med.items()},
    }
    return rows, results


def main() -> int:
    repeat = repeat_count(5)
    base = Path(os.environ.get("BENCH_HASH_DIR", RESULTS_DIR))
    rehash_files = int(os.environ.get("BENCH_HASH_REHASH_FILES", "100000"))
    scale = max(1, int(os.environ.get("BENCH_HASH_SCALE", "1")))
    base.mkdir(parents=True, exist_ok=True)
    begin()
    try:
        rows, results = mixed_tree(base, scale, repeat)
        if rehash_files > 0:
            more, small = small_files(base, rehash_files, repeat)
            rows += more
            results.update(small)
    except (subprocess.CalledProcessError, OSError) as exc:
        return fail(BenchError(str(exc)))
    found = versions("tether", "blake3", "dvc-data")
    exe = shutil.which("b3sum")
    found["b3sum"] = (
        subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()
        if exe
        else "missing"
    )
    print(versions_line(found))
    record("hash", rows, versions=found, **results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
