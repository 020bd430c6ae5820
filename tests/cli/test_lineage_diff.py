"""`tether lineage` and `tether diff` on real runs made in a real git repository."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import tether
from tests.conftest import run_cli
from tether.diffing import diff_config, diff_data, diff_sources, diff_stages
from tether.git import toplevel as git_top
from tether.lock import DataRecord, SourceRecord, StageRecord

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
}

Git = Callable[..., str]

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git repository with two committed files; the current folder for the test."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    top = tmp_path / "repo"
    top.mkdir()
    git = _git_in(top)
    git("init", "-q", "-b", "main")
    (top / "a.py").write_text("print('a')\n")
    (top / "b.py").write_text("def f():\n    return 1\n")
    git("add", "a.py", "b.py")
    git("commit", "-qm", "init")
    monkeypatch.chdir(top)
    return top


def _git_in(top: Path) -> Git:
    env = dict(os.environ, **GIT_ENV)

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=top, env=env, check=True, capture_output=True, text=True
        ).stdout.strip()

    return git


def _run(cfg: dict[str, Any], name: str, **kwargs: Any) -> str:
    # A copy: start_run writes save_dir into the dict it is given.
    with tether.start_run(copy.deepcopy(cfg), name=name, capture_output=False, **kwargs) as run:
        pass
    return run.id


def _json(*args: str, cwd: Path | None = None) -> Any:
    return json.loads(run_cli(*args, "--json", cwd=cwd, check=True).stdout)


# -- lineage ----------------------------------------------------------------------------------
def _chain() -> tuple[str, str, str]:
    prep = _run({"n": 1}, "prep")
    train = _run({"lr": 0.1}, "train", stages={"prep": None})
    evaluate = _run({"split": "test"}, "eval", stages={"train": None})
    return prep, train, evaluate


def test_lineage_of_a_three_stage_chain(repo: Path):
    prep, train, evaluate = _chain()
    out = run_cli("lineage", evaluate[:13], check=True).stdout
    lines = out.splitlines()
    assert len(lines) == 3
    assert "eval" in lines[0] and "completed" in lines[0]
    assert "train" in lines[1] and "as train" in lines[1]
    assert "prep" in lines[2] and "as prep" in lines[2]
    assert lines[1].lstrip().startswith("└──") and "└──" in lines[2]
    for run_id, line in zip((evaluate, train, prep), lines, strict=True):
        assert run_id[:8] in line

    tree = _json("lineage", evaluate)
    assert tree["direction"] == "up"
    assert tree["id"] == evaluate and tree["stage"] is None
    (child,) = tree["children"]
    assert (child["id"], child["name"], child["stage"]) == (train, "train", "train")
    (grandchild,) = child["children"]
    assert (grandchild["id"], grandchild["stage"], grandchild["missing"]) == (prep, "prep", False)
    assert grandchild["children"] == []


def test_lineage_down_from_the_first_stage(repo: Path):
    prep, train, evaluate = _chain()
    out = run_cli("lineage", "prep", "--down", check=True).stdout
    lines = out.splitlines()
    assert len(lines) == 3
    assert prep[:8] in lines[0] and "prep" in lines[0]
    assert train[:8] in lines[1] and "consumed it as prep" in lines[1]
    assert evaluate[:8] in lines[2] and "consumed it as train" in lines[2]

    tree = _json("lineage", prep, "--down")
    assert tree["direction"] == "down"
    assert [c["id"] for c in tree["children"]] == [train]
    assert [c["id"] for c in tree["children"][0]["children"]] == [evaluate]
    # The last stage consumed nothing further down.
    end = run_cli("lineage", evaluate, "--down", check=True).stdout
    assert "no run consumed it" in end


def test_lineage_shows_a_missing_upstream_run(repo: Path, runs_root: Path):
    prep, _train, evaluate = _chain()
    shutil.rmtree(runs_root / prep)
    proc = run_cli("lineage", evaluate)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 3
    assert prep[:8] in lines[2] and "missing" in lines[2] and "as prep" in lines[2]
    tree = _json("lineage", evaluate)
    gone = tree["children"][0]["children"][0]
    assert gone["missing"] is True and gone["status"] == "missing" and gone["name"] is None


def test_lineage_of_a_run_without_stages(repo: Path):
    alone = _run({}, "alone")
    out = run_cli("lineage", alone, check=True).stdout
    assert "alone" in out and "no previous stages" in out


# -- diff -------------------------------------------------------------------------------------
def test_diff_shows_one_config_key_and_one_file(repo: Path):
    cfg = {"lr": 0.1, "model": {"depth": 2, "act": "relu"}, "epochs": 3}
    old = _run(cfg, "train")
    (repo / "b.py").write_text("def f():\n    return 2\n")
    new = _run({**cfg, "model": {"depth": 4, "act": "relu"}}, "train")

    result = _json("diff", old, new)
    assert result["old"]["id"] == old and result["new"]["id"] == new
    assert result["config"] == [{"key": "model.depth", "change": "changed", "old": 2, "new": 4}]
    (src,) = result["sources"]
    assert src["change"] == "changed" and src["kind"] == "git"
    assert src["files"] == [{"path": "b.py", "status": "M", "old_path": None}]
    assert "-    return 1" in src["patch"] and "+    return 2" in src["patch"]
    assert "a.py" not in src["patch"]
    assert result["data"] == [] and result["stages"] == []
    assert result["identical"] is False

    proc = run_cli("diff", old, new)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "model.depth" in out and "2 → 4" in out
    assert "lr" not in out and "epochs" not in out and "save_dir" not in out
    assert "b.py" in out and "a.py" not in out
    assert "diff --git a/b.py b/b.py" in out
    assert "-    return 1" in out and "+    return 2" in out
    assert "\x1b[" not in out  # no colour when stdout is not a terminal
    sections = _sections(out)
    assert sections["Data"] == ["  no differences"]
    assert sections["Stages"] == ["  no differences"]

    brief = run_cli("diff", old, new, "--no-code", check=True).stdout
    assert "b.py" in brief and "diff --git" not in brief and "return 2" not in brief
    assert _json("diff", old, new, "--no-code")["sources"][0]["patch"] is None


SECTIONS = ("Config", "Code", "Data", "Stages", "Environment")


def _sections(out: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current = None
    for line in out.splitlines():
        if line in SECTIONS:
            current = sections.setdefault(line, [])
        elif current is not None and line.startswith("  "):
            current.append(line)
        else:
            current = None
    return sections


def test_diff_of_identical_runs_says_so_per_section(repo: Path):
    old = _run({"lr": 0.1}, "train")
    new = _run({"lr": 0.1}, "train")
    proc = run_cli("diff", old, new)
    assert proc.returncode == 0
    sections = _sections(proc.stdout)
    assert sections == {s: ["  no differences"] for s in SECTIONS}
    assert _json("diff", old, new)["identical"] is True


def test_diff_says_when_a_snapshot_commit_is_gone(repo: Path):
    git = _git_in(repo)
    old = _run({"lr": 0.1}, "train")
    (repo / "a.py").write_text("print('A')\n")
    new = _run({"lr": 0.1}, "train")
    gone = git("rev-parse", f"refs/tether/snapshots/{old}")
    git("update-ref", "-d", f"refs/tether/snapshots/{old}")
    git("reflog", "expire", "--expire=now", "--all")
    git("gc", "-q", "--prune=now")
    proc = run_cli("diff", old, new)
    assert proc.returncode == 0, proc.stderr
    code = _sections(proc.stdout)["Code"]
    assert len(code) == 1
    assert gone[:12] in code[0] and "not in" in code[0]
    src = _json("diff", old, new)["sources"][0]
    assert src["change"] == "unavailable" and src["patch"] is None


def test_diff_says_when_the_repository_is_gone(repo: Path, tmp_path: Path):
    old = _run({"lr": 0.1}, "train")
    (repo / "a.py").write_text("print('A')\n")
    new = _run({"lr": 0.1}, "train")
    shutil.rmtree(repo / ".git")
    proc = run_cli("diff", old, new, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    code = _sections(proc.stdout)["Code"]
    assert len(code) == 1 and "not found" in code[0]


def test_diff_finds_the_repository_from_the_project_root(repo: Path):
    # With a tether.toml, source paths are relative to the project root (here "."), and diff
    # finds the repository from a subfolder of the project too.
    (repo / "tether.toml").write_text("")
    (repo / "sub").mkdir()
    old = _run({}, "train")
    (repo / "a.py").write_text("print('A')\n")
    new = _run({}, "train")
    (src,) = _json("diff", old, new, cwd=repo / "sub")["sources"]
    assert src["path"] == "." and src["change"] == "changed"
    assert [f["path"] for f in src["files"]] == ["a.py"]
    assert Path(src["repo"]) == repo.resolve()


def test_diff_shows_a_changed_upstream_stage(repo: Path):
    first = _run({"n": 1}, "prep")
    old = _run({}, "train", stages={"prep": None})
    second = _run({"n": 2}, "prep")
    new = _run({}, "train", stages={"prep": None})
    (stage,) = _json("diff", old, new)["stages"]
    assert (stage["name"], stage["change"]) == ("prep", "changed")
    assert (stage["old_run"], stage["new_run"]) == (first, second)
    assert stage["same_inputs"] is False
    out = run_cli("diff", old, new, check=True).stdout
    (line,) = _sections(out)["Stages"]
    left, right = line.split(" → ")
    assert left.startswith("  ~ prep  ") and first.startswith(left.split()[-1])
    assert second.startswith(right.strip())


def test_diff_shows_a_data_digest_change(repo: Path):
    (repo / ".gitignore").write_text("data.txt\n")
    data = repo / "data.txt"
    data.write_text("1 2 3\n")
    old = _run({"lr": 0.1}, "train", track=["data.txt"])
    data.write_text("1 2 4\n")
    new = _run({"lr": 0.1}, "train", track=["data.txt"])
    result = _json("diff", old, new)
    (change,) = result["data"]
    assert change["path"] == "data.txt" and change["change"] == "changed"
    assert change["old_digest"] != change["new_digest"]
    assert result["config"] == [] and all(not s["differs"] for s in result["sources"])
    out = run_cli("diff", old, new, check=True).stdout
    (line,) = _sections(out)["Data"]
    assert "data.txt" in line and change["old_digest"][:12] in line
    assert change["new_digest"][:12] in line


def test_diff_of_source_copies_outside_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    project = tmp_path / "plain"
    project.mkdir()
    (project / "tether.toml").write_text("")
    (project / "a.py").write_text("x = 1\n")
    (project / "b.py").write_text("y = 1\n")
    monkeypatch.chdir(project)
    if git_top(project) is not None:
        pytest.skip("the temporary folder is inside a git repository")
    old = _run({}, "copy")
    same = _run({}, "copy")
    (project / "b.py").write_text("y = 2\n")
    new = _run({}, "copy")
    assert _json("diff", old, same)["identical"] is True
    (src,) = _json("diff", old, new)["sources"]
    assert (src["kind"], src["change"]) == ("copy", "changed")
    assert src["files"] == [{"path": "b.py", "status": "M", "old_path": None}]
    assert "-y = 1" in src["patch"] and "+y = 2" in src["patch"]
    out = run_cli("diff", old, new, check=True).stdout
    assert "source copy" in out and "b.py" in out


def test_diff_of_unknown_run_is_an_error(repo: Path):
    run = _run({}, "train")
    proc = run_cli("diff", run, "nosuchrun")
    assert proc.returncode == 2
    assert "no run matches 'nosuchrun'" in proc.stderr


# -- library ----------------------------------------------------------------------------------
def test_diff_config_flattens_and_keeps_types_apart():
    old = {"a": {"b": 1, "c": [1, 2]}, "flag": 1, "gone": "x", "save_dir": "/r/1"}
    new = {"a": {"b": 1, "c": [1, 3]}, "flag": True, "new": {"k": None}, "save_dir": "/r/2"}
    changes = {(c.key, c.change, repr(c.old), repr(c.new)) for c in diff_config(old, new)}
    assert changes == {
        ("a.c", "changed", "[1, 2]", "[1, 3]"),
        ("flag", "changed", "1", "True"),
        ("gone", "removed", "'x'", "None"),
        ("new.k", "added", "None", "None"),
    }
    assert diff_config({"lr": 1}, {"lr": 1.0}) == []


def test_diff_data_pending_added_removed():
    old = [
        DataRecord("same", digest="d1"),
        DataRecord("hashing", digest="d2"),
        DataRecord("dropped", digest="d3"),
    ]
    new = [
        DataRecord("same", digest="d1"),
        DataRecord("hashing", digest=None, status="pending"),
        DataRecord("extra", key="dataset.path", digest="d4"),
    ]
    got = [(d.path, d.change) for d in diff_data(old, new)]
    assert got == [("hashing", "pending"), ("dropped", "removed"), ("extra", "added")]


def test_diff_stages_same_inputs():
    (change,) = diff_stages(
        [StageRecord("prep", "run-1", "digest")], [StageRecord("prep", "run-2", "digest")]
    )
    assert change.change == "changed" and change.same_inputs
    assert (
        diff_stages([StageRecord("prep", "run-1", "x")], [StageRecord("prep", "run-1", "x")]) == []
    )


def test_diff_sources_without_git_work():
    same_tree = diff_sources(
        [SourceRecord(".", commit="c1", tree="t")], [SourceRecord(".", commit="c2", tree="t")]
    )
    assert [s.change for s in same_tree] == ["same"]
    mixed = diff_sources([SourceRecord(".", commit="c1")], [SourceRecord(".", manifest="m")])
    assert [s.change for s in mixed] == ["incomparable"]
    moved = diff_sources([SourceRecord("lib", commit="c1")], [SourceRecord("../lib", commit="c1")])
    assert [(s.path, s.change) for s in moved] == [("lib", "removed"), ("../lib", "added")]
    nothing = diff_sources([SourceRecord(".")], [SourceRecord(".")])
    assert [s.change for s in nothing] == ["unrecorded"]
