"""tether.git: the one git runner."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tether import git
from tether.errors import TetherError

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


@needs_git
def test_a_failing_command_is_a_git_error_with_git_s_message(tmp_path: Path):
    with pytest.raises(git.GitError, match=r"git rev-parse --verify in .* failed: "):
        git.run(tmp_path, "rev-parse", "--verify", "nope")
    assert issubclass(git.GitError, TetherError)
    assert git.run(tmp_path, "rev-parse", "--verify", "nope", check=False).returncode != 0


@needs_git
def test_inherited_repository_variables_do_not_redirect_git(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    subprocess.run(["git", "init", "-q", str(tmp_path / "a")], check=True)
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere" / ".git"))
    monkeypatch.setenv("GIT_INDEX_FILE", str(tmp_path / "elsewhere" / "index"))
    top = git.output(tmp_path / "a", "rev-parse", "--show-toplevel").strip()
    assert Path(top) == (tmp_path / "a").resolve()
    # A variable the caller passes is kept.
    env = git.git_env({"GIT_INDEX_FILE": "x"})
    assert env["GIT_INDEX_FILE"] == "x" and "GIT_DIR" not in env


def test_missing_git_gives_the_caller_s_hint(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert not git.available() and git.version() == (None, None)
    with pytest.raises(git.GitError, match="git is not installed; install git, or else"):
        git.run(None, "status", hint="install git, or else")


def test_find_top_stops_at_a_ceiling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / ".git").mkdir()
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert git.find_top(tmp_path / "a" / "b") == tmp_path.resolve()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str((tmp_path / "a").resolve()))
    assert git.find_top(tmp_path / "a" / "b") is None
