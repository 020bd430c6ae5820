"""Snapshot commits carried as git bundles (through tether.git, the one git runner).

A push makes one bundle per repository and push, thin: it holds the snapshot commits of the
runs pushed now, less everything reachable from the commits the remote's earlier bundles
already carry (`git bundle create B <refs> ^<commit>...`), so a thousand runs of one
repository do not carry its history a thousand times. The remote's commits are known from its
entries (each snapshot names its bundle), which makes them the remote's index of bundled
commits. A bundle's prerequisites are always in bundles pushed before it, so a pull unbundles
the bundles it needs oldest first (bundle names sort by time) and then points
`refs/tether/snapshots/<run>` at each run's commit.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .. import git
from ..errors import TetherError
from ..git import SNAPSHOT_REF
from ..lock import RunLock

HINT = "install git to carry snapshot commits"


@dataclass
class RunCommit:
    run: str
    commit: str
    repo: Path
    source: str


@dataclass
class Made:
    path: Path  # the bundle file (in a scratch folder)
    commits: list[str] = field(default_factory=list)


def run_commits(run_id: str, lock: RunLock) -> list[RunCommit]:
    """The snapshot commits of a run that its repository still holds under its snapshot ref
    (top-level sources only: submodule snapshots stay in their own repositories)."""
    out: list[RunCommit] = []
    for src in lock.sources:
        if not src.commit or not src.root or src.superproject is not None:
            continue
        root = Path(src.root)
        if not root.is_dir():
            continue
        proc = git.run(
            root, "rev-parse", "--verify", "-q", SNAPSHOT_REF + run_id, check=False, hint=HINT
        )
        if proc.returncode == 0 and proc.stdout.strip():
            out.append(RunCommit(run_id, proc.stdout.strip(), root, src.path))
    return out


def present(repo: Path, commits: Iterable[str]) -> set[str]:
    """The commits of `commits` that `repo` holds."""
    wanted = sorted(set(commits))
    if not wanted:
        return set()
    proc = git.run(
        repo,
        "cat-file",
        "--batch-check",
        input="".join(c + "\n" for c in wanted),
        check=False,
        hint=HINT,
    )
    have = set()
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1] == "commit":
            have.add(parts[0])
    return have


def make_bundle(repo: Path, refs: list[str], exclude: Iterable[str], out: Path) -> bool:
    """Write a thin bundle of `refs` less what `exclude` reaches; False when it would be empty
    (every commit is on the remote already)."""
    negated = present(repo, exclude)
    revs = "".join(r + "\n" for r in refs) + "".join(f"^{c}\n" for c in sorted(negated))
    proc = git.run(
        repo,
        "bundle",
        "create",
        "-q",
        os.fspath(out),
        "--stdin",
        input=revs,
        check=False,
        hint=HINT,
    )
    if proc.returncode != 0:
        if "empty bundle" in proc.stderr:
            return False
        raise TetherError(f"git bundle create in {repo} failed: {proc.stderr.strip()}")
    return True


def unbundle(repo: Path, bundle: Path) -> None:
    """Store the objects of `bundle` in `repo` (no ref is made or moved)."""
    git.run(repo, "bundle", "unbundle", os.fspath(bundle), hint=HINT)


def prerequisites(bundle: Path) -> list[str]:
    """The commits a bundle needs in the repository before it can be unbundled."""
    out: list[str] = []
    with open(bundle, "rb") as fh:
        first = fh.readline()
        if not first.startswith(b"# v"):
            raise TetherError(f"{bundle} is not a git bundle")
        for raw in fh:
            line = raw.rstrip(b"\n")
            if not line:
                break
            if line.startswith(b"@"):
                continue  # v3 capabilities
            if line.startswith(b"-"):
                out.append(line[1:].split(b" ", 1)[0].decode())
    return out


def set_ref(repo: Path, run_id: str, commit: str) -> bool:
    """Point refs/tether/snapshots/<run> at `commit`; False when the ref exists already
    (left as it is)."""
    ref = SNAPSHOT_REF + run_id
    proc = git.run(repo, "update-ref", ref, commit, "0" * 40, check=False, hint=HINT)
    return proc.returncode == 0


def has_ref(repo: Path, run_id: str) -> str | None:
    proc = git.run(
        repo, "rev-parse", "--verify", "-q", SNAPSHOT_REF + run_id, check=False, hint=HINT
    )
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def local_repo(start: Path | None = None) -> Path | None:
    """The repository pulled snapshots go into: the git top around the project (or here)."""
    from ..workspace import find_project_file  # noqa: PLC0415 (only for a pull)

    project = find_project_file(start)
    top = git.find_top(project.parent if project else start)
    if top is None or not git.available():
        return None
    return git.main_worktree(top) or top
