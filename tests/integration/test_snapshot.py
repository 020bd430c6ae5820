"""Source snapshots against real git repositories."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

import tether
from tether.capture.source import snapshot_repo
from tether.git import GitError

ENV = dict(
    os.environ,
    GIT_AUTHOR_NAME="t",
    GIT_AUTHOR_EMAIL="t@t",
    GIT_COMMITTER_NAME="t",
    GIT_COMMITTER_EMAIL="t@t",
)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, env=ENV, check=True, capture_output=True, text=True
    ).stdout.strip()


def make_repo(path: Path, files: dict[str, str], commit: bool = True) -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "protocol.file.allow", "always")
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    if commit:
        git(path, "add", "-A")
        git(path, "commit", "-qm", "init")
    return path


def tree_files(repo: Path, commit: str) -> set[str]:
    return {p for p in git(repo, "ls-tree", "-r", "-z", "--name-only", commit).split("\0") if p}


def user_view(repo: Path) -> tuple[str, ...]:
    """Everything a snapshot must leave alone."""
    index = (repo / ".git" / "index").read_bytes() if (repo / ".git" / "index").exists() else b""
    head = git(repo, "rev-parse", "-q", "--verify", "HEAD") if (repo / ".git").exists() else ""
    return (
        git(repo, "status", "--porcelain=v1", "--untracked-files=all"),
        head,
        git(repo, "symbolic-ref", "-q", "--short", "HEAD"),
        git(repo, "stash", "list"),
        str(index.__hash__()),
    )


def test_snapshot_leaves_the_user_repo_untouched(tmp_path: Path):
    repo = make_repo(tmp_path / "r", {"a.py": "1\n", "b.py": "2\n", ".gitignore": "*.log\n"})
    (repo / "a.py").write_text("changed\n")
    git(repo, "add", "a.py")  # staged change
    (repo / "b.py").write_text("unstaged\n")
    (repo / "new file é.py").write_text("untracked\n")
    (repo / "ignored.log").write_text("noise\n")
    before = user_view(repo)
    rec = snapshot_repo(repo, "run-1")
    assert user_view(repo) == before
    files = tree_files(repo, rec.commit)
    assert files == {".gitignore", "a.py", "b.py", "new file é.py"}
    assert git(repo, "show", f"{rec.commit}:b.py") == "unstaged"
    assert rec.dirty and rec.branch == "main"
    assert git(repo, "rev-parse", "refs/tether/snapshots/run-1") == rec.commit
    assert git(repo, "rev-parse", f"{rec.commit}^") == rec.head


def test_include_and_exclude_select_exactly(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    repo = make_repo(
        tmp_path / "r",
        {"src/m.py": "", "src/notes.md": "", "conf/a.yaml": "", "top.py": "", "data/x.py": ""},
    )
    rec = snapshot_repo(repo, "r2", include=["*.py", "conf/"], exclude=["data/", "*.txt"])
    assert tree_files(repo, rec.commit) == {"src/m.py", "conf/a.yaml", "top.py"}
    assert rec.include == ["*.py", "conf/"] and rec.exclude == ["data/", "*.txt"]
    with caplog.at_level("WARNING"):
        snapshot_repo(repo, "r3", include=["*.rs"])
    assert "matches no file" in caplog.text


def test_huge_untracked_folder_excluded_without_reading(tmp_path: Path):
    repo = make_repo(tmp_path / "r", {"train.py": "x\n"})
    data = repo / "data"
    data.mkdir()
    big = data / "huge.bin"
    with open(big, "wb") as fh:  # sparse: 64 GiB that git would take minutes to hash
        fh.truncate(64 * 1024**3)
    rec = snapshot_repo(repo, "r4", exclude=["data/"])
    assert tree_files(repo, rec.commit) == {"train.py"}
    # git never stored it: no blob of that size exists in the object database.
    assert "huge.bin" not in git(repo, "count-objects", "-v")


def test_detached_head_empty_repo_and_submodule(tmp_path: Path):
    repo = make_repo(tmp_path / "d", {"a.py": "1\n"})
    git(repo, "checkout", "-q", "--detach")
    rec = snapshot_repo(repo, "d1")
    assert rec.branch is None and not rec.dirty and rec.head
    empty = make_repo(tmp_path / "e", {"first.py": "1\n"}, commit=False)
    rec = snapshot_repo(empty, "e1")
    assert rec.head is None and rec.dirty
    assert tree_files(empty, rec.commit) == {"first.py"}
    lib = make_repo(tmp_path / "lib", {"lib.py": "1\n"})
    sup = make_repo(tmp_path / "sup", {"main.py": "1\n"})
    git(sup, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "lib")
    git(sup, "commit", "-qm", "add submodule")
    rec = snapshot_repo(sup, "s1")
    assert "lib" in tree_files(sup, rec.commit)


def test_two_repositories_in_one_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    main = make_repo(tmp_path / "proj", {"train.py": "1\n"})
    lib = make_repo(tmp_path / "mylib", {"lib.py": "1\n"})
    (lib / "lib.py").write_text("2\n")
    monkeypatch.chdir(main)

    @tether.experiment(defaults={"a": 1}, repos=[".", "../mylib"])
    def train(cfg, run):
        return run.dir

    run_dir = train(a=2)
    sources = yaml.safe_load((run_dir / "run.lock").read_text())["sources"]
    assert [Path(s["path"]).name for s in sources] == ["proj", "mylib"]
    assert sources[1]["dirty"] is True
    assert git(lib, "show", f"{sources[1]['commit']}:lib.py") == "2"


def test_outside_git_copies_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    work = tmp_path / "plain"
    (work / "pkg").mkdir(parents=True)
    (work / "train.py").write_text("print(1)\n")
    (work / "pkg" / "m.py").write_text("x = 1\n")
    (work / "big.bin").write_bytes(b"\0" * 10)
    (work / ".venv" / "lib").mkdir(parents=True)
    (work / ".venv" / "lib" / "site.py").write_text("")
    (work / "tether.toml").write_text("")
    monkeypatch.chdir(work)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    with tether.start_run({}, name="copy") as run:
        pass
    copied = {
        p.relative_to(run.dir / "source").as_posix()
        for p in (run.dir / "source").rglob("*")
        if p.is_file()
    }
    assert copied == {"train.py", "pkg/m.py", "MANIFEST.json", "tether.toml"}
    src = yaml.safe_load((run.dir / "run.lock").read_text())["sources"][0]
    assert src["manifest"] and src["commit"] is None


def test_named_repo_outside_git_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    (tmp_path / "nogit").mkdir()
    with pytest.raises(GitError, match="not inside a git repository"):
        snapshot_repo(tmp_path / "nogit", "x")


def test_runs_that_never_start_leave_no_snapshot_ref(tmp_path: Path):
    """The snapshot starts early, in a thread; only a run that starts publishes its ref."""
    import sys

    repo = make_repo(
        tmp_path / "r",
        {
            "app.py": "import tether\n@tether.experiment(defaults={'lr': 0.1})\n"
            "def main(cfg):\n    print('ran', cfg.lr)\n"
            "if __name__ == '__main__':\n    main()\n"
        },
    )

    def app(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "app.py", *args], cwd=repo, capture_output=True, text=True
        )

    assert app("--help").returncode == 0
    assert app("--print-config").returncode == 0
    assert app("lr=oops").returncode == 2
    assert git(repo, "for-each-ref", "refs/tether/") == ""
    done = app("lr=0.5")
    assert done.returncode == 0 and "ran 0.5" in done.stdout
    assert len(git(repo, "for-each-ref", "refs/tether/").splitlines()) == 1
