"""The pattern dialect (tether.globs) selects exactly what git selects with its pathspecs."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tether.globs import compile_glob, rebase, select, split_patterns, to_glob

FILES = [
    "top.py",
    "setup.cfg",
    "a.pyc",
    "other/data",
    "database.py",
    "data2/x.csv",
    "data/a.csv",
    "data/sub/b.csv",
    "data/sub/deep/c.py",
    "src/a.py",
    "src/b.txt",
    "src/x/y.py",
    "src/x/z/w.py",
    "srcfoo/x",
    "lib/util.py",
    "lib/__pycache__/util.cpython-311.pyc",
    "pkg/data/inner.txt",
    "pkg/conf/a.yaml",
    "conf/a.yaml",
    "conf/b.yaml",
    "conf/c.yaml",
    "conf/[ab].yaml",
    "dir.py/inside.txt",
    "with space/file name.py",
    "with space/other.txt",
    "x/.hidden/h.py",
    ".github/ci.yaml",
    "tests/test_a.py",
    "tests/unit/test_b.py",
    "UPPER.PY",
    "caf\u00e9.py",
    "notes-1.md",
    "notes_2.md",
]

PATTERNS = [
    "*.py",
    "src/*.py",
    "**/*.py",
    "src/**/*.py",
    "src/**",
    "src/",
    "src",
    "/src",
    "src/*",
    "data/",
    "other/data",
    "database.py",
    "/data",
    "data/*",
    "/*.py",
    "*",
    "**",
    "conf/[ab].yaml",
    "conf/[!a].yaml",
    "conf/[^a-b].yaml",
    "conf/[[:alpha:]].yaml",
    "conf/?.yaml",
    "with space/*.py",
    "with space",
    "file name.py",
    "*.PY",
    "caf?.py",
    "caf\u00e9.py",
    "dir.py",
    "tests/**",
    ".*/**",
    "**/.*/**",
    "**/__pycache__/**",
    "src**",
    "src**/x",
    "notes[-_]?.md",
    "notes[_-]2.md",
    "conf/[a",
    "./src/a.py",
    "src//x/y.py",
    "src/x/../a.py",
    "  *.cfg  ",
    "conf/\\[ab].yaml",
]


def _git(repo: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, check=True, env=env
    ).stdout.decode("utf-8", "surrogateescape")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    root = tmp_path_factory.mktemp("globs")
    for name in FILES:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    listed = set(_git(root, "ls-files", "-z").split("\0")) - {""}
    assert listed == set(FILES)
    return root


def _listed(repo: Path, *specs: str) -> set[str]:
    if not specs:
        return set()
    return set(_git(repo, "ls-files", "-z", "--", *specs).split("\0")) - {""}


@pytest.mark.parametrize("pattern", PATTERNS)
def test_selection_is_the_same_as_git(repo: Path, pattern: str):
    glob = compile_glob(pattern)
    mine = {f for f in FILES if glob.selects(f)}
    assert mine == _listed(repo, *glob.pathspecs()), (pattern, glob.glob)


@pytest.mark.parametrize("pattern", ["*.py", "data/*", "src/*.py", "*", "conf/[ab].yaml"])
def test_anchored_selection_is_the_same_as_git(repo: Path, pattern: str):
    glob = compile_glob(pattern, anchored=True)
    mine = {f for f in FILES if glob.selects(f)}
    assert mine == _listed(repo, *glob.pathspecs()), (pattern, glob.glob)


@pytest.mark.parametrize(
    ("include", "exclude"),
    [
        (["*.py"], ["tests/"]),
        (["src/", "conf/"], ["*.txt", "src/x"]),
        ([], ["data", "**/.*/**"]),
        (["*.py", "*.yaml"], ["with space/", "/lib"]),
    ],
)
def test_excludes_are_the_same_as_git(repo: Path, include: list[str], exclude: list[str]):
    specs = [s for p in include for s in compile_glob(p).pathspecs()] or ["."]
    specs += [s for p in exclude for s in compile_glob(p).pathspecs(exclude=True)]
    assert set(select(FILES, include, exclude)) == _listed(repo, *specs)


def test_the_known_disagreement_is_gone():
    """`src/*.py` used to select `src/x/y.py` in the copy made without git."""
    glob = compile_glob("src/*.py")
    assert glob.selects("src/a.py") and not glob.selects("src/x/y.py")


@pytest.mark.parametrize(
    ("pattern", "glob"),
    [
        ("*.py", "**/*.py"),
        ("data/", "**/data/**"),
        ("/a.py", "a.py"),
        ("src/*.py", "src/*.py"),
        ("foo/*", "foo/*"),
        ("", ""),
        ("/", ""),
        ("../x", ""),
    ],
)
def test_to_glob(pattern: str, glob: str):
    assert to_glob(pattern) == glob


def test_match_is_the_path_itself_and_selects_covers_folders():
    glob = compile_glob("*.py")
    assert glob.match("dir.py") and not glob.match("dir.py/inside.txt")
    assert glob.selects("dir.py/inside.txt")
    assert compile_glob("data/").covers_dir("data")
    assert compile_glob(".*/**").covers_dir(".git")
    assert not compile_glob("data/x").covers_dir("data")


def test_split_and_rebase():
    assert split_patterns(["*.py", "-tests/**", "-", ""]) == (["*.py"], ["tests/**"])
    assert rebase("*.py", "proj") == "/proj/**/*.py"
    assert rebase("src/a.py", "proj") == "/proj/src/a.py"
    assert rebase("/data", "proj") == "/proj/data"
    assert rebase("data/", "proj") == "/proj/**/data/"


# -- regex: patterns ----------------------------------------------------------------------------
def test_regex_patterns_match_the_whole_path_or_a_folder_above_it():
    csv = compile_glob(r"regex:.*\.csv")
    assert csv.regex and csv.pathspecs() == [] and csv.pathspecs(exclude=True) == []
    assert select(FILES, [r"regex:.*\.csv"]) == ["data2/x.csv", "data/a.csv", "data/sub/b.csv"]
    # A whole-path match, as a glob's: `a\.csv` is the top-level file only.
    assert not compile_glob(r"regex:a\.csv").selects("data/a.csv")
    assert compile_glob(r"regex:data/a\.csv").selects("data/a.csv")
    # A folder that matches selects what is inside it.
    sub = compile_glob("regex:data/(sub|none)")
    assert sub.selects("data/sub/deep/c.py") and not sub.selects("data/a.csv")
    assert not sub.match("data/sub/b.csv") and sub.match("data/sub")
    assert not sub.covers_dir("data") and sub.covers_dir("data/sub")
    assert select(FILES, ["*.py"], [r"regex:(src|lib)/.*"]) == [
        "top.py",
        "database.py",
        "data/sub/deep/c.py",
        "dir.py/inside.txt",
        "with space/file name.py",
        "x/.hidden/h.py",
        "tests/test_a.py",
        "tests/unit/test_b.py",
        "caf\u00e9.py",
    ]
    assert select(FILES, ["regex:caf\u00e9\\.py"]) == ["caf\u00e9.py"]


def test_regex_patterns_split_rebase_and_report_bad_expressions():
    from tether.errors import TetherError
    from tether.globs import has_magic, is_anchored, regex_problem

    assert split_patterns(["regex:a.*", "-regex:b.*"]) == (["regex:a.*"], ["regex:b.*"])
    assert is_anchored(r"regex:.*\.py") and has_magic("regex:abc")
    rebased = rebase(r"regex:.*\.py", "with space")
    assert compile_glob(rebased).selects("with space/file name.py")
    assert not compile_glob(rebased).selects("src/a.py")
    assert compile_glob(rebase("regex:a|b", "p")).selects("p/b")  # the alternation stays inside
    assert not compile_glob(rebase("regex:a|b", "p")).selects("b")
    assert regex_problem("*.py") is None and regex_problem("regex:ok") is None
    assert regex_problem("regex:") == "the expression after 'regex:' is empty"
    with pytest.raises(TetherError) as info:
        compile_glob("regex:[unclosed")
    assert str(info.value) == (
        "pattern 'regex:[unclosed': not a regular expression (unterminated character set at "
        "position 0); write a Python regular expression after 'regex:', such as 'regex:.*\\.csv'"
    )


def test_regex_patterns_narrow_a_git_snapshot(repo: Path, tmp_path: Path):
    from tether.capture.source import snapshot_repo

    work = tmp_path / "work"
    shutil.copytree(repo, work)
    record = snapshot_repo(
        work,
        "01a2336e-0000-7000-8000-000000000000",
        include=[r"regex:(src|tests)/.*\.py"],
        exclude=[r"regex:.*/test_b\.py"],
        publish=False,
    )
    assert record.commit
    listed = set(_git(work, "ls-tree", "-r", "--name-only", record.commit).split("\n")) - {""}
    assert listed == {"src/a.py", "src/x/y.py", "src/x/z/w.py", "tests/test_a.py"}
    only_out = snapshot_repo(
        work, "01a2336e-0000-7000-8000-000000000001", exclude=["regex:(src|data)/.*"], publish=False
    )
    kept = set(_git(work, "ls-tree", "-r", "--name-only", only_out.commit or "").split("\n"))
    assert "top.py" in kept and "data2/x.csv" in kept
    assert not {p for p in kept if p.startswith(("src/", "data/"))}
