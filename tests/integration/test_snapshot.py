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


# -- untracked files above the size limit (issue 13, item 5) ------------------------------------
def test_big_untracked_file_is_left_out_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    repo = make_repo(tmp_path / "r", {"train.py": "x\n"})
    (repo / "data").mkdir()
    big = repo / "data" / "big.bin"
    with open(big, "wb") as fh:  # sparse: 200 MB on paper, nothing on disk
        fh.truncate(200 * 1000 * 1000)
    (repo / "notes.txt").write_text("small\n")
    with caplog.at_level("WARNING", logger="tether.snapshot"):
        rec = snapshot_repo(repo, "big1")
    assert tree_files(repo, rec.commit) == {"train.py", "notes.txt"}
    assert rec.skipped == ["data/big.bin"]
    [line] = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert "data/big.bin (200 MB, above the 50 MB limit" in line
    assert "/data/big.bin to .gitignore" in line and "exclude=['data/big.bin']" in line
    # git never hashed it: no loose object or pack holds 200 MB.
    sizes = dict(
        line.split(": ") for line in git(repo, "count-objects", "-v").splitlines() if ": " in line
    )
    assert int(sizes["size"]) + int(sizes["size-pack"]) < 1024  # KiB
    assert git(repo, "status", "--porcelain=v1") == "?? data/\n?? notes.txt"


def test_size_limit_is_exact_and_spares_tracked_files(tmp_path: Path):
    repo = make_repo(tmp_path / "r", {"tracked.bin": "t" * 50})
    (repo / "tracked.bin").write_text("u" * 60)  # tracked and changed: always taken
    (repo / "at.bin").write_bytes(b"a" * 10)
    (repo / "over.bin").write_bytes(b"o" * 11)
    (repo / "odd [name]*.bin").write_bytes(b"o" * 11)  # a literal pathspec, not a glob
    rec = snapshot_repo(repo, "lim", max_file_bytes=10)
    assert tree_files(repo, rec.commit) == {"tracked.bin", "at.bin"}
    assert sorted(rec.skipped) == ["odd [name]*.bin", "over.bin"]
    assert git(repo, "show", f"{rec.commit}:tracked.bin") == "u" * 60
    unlimited = snapshot_repo(repo, "nolim", max_file_bytes=0)
    assert "over.bin" in tree_files(repo, unlimited.commit) and unlimited.skipped == []


def test_size_limit_from_the_project_file_and_the_decorator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    repo = make_repo(tmp_path / "p", {"train.py": "1\n"})
    (repo / "tether.toml").write_text('[snapshot]\nmax-file-size = "1kB"\n')
    (repo / "blob.bin").write_bytes(b"b" * 1001)
    (repo / "ok.bin").write_bytes(b"b" * 1000)
    monkeypatch.chdir(repo)

    @tether.experiment(defaults={"a": 1})
    def train(cfg, run):
        return run.dir

    src = yaml.safe_load((train(a=2) / "run.lock").read_text())["sources"][0]
    assert src["skipped"] == ["blob.bin"]
    assert tree_files(repo, src["commit"]) == {"train.py", "tether.toml", "ok.bin"}

    @tether.experiment(defaults={"a": 1}, max_file_size="2kB")  # the option wins
    def train2(cfg, run):
        return run.dir

    src = yaml.safe_load((train2(a=2) / "run.lock").read_text())["sources"][0]
    assert src["skipped"] == []


def test_a_bad_size_is_one_line_naming_file_key_and_value(tmp_path: Path):
    import sys

    repo = make_repo(tmp_path / "p", {"app.py": "", "tether.toml": ""})
    (repo / "app.py").write_text(
        "import tether\n@tether.experiment(defaults={'lr': 0.1})\n"
        "def main(cfg):\n    print('ran')\nif __name__ == '__main__':\n    main()\n"
    )
    (repo / "tether.toml").write_text('[snapshot]\nmax-file-size = "lots"\n')
    proc = subprocess.run(
        [sys.executable, "app.py"], cwd=repo, capture_output=True, text=True, env=dict(os.environ)
    )
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert "tether.toml: snapshot.max-file-size = 'lots' is not a size" in line
    assert '"50MB"' in line and "Traceback" not in proc.stderr
