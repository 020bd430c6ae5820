"""Source snapshot of a 10k-file repository against `git stash create`.

Both build a commit of the working tree without touching the user's branch or index; the
snapshot also takes untracked files and applies include/exclude patterns. Reported: median
wall time of each (interleaved: snapshot, stash, snapshot, stash, ...) and the ratio. No issue
sets a goal; the one checked here, <= 1.5x, says the snapshot costs about what git's own nearest
command costs.

    .venv-bench/bin/python bench/bench_snapshot.py     (or `make bench`)

Environment: BENCH_SNAPSHOT_FILES (default 10,000), BENCH_REPEAT (default 7).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from benchlib import Timing, begin, print_table, ratio_row, record

from tether.capture.source import snapshot_repo

GOAL = 1.5

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


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    begin()
    # ignore_cleanup_errors: git may still be packing the repository (gc --auto) as it goes.
    with tempfile.TemporaryDirectory(prefix="bench-snapshot-", ignore_cleanup_errors=True) as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        build(repo)
        counter = iter(range(10**6))
        snap = Timing("tether snapshot", [])
        stash = Timing("git stash create", ["git", "stash", "create"])
        for _ in range(REPEAT):  # interleaved, so load drift hits both alike
            snap.samples.append(timed(lambda: snapshot_repo(repo, f"bench-{next(counter)}")))
            stash.samples.append(timed(lambda: git(repo, "stash", "create")))
    print(f"snapshot of a {FILES}-file repo (10 edits + 1 new file), median of {REPEAT}:")
    print_table([snap, stash])
    record(
        "snapshot",
        [ratio_row("tether snapshot / git stash create", snap.median, stash.median, GOAL)],
        files=FILES,
        timings=[snap.as_dict(), stash.as_dict()],
    )


if __name__ == "__main__":
    main()
