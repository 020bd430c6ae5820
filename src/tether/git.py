"""The one way tether runs git, and finds the repository around a folder.

Every git process goes through `run`: always `-C <repo>` (when a repo is named), never a pager,
file names unquoted, output decoded as UTF-8 with surrogate escapes (so a file name read from
git writes back to git unchanged), and an environment without the variables that would point
git at another repository, index or diff program (set when tether runs inside a git hook or
`git rebase -x`). A missing git is a `GitError` with a hint the caller chooses.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import TetherError

if TYPE_CHECKING:
    import subprocess

# Where each run's source snapshot commit is kept from git gc: SNAPSHOT_REF + <run-id>.
SNAPSHOT_REF = "refs/tether/snapshots/"
# Inherited from a git hook or a parent git command, these would redirect what `-C` names.
SCRUBBED_ENV = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_EXTERNAL_DIFF")
INSTALL_HINT = "install git"


class GitError(TetherError):
    """git is missing, or a git command failed."""


def executable() -> str | None:
    """Where the git program is (None: not installed)."""
    # shutil costs 5-30 ms of start-up (it loads the compression modules): only when asked
    import shutil  # noqa: PLC0415

    return shutil.which("git")


def available() -> bool:
    return executable() is not None


def git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without SCRUBBED_ENV, plus `extra` (e.g. GIT_INDEX_FILE)."""
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    if extra:
        env.update(extra)
    return env


def run(
    repo: str | os.PathLike[str] | None,
    *args: str,
    env: Mapping[str, str] | None = None,
    input: str | bytes | None = None,
    check: bool = True,
    text: bool = True,
    errors: str = "surrogateescape",
    timeout: float | None = None,
    hint: str | None = None,
) -> subprocess.CompletedProcess[Any]:
    """Run `git -C repo args...`, output captured. `env`: variables added to the environment;
    `check`: a non-zero exit raises GitError with git's message; `text=False`: bytes;
    `errors`: how undecodable output is decoded ("replace" for text shown to people);
    `hint`: the advice given when git is not installed."""
    # subprocess costs ~10 ms of start-up: paid only by the commands that run git
    import subprocess  # noqa: PLC0415

    argv = ["git", "--no-pager", "-c", "core.quotepath=off"]
    if repo is not None:
        argv += ["-C", os.fspath(repo)]
    argv += args
    options: dict[str, Any] = {"encoding": "utf-8", "errors": errors} if text else {}
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            env=git_env(env),
            input=input,
            timeout=timeout,
            check=False,
            **options,
        )
    except FileNotFoundError:
        raise GitError("git is not installed", hint or INSTALL_HINT) from None
    except subprocess.TimeoutExpired:
        raise GitError(f"git {_what(args)} timed out after {timeout:g}s") from None
    except OSError as exc:
        raise GitError(f"cannot run git: {exc.strerror or exc}") from None
    if check and proc.returncode != 0:
        stderr = proc.stderr if text else proc.stderr.decode("utf-8", "replace")
        where = f" in {os.fspath(repo)}" if repo is not None else ""
        raise GitError(f"git {_what(args)}{where} failed: {stderr.strip()}")
    return proc


def output(repo: str | os.PathLike[str] | None, *args: str, **options: Any) -> str:
    """The standard output of a git command that must succeed."""
    out: str = run(repo, *args, check=True, **options).stdout
    return out


def _what(args: tuple[str, ...]) -> str:
    return " ".join(args[:2])


def find_top(start: Path | None = None) -> Path | None:
    """The nearest folder at or above `start` holding `.git`, stopping at a folder listed in
    GIT_CEILING_DIRECTORIES (after looking in it). A walk: cheaper than a git process."""
    here = (start or Path.cwd()).resolve()
    ceilings = [Path(p) for p in os.environ.get("GIT_CEILING_DIRECTORIES", "").split(":") if p]
    for folder in (here, *here.parents):
        if (folder / ".git").exists():
            return folder
        if folder in ceilings:
            return None
    return None


def in_git(path: Path) -> bool:
    """git is installed and `path` is inside a work tree (found by `find_top`)."""
    return available() and find_top(path) is not None


def toplevel(path: Path) -> Path | None:
    """git's own answer for the top of the work tree around `path` (None outside one)."""
    if not available():
        return None
    try:
        out = output(path if path.is_dir() else path.parent, "rev-parse", "--show-toplevel")
    except GitError:
        return None
    return Path(out.strip())


def main_worktree(top: Path) -> Path | None:
    """For the top of a linked worktree (`git worktree add`), the top of the main worktree;
    None for a main worktree, a submodule, or a worktree of a bare repository (no main one).

    A main worktree has a `.git` folder, so only a `.git` file costs a git process: a linked
    worktree's common dir (`--git-common-dir`, the main `.git`) differs from its own git dir,
    a submodule's does not."""
    if not (top / ".git").is_file() or not available():
        return None
    try:
        out = output(top, "rev-parse", "--git-dir", "--git-common-dir")
    except GitError:
        return None
    lines = out.splitlines()
    if len(lines) != 2:
        return None
    # Relative answers are relative to `top` (the -C folder); resolved, so links compare equal.
    git_dir, common = ((top / line).resolve() for line in lines)
    if git_dir == common or common.name != ".git":
        return None
    return common.parent


def version(timeout: float = 10) -> tuple[str | None, str | None]:
    """(path of the git program, its version) with None for what is unknown."""
    exe = executable()
    if exe is None:
        return None, None
    try:
        out = output(None, "--version", timeout=timeout)
    except GitError:
        return exe, None
    words = out.split()
    return exe, words[2] if len(words) >= 3 and words[:2] == ["git", "version"] else out.strip()
