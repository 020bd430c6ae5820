"""Source snapshots: commit the working tree as it is into refs/tether/snapshots/<run-id>.

A temporary index (GIT_INDEX_FILE) and `git commit-tree` leave the user's index, branch, stash
and working tree untouched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..lock import SourceRecord

REF_PREFIX = "refs/tether/snapshots/"


class GitError(RuntimeError):
    pass


def _git(
    repo: Path, *args: str, env: dict[str, str] | None = None, input: str | None = None
) -> str:
    proc = subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        env=env,
        input=input,
        check=False,
    )
    if proc.returncode != 0:
        raise GitError(f"git {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def git_top(path: Path) -> Path | None:
    if shutil.which("git") is None:
        return None
    try:
        return Path(_git(path, "rev-parse", "--show-toplevel"))
    except GitError:
        return None


def snapshot_repo(repo: Path, run_id: str, project_root: Path | None = None) -> SourceRecord:
    """Commit the working tree of `repo` (tracked changes and untracked, not ignored, files)."""
    top = git_top(repo)
    if top is None:
        raise GitError(f"{repo} is not inside a git repository")
    git_dir = Path(_git(top, "rev-parse", "--absolute-git-dir"))
    try:
        head: str | None = _git(top, "rev-parse", "--verify", "-q", "HEAD")
    except GitError:
        head = None  # a repository with no commits yet
    branch: str | None
    try:
        branch = _git(top, "symbolic-ref", "--short", "-q", "HEAD") or None
    except GitError:
        branch = None  # detached HEAD
    with tempfile.TemporaryDirectory(prefix="tether-index-") as tmp:
        index = Path(tmp) / "index"
        if (git_dir / "index").exists():
            shutil.copyfile(git_dir / "index", index)
        env = dict(os.environ, GIT_INDEX_FILE=str(index))
        _git(top, "add", "-A", env=env)
        tree = _git(top, "write-tree", env=env)
    ident = {
        "GIT_AUTHOR_NAME": "tether",
        "GIT_AUTHOR_EMAIL": "tether@localhost",
        "GIT_COMMITTER_NAME": "tether",
        "GIT_COMMITTER_EMAIL": "tether@localhost",
    }
    parents = ["-p", head] if head else []
    commit = _git(
        top,
        "commit-tree",
        tree,
        *parents,
        "-m",
        f"tether snapshot of run {run_id}",
        env=dict(os.environ, **ident),
    )
    _git(top, "update-ref", REF_PREFIX + run_id, commit)
    dirty = head is None or _git(top, "rev-parse", f"{head}^{{tree}}") != tree
    base = project_root or top
    try:
        rel = os.path.relpath(top, base)
    except ValueError:
        rel = str(top)
    return SourceRecord(path=rel, commit=commit, head=head, branch=branch, dirty=dirty)
