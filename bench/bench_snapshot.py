"""Source snapshot of a 10k-file repository against `git stash create`.

Both build a commit of the working tree without touching the user's branch or index; the
snapshot also takes untracked files and applies include/exclude patterns. Reported: median
wall time of each and the ratio (no goal is set by the issue: report and compare).

    .venv-bench/bin/python bench/bench_snapshot.py     (or `make bench`)
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tether.capture.source import snapshot_repo

FILES = int(os.environ.get("BENCH_SNAPSHOT_FILES", 10_000))
REPEAT = int(os.environ.get("BENCH_REPEAT", 7))
ENV = dict(
    os.environ,
    GIT_AUTHOR_NAME="b",
    GIT_AUTHOR_EMAIL="b@b",
    GIT_COMMITTER_NAME="b",
    GIT_COMMITTER_EMAIL="b@b",
)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, env=ENV, check=True, capture_output=True, text=True
    ).stdout


def build(repo: Path) -> None:
    git(repo, "init", "-q", "-b", "main")
    for i in range(FILES):
        folder = repo / f"pkg{i // 200:03d}"
        folder.mkdir(exist_ok=True)
        (folder / f"mod{i:05d}.py").write_text(f"VALUE = {i}\n" * 20)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "init")
    # A realistic dirty tree: a few edits and a new file.
    for i in range(0, FILES, FILES // 10):
        (repo / f"pkg{i // 200:03d}" / f"mod{i:05d}.py").write_text("changed\n")
    (repo / "new.py").write_text("new\n")


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-snapshot-") as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        build(repo)
        counter = iter(range(10**6))
        snap = median_time(lambda: snapshot_repo(repo, f"bench-{next(counter)}"), REPEAT)
        stash = median_time(lambda: git(repo, "stash", "create"), REPEAT)
    print(f"snapshot of a {FILES}-file repo (10 edits + 1 new file), median of {REPEAT}:")
    print(f"  tether snapshot    {snap * 1000:7.1f} ms")
    print(f"  git stash create   {stash * 1000:7.1f} ms   (baseline; skips untracked files)")
    print(f"  ratio tether/stash {snap / stash:.2f}")


if __name__ == "__main__":
    main()
