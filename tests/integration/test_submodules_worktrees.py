"""Submodules and linked worktrees with real git (issue 13, item 5).

A change inside a submodule is captured (its own source entry, the superproject `dirty`), and a
run started in a linked worktree lands in the main worktree's runs root, so `git worktree remove`
leaves it alone."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

import tether
from tether.capture.source import snapshot_repo
from tether.workspace import resolve_runs_root

ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "protocol.file.allow=always", *args],
        cwd=repo,
        env={**os.environ, **ENV},
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def make_repo(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    git(path, "add", "-A")
    git(path, "commit", "-qm", "init")
    return path


def add_submodule(sup: Path, lib: Path, rel: str) -> None:
    git(sup, "submodule", "add", "-q", str(lib), rel)
    git(sup, "commit", "-qm", f"add {rel}")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """sup/ with submodule lib/ (itself holding submodule deep/), checked out recursively."""
    deep = make_repo(tmp_path / "deep-origin", {"deep.py": "d = 1\n"})
    lib = make_repo(tmp_path / "lib-origin", {"lib.py": "x = 1\n"})
    add_submodule(lib, deep, "deep")
    sup = make_repo(tmp_path / "sup", {"train.py": "print(1)\n", "tether.toml": ""})
    add_submodule(sup, lib, "lib")
    git(sup, "submodule", "update", "--init", "--recursive", "-q")
    monkeypatch.chdir(sup)
    return sup


def status(repo: Path) -> str:
    return git(
        repo, "status", "--porcelain=v1", "--untracked-files=all", "--ignore-submodules=none"
    )


def run_sources() -> list[dict[str, Any]]:
    @tether.experiment(defaults={"a": 1})
    def train(cfg: Any, run: Any) -> Path:
        return Path(run.dir)

    sources: list[dict[str, Any]] = yaml.safe_load((train(a=1) / "run.lock").read_text())["sources"]
    return sources


def test_clean_submodules_are_entries_of_their_own(project: Path):
    sources = run_sources()
    assert [(s["path"], s["superproject"], s["dirty"]) for s in sources] == [
        (".", None, False),
        ("lib", ".", False),
        ("lib/deep", "lib", False),
    ]
    lib = sources[1]
    assert lib["head"] == git(project / "lib", "rev-parse", "HEAD")
    # the superproject's snapshot names the submodule's checked-out commit, as HEAD does
    assert git(project, "rev-parse", f"{sources[0]['commit']}:lib") == lib["head"]


def test_a_change_only_inside_a_submodule_is_captured_and_dirty(project: Path):
    (project / "lib" / "lib.py").write_text("x = 2\n")
    (project / "lib" / "new.py").write_text("new\n")  # untracked, inside the submodule
    (project / "lib" / "deep" / "deep.py").write_text("d = 2\n")
    before = (status(project), status(project / "lib"), status(project / "lib" / "deep"))
    sources = run_sources()
    after = (status(project), status(project / "lib"), status(project / "lib" / "deep"))
    assert after == before  # the user's index and files are untouched
    sup, lib, deep = sources
    assert sup["dirty"] and lib["dirty"] and deep["dirty"]
    assert git(project / "lib", "show", f"{lib['commit']}:lib.py") == "x = 2"
    assert git(project / "lib", "show", f"{lib['commit']}:new.py") == "new"
    assert git(project / "lib" / "deep", "show", f"{deep['commit']}:deep.py") == "d = 2"
    # each gitlink points at the snapshot of the submodule below it
    assert git(project, "rev-parse", f"{sup['commit']}:lib") == lib["commit"]
    assert git(project / "lib", "rev-parse", f"{lib['commit']}:deep") == deep["commit"]
    # and each snapshot is kept from git gc in its own repository
    run_id = git(project / "lib", "for-each-ref", "--format=%(refname:lstrip=3)", "refs/tether/")
    assert git(project / "lib", "rev-parse", f"refs/tether/snapshots/{run_id}") == lib["commit"]
    assert git(project, "rev-parse", f"refs/tether/snapshots/{run_id}") == sup["commit"]


def test_a_submodule_on_another_commit_makes_the_superproject_dirty(project: Path):
    lib = project / "lib"
    (lib / "lib.py").write_text("x = 3\n")
    git(lib, "commit", "-qam", "move the submodule")  # committed there, not in sup
    rec_subs: list[Any] = []
    rec = snapshot_repo(project, "moved", submodules=rec_subs)
    assert rec.dirty
    assert rec_subs[0].dirty is False  # its files are its HEAD's
    assert git(project, "rev-parse", f"{rec.commit}:lib") == git(lib, "rev-parse", "HEAD")


def test_same_code_same_tree_and_a_submodule_change_changes_the_digest(project: Path):
    first = snapshot_repo(project, "one")
    again = snapshot_repo(project, "two")
    assert first.tree == again.tree
    (project / "lib" / "lib.py").write_text("x = 9\n")
    changed = snapshot_repo(project, "three")
    assert changed.tree != first.tree and changed.dirty


def test_a_submodule_that_is_not_checked_out_is_left_as_its_gitlink(tmp_path: Path):
    lib = make_repo(tmp_path / "lib-origin", {"lib.py": "1\n"})
    sup = make_repo(tmp_path / "sup", {"a.py": "1\n"})
    add_submodule(sup, lib, "lib")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(sup), str(clone))  # no --recurse-submodules
    subs: list[Any] = []
    rec = snapshot_repo(clone, "c", submodules=subs)
    assert subs == [] and not rec.dirty


def _worktree(tmp_path: Path, files: dict[str, str]) -> tuple[Path, Path]:
    main = make_repo(tmp_path / "main", files)
    linked = tmp_path / "linked"
    git(main, "worktree", "add", "-q", "-b", "feature", str(linked))
    return main, linked


def test_runs_made_in_a_linked_worktree_land_in_the_main_worktree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    main, linked = _worktree(tmp_path, {"train.py": "1\n"})
    monkeypatch.delenv("TETHER_RUNS")
    monkeypatch.chdir(linked)
    assert resolve_runs_root() == main.resolve() / ".tether" / "runs"
    with tether.start_run({"a": 1}, name="wt") as run:
        pass
    assert Path(run.dir).parent == main.resolve() / ".tether" / "runs"
    lock = yaml.safe_load((Path(run.dir) / "run.lock").read_text())
    assert lock["sources"][0]["root"] == str(linked.resolve())
    assert lock["sources"][0]["branch"] == "feature"
    monkeypatch.chdir(tmp_path)
    git(main, "worktree", "remove", str(linked))  # clean: the run is not inside it
    assert (Path(run.dir) / "run.lock").is_file()
    # the snapshot ref lives in the shared repository, beside the run it belongs to
    assert git(main, "rev-parse", f"refs/tether/snapshots/{run.id}") == lock["sources"][0]["commit"]


def test_project_files_in_a_linked_worktree_map_to_the_main_worktree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    main, linked = _worktree(
        tmp_path,
        {"sub/tether.toml": "", "rel/tether.toml": 'runs-dir = "my-runs"\n', "a.py": ""},
    )
    monkeypatch.delenv("TETHER_RUNS")
    top = main.resolve()
    assert resolve_runs_root(cwd=linked / "sub") == top / "sub" / ".tether" / "runs"
    assert resolve_runs_root(cwd=linked / "rel") == top / "rel" / "my-runs"
    # what the user set explicitly stays as written
    absolute = tmp_path / "elsewhere"
    (linked / "sub" / "tether.toml").write_text(f'runs-dir = "{absolute}"\n')
    assert resolve_runs_root(cwd=linked / "sub") == absolute
    assert resolve_runs_root("x", cwd=linked) == Path("x").absolute()
    monkeypatch.setenv("TETHER_RUNS", str(linked / "runs"))
    assert resolve_runs_root(cwd=linked) == linked / "runs"
    # the main worktree and a submodule keep their own top
    monkeypatch.delenv("TETHER_RUNS")
    assert resolve_runs_root(cwd=main) == top / ".tether" / "runs"


def test_a_submodule_is_not_taken_for_a_linked_worktree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    lib = make_repo(tmp_path / "lib-origin", {"lib.py": "1\n"})
    sup = make_repo(tmp_path / "sup", {"a.py": "1\n"})
    add_submodule(sup, lib, "lib")
    monkeypatch.delenv("TETHER_RUNS")
    assert (sup / "lib" / ".git").is_file()  # like a linked worktree's
    assert resolve_runs_root(cwd=sup / "lib") == (sup / "lib").resolve() / ".tether" / "runs"


APP = """
import sys
import tether

sys.path.insert(0, "lib")
sys.path.insert(0, "lib/deep")

@tether.experiment(defaults={"a": 1})
def main(cfg, run):
    import deep
    import lib
    run.log_metrics({"x": lib.x, "d": deep.d})

if __name__ == "__main__":
    main()
"""


def test_reproduce_checks_the_submodule_snapshots_out(project: Path):
    import json
    import sys

    from tests.conftest import run_cli

    (project / "app.py").write_text(APP)
    git(project, "add", "app.py")
    git(project, "commit", "-qm", "app")
    (project / "lib" / "lib.py").write_text("x = 2\n")  # only the submodules change
    (project / "lib" / "deep" / "deep.py").write_text("d = 7\n")
    done = subprocess.run([sys.executable, "app.py"], cwd=project, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    # the working tree moves back: the re-run must read the snapshots, not this
    git(project / "lib" / "deep", "checkout", "-q", "--", "deep.py")
    git(project / "lib", "checkout", "-q", "--", "lib.py")
    proc = run_cli("reproduce", "1", "--json", cwd=project)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    metrics = {m["key"]: m["new"] for m in report["metrics"]}
    assert metrics == {"x": 2, "d": 7}, report
    assert git(project, "worktree", "list", "--porcelain").count("worktree ") == 1
    assert git(project / "lib", "worktree", "list", "--porcelain").count("worktree ") == 1


def test_purge_drops_the_snapshot_refs_in_every_submodule(project: Path):
    from tests.conftest import run_cli

    (project / "lib" / "lib.py").write_text("x = 5\n")
    sources = run_sources()
    run_id = git(project, "for-each-ref", "--format=%(refname:lstrip=3)", "refs/tether/")
    repos = [project, project / "lib", project / "lib" / "deep"]
    assert [git(r, "for-each-ref", "refs/tether/") != "" for r in repos] == [True] * 3
    assert len(sources) == 3
    run_cli("delete", run_id[:13], "-y", cwd=project, check=True)
    run_cli("purge", run_id[:13], "-y", cwd=project, check=True)
    assert [git(r, "for-each-ref", "refs/tether/") for r in repos] == [""] * 3
