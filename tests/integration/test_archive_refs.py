"""Snapshot refs of archived runs, restored on a later import (issue 13, item 7).

When the repository a run recorded is not on the importing machine, the first import brings the
runs but not their snapshot refs and says to pass --snapshots-into REPO; importing again with it
must fetch the refs of the runs already imported, from the archive's git bundle."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

import tether
from tests.conftest import run_cli

REF = "refs/tether/snapshots/"


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    return subprocess.run(
        ["git", *args], cwd=repo, env=env, check=check, capture_output=True, text=True
    )


def _commit_of(run_dir: Path) -> str:
    lock = yaml.safe_load((run_dir / "run.lock").read_text())
    commit: str = lock["sources"][0]["commit"]
    return commit


@pytest.fixture
def archived(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict[str, str]]:
    """Two runs snapshotted in repo/, exported with their bundle; then repo/ moves away, as on
    another machine. Returns the archive and {run id: snapshot commit}."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "train.py").write_text("print(1)\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "init")
    monkeypatch.chdir(repo)
    commits = {}
    for n in range(2):
        (repo / "train.py").write_text(f"print({n})\n")  # each run its own snapshot
        with tether.start_run({"n": n}, name="train", capture_output=False) as run:
            pass
        commits[run.id] = _commit_of(Path(run.dir))
    out = tmp_path / "two.tar.gz"
    run_cli("archive", "export", *commits, "-o", str(out), "--with-snapshots", check=True)
    monkeypatch.chdir(tmp_path)
    repo.rename(tmp_path / "repo-gone")  # the recorded repository is not here any more
    return out, commits


def test_a_second_import_with_snapshots_into_fetches_the_missing_refs(
    tmp_path: Path, archived: tuple[Path, dict[str, str]]
):
    out, commits = archived
    env = {"TETHER_RUNS": str(tmp_path / "elsewhere")}
    first = run_cli("archive", "import", str(out), env=env, check=True)
    assert "2 runs imported" in first.stdout
    assert "not restored" in first.stderr and "pass --snapshots-into REPO" in first.stderr

    target = tmp_path / "target"
    target.mkdir()
    git(target, "init", "-q")
    second = run_cli(
        "archive", "import", str(out), "--snapshots-into", str(target), env=env, check=True
    )
    assert "0 runs imported" in second.stdout and second.stdout.count("already in") == 2
    assert (
        f"snapshot refs: {target}: 2 snapshot ref(s), 2 of them for run(s) imported before"
        in second.stdout
    )
    assert "not restored" not in second.stderr
    for run_id, commit in commits.items():
        assert git(target, "rev-parse", REF + run_id).stdout.strip() == commit
        assert git(target, "cat-file", "-t", commit).stdout.strip() == "commit"
    assert git(target, "fsck", "--no-dangling").returncode == 0

    # Once there, importing again fetches nothing and says nothing about refs.
    third = run_cli(
        "archive", "import", str(out), "--snapshots-into", str(target), env=env, check=True
    )
    assert "snapshot refs:" not in third.stdout and "not restored" not in third.stderr


def test_only_missing_refs_are_fetched_and_existing_ones_are_left_alone(
    tmp_path: Path, archived: tuple[Path, dict[str, str]]
):
    out, commits = archived
    env = {"TETHER_RUNS": str(tmp_path / "elsewhere")}
    run_cli("archive", "import", str(out), env=env, check=True)
    target = tmp_path / "target"
    target.mkdir()
    git(target, "init", "-q", "-b", "main")
    (target / "own.txt").write_text("mine\n")
    git(target, "add", "-A")
    git(target, "commit", "-qm", "own")
    own = git(target, "rev-parse", "HEAD").stdout.strip()
    first_id, second_id = list(commits)
    git(target, "update-ref", REF + first_id, own)  # the user's ref: not tether's to overwrite
    proc = run_cli(
        "archive", "import", str(out), "--snapshots-into", str(target), env=env, check=True
    )
    assert f"{target}: 1 snapshot ref(s), 1 of them for run(s) imported before" in proc.stdout
    assert git(target, "rev-parse", REF + first_id).stdout.strip() == own
    assert git(target, "rev-parse", REF + second_id).stdout.strip() == commits[second_id]


def test_a_first_import_with_snapshots_into_still_restores_them(
    tmp_path: Path, archived: tuple[Path, dict[str, str]]
):
    out, commits = archived
    target = tmp_path / "target"
    target.mkdir()
    git(target, "init", "-q")
    proc = run_cli(
        "archive",
        "import",
        str(out),
        "--snapshots-into",
        str(target),
        env={"TETHER_RUNS": str(tmp_path / "fresh")},
        check=True,
    )
    assert f"snapshot refs: {target}: 2 snapshot ref(s)\n" in proc.stdout
    assert sorted(git(target, "for-each-ref", "--format=%(refname)", REF).stdout.split()) == sorted(
        REF + run_id for run_id in commits
    )
