"""Staging: which source files an op gets, and how its dependencies resolve."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import tether
from tether.globs import compile_glob, matches
from tether.ops.staging import (
    plan_staging,
    select_sources,
    snapshot_patterns,
    stage,
)
from tether.project.model import DependencyDef, OpDef, Project
from tether.store import Store


def rel(paths) -> list[str]:
    return sorted(p.dest for p in paths)


@pytest.mark.parametrize(
    ("pattern", "yes", "no"),
    [
        ("*.py", ["a.py", "src/b.py"], ["a.pyc", "a.py/x"]),
        ("src/*.py", ["src/a.py"], ["src/x/a.py", "a.py"]),
        ("src/**/*.py", ["src/a.py", "src/x/y/a.py"], ["a.py"]),
        ("/a.py", ["a.py"], ["x/a.py"]),
        ("data/", ["data/x.csv", "data/y/z"], ["data"]),
        ("conf/[ab].yaml", ["conf/a.yaml"], ["conf/c.yaml"]),
    ],
)
def test_globs(pattern: str, yes: list[str], no: list[str]):
    rx = compile_glob(pattern)
    assert all(rx.match(p) for p in yes), pattern
    assert not any(rx.match(p) for p in no), pattern


def test_a_folder_name_covers_what_is_inside():
    assert matches("data/raw/x.py", [compile_glob("data")])
    assert not matches("database.py", [compile_glob("data")])


def make_tree(root: Path) -> None:
    for name, text in {
        "train.py": "print(1)\n",
        "conf/model.yaml": "a: 1\n",
        "tether.toml": "",
        "notes.md": "",
        "lib/util.py": "",
        "lib/__pycache__/util.cpython-311.pyc": "",
        ".hidden/secret.py": "",
        "env1/pyvenv.cfg": "",
        "env1/lib/site.py": "",
        "runs/abc/run.py": "",
        "data/big.json": "",
    }.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_default_sources_outside_git(tmp_path: Path):
    make_tree(tmp_path)
    paths, warnings = select_sources(tmp_path, [], [tmp_path / "runs"])
    assert rel(paths) == [
        "conf/model.yaml",
        "data/big.json",
        "lib/util.py",
        "tether.toml",
        "train.py",
    ]
    assert warnings == []
    assert all(p.copy and p.origin == "sourcecode" for p in paths)


def test_sourcecode_globs_and_excludes(tmp_path: Path):
    make_tree(tmp_path)
    paths, warnings = select_sources(
        tmp_path, ["*.py", "conf/", "-lib", "*.nothing"], [tmp_path / "runs"]
    )
    assert rel(paths) == ["conf/model.yaml", "train.py"]
    assert warnings == [f"sourcecode: '*.nothing' matches no file under {tmp_path}"]


def test_large_files_and_record_names_are_left_out(tmp_path: Path):
    (tmp_path / "big.txt").write_bytes(b"x" * (9 * 1024 * 1024))
    (tmp_path / "summary.json").write_text("{}")
    (tmp_path / "ok.py").write_text("")
    paths, warnings = select_sources(tmp_path, [], [])
    assert rel(paths) == ["ok.py"]
    assert warnings == [
        "sourcecode: big.txt not staged (9 MiB; source files above 8 MiB are left out: "
        "declare it as a project-files dependency)",
        "sourcecode: summary.json not staged (the name is a run record file)",
    ]


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_in_git_the_gitignore_applies(tmp_path: Path):
    make_tree(tmp_path)
    (tmp_path / ".gitignore").write_text("conf/\n")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    paths, _ = select_sources(tmp_path, [], [tmp_path / "runs"])
    assert rel(paths) == ["data/big.json", "lib/util.py", "tether.toml", "train.py"]


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_snapshot_patterns_move_to_the_repository_top(tmp_path: Path):
    sub = tmp_path / "proj"
    sub.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    assert snapshot_patterns(sub, ["*.py", "src/a.py", "-/data"]) == (
        ["/proj/**/*.py", "/proj/src/a.py"],
        ["/proj/data"],
    )
    assert snapshot_patterns(tmp_path, ["*.py"]) == (["*.py"], [])
    assert snapshot_patterns(sub, []) == ([], [])


# -- dependencies -----------------------------------------------------------------------------
def project_with(tmp_path: Path, *depends: DependencyDef, sourcecode: list[str] | None = None):
    op = OpDef("train", "python train.py", sourcecode=sourcecode or ["*.py"], depends=list(depends))
    project = Project(tmp_path / "tether.toml", ops={"train": op})
    (tmp_path / "tether.toml").write_text("")
    (tmp_path / "train.py").write_text("")
    return project, op, Store(tmp_path / "runs")


def dep(type_: str, i: int = 0, **kw) -> DependencyDef:
    return DependencyDef(type_, key_path=f"ops.train.depends[{i}]", **kw)


def test_project_files_are_linked_and_hashed(tmp_path: Path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data/a.csv").write_text("1\n")
    (tmp_path / "data/b.csv").write_text("2\n")
    (tmp_path / "labels.txt").write_text("x\n")
    project, op, store = project_with(
        tmp_path,
        dep("project-files", files=["data/*.csv"]),
        dep("project-files", 1, files=["labels.txt"], target="inputs"),
    )
    staging = plan_staging(project, op, store)
    assert staging.errors() == []
    assert [(p.dest, p.copy) for p in staging.paths] == [
        ("train.py", True),
        ("data/a.csv", False),
        ("data/b.csv", False),
        ("inputs/labels.txt", False),
    ]
    assert staging.data_paths == ["data/a.csv", "data/b.csv", "labels.txt"]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    stage(staging, run_dir, store)
    assert os.readlink(run_dir / "inputs/labels.txt") == str(tmp_path / "labels.txt")
    assert (run_dir / "data/a.csv").read_text() == "1\n"
    assert not (run_dir / "train.py").is_symlink()
    assert (run_dir / ".tether-staged").read_text().splitlines() == [
        "train.py",
        "data/a.csv",
        "data/b.csv",
        "inputs/labels.txt",
    ]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (["nope.csv"], "ops.train.depends[0]: project file 'nope.csv' does not exist in {root}"),
        (
            ["data/*.parquet"],
            "ops.train.depends[0]: project file 'data/*.parquet' matches no file in {root}",
        ),
        ([], "ops.train.depends[0].files: project-files needs at least one path or glob"),
    ],
)
def test_project_files_errors(tmp_path: Path, files: list[str], message: str):
    project, op, store = project_with(tmp_path, dep("project-files", files=files))
    errors = plan_staging(project, op, store).errors()
    assert [str(e) for e in errors] == [message.format(root=tmp_path)]


def test_bad_target_and_type(tmp_path: Path):
    project, op, store = project_with(
        tmp_path,
        dep("project-files", files=["train.py"], target="../x"),
        dep("run-file", 1, op="x"),
    )
    assert [str(e) for e in plan_staging(project, op, store).errors()] == [
        "ops.train.depends[0].target: '../x' must be a folder inside the run folder",
        "ops.train.depends[1].type: unknown dependency type 'run-file'; expected one of: "
        "project-files, run-files, runs-summary, dvcfile",
    ]


def make_upstream(runs: Path, name: str, files: dict[str, str], **config) -> str:
    with tether.start_run(dict(config), name=name, runs_dir=runs, snapshot=False) as run:
        for path, text in files.items():
            (run.dir / path).parent.mkdir(parents=True, exist_ok=True)
            (run.dir / path).write_text(text)
        return run.id


def test_run_files_select_the_latest_completed_run(tmp_path: Path):
    project, op, store = project_with(tmp_path, dep("run-files", op="prepare"))
    assert [str(e) for e in plan_staging(project, op, store).errors()] == [
        "ops.train.depends[0]: no completed run of op 'prepare' (run it first: tether run prepare)"
    ]
    old = make_upstream(store.root, "prepare", {"split.npz": "old"}, size=1)
    new = make_upstream(store.root, "prepare", {"split.npz": "new", "sub/x.txt": "x"}, size=2)
    with (
        pytest.raises(RuntimeError),
        tether.start_run({}, name="prepare", runs_dir=store.root, snapshot=False),
    ):
        raise RuntimeError("a failed run is never selected")
    staging = plan_staging(project, op, store)
    assert staging.errors() == []
    assert staging.stage_runs == {"prepare": new}
    paths = staging.deps[0].paths
    assert [p.dest for p in paths] == ["split.npz", "sub"]  # not run.lock, summary.json, ...
    assert staging.data_paths == [
        str(store.root / new / "split.npz"),
        str(store.root / new / "sub"),
    ]
    assert old != new


def test_run_files_where_and_file_globs(tmp_path: Path):
    project, op, store = project_with(
        tmp_path,
        dep("run-files", op="prepare", where="config.size = 1", files=["*.npz"], name="data"),
    )
    old = make_upstream(store.root, "prepare", {"split.npz": "old", "log.txt": ""}, size=1)
    make_upstream(store.root, "prepare", {"split.npz": "new"}, size=2)
    staging = plan_staging(project, op, store)
    assert staging.stage_runs == {"data": old}
    assert [p.dest for p in staging.paths if not p.copy] == ["split.npz"]


def test_run_files_errors(tmp_path: Path):
    project, op, store = project_with(
        tmp_path,
        dep("run-files", op="prepare", files=["model.pkl"]),
        dep("run-files", 1, op="prepare", where="config.size >"),
        dep("run-files", 2, op="prepare", where="config.size = 5"),
    )
    rid = make_upstream(store.root, "prepare", {"split.npz": ""}, size=1)
    messages = [str(e) for e in plan_staging(project, op, store).errors()]
    assert messages[0] == (
        f"ops.train.depends[0]: 'model.pkl' not found in run {rid[:13]} (prepare); "
        "its files: split.npz"
    )
    assert messages[1].startswith(
        "ops.train.depends[1].where: invalid where expression at column 14: expected a value"
    )
    assert messages[2] == (
        "ops.train.depends[2]: no completed run of op 'prepare' matching 'config.size = 5' "
        "(run it first: tether run prepare)"
    )


def test_runs_summary_and_conflicts(tmp_path: Path):
    project, op, store = project_with(
        tmp_path,
        dep("runs-summary", op="prepare"),
        dep("project-files", 1, files=["train.py"]),
        dep("project-files", 2, files=["tether.toml"], target="."),
        dep("run-files", 3, op="prepare", files=["train.py"]),
    )
    make_upstream(store.root, "prepare", {"train.py": "other"}, size=1)
    make_upstream(store.root, "prepare", {"train.py": "other"}, size=2)
    staging = plan_staging(project, op, store)
    # The project file linked by a dependency wins over the source copy of the same file.
    assert [p.dest for p in staging.sources] == []
    assert [str(e) for e in staging.errors()] == [
        "ops.train.depends[3]: train.py is staged twice (ops.train.depends[1] and "
        "ops.train.depends[3])"
    ]
    assert staging.deps[0].summary_file == "runs-summary.json"
    assert len(staging.deps[0].upstream) == 2
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    staging.deps[3].paths = []
    stage(staging, run_dir, store)
    import json

    summary = json.loads((run_dir / "runs-summary.json").read_text())
    assert [s["config"]["size"] for s in summary] == [2, 1]
    assert {"id", "name", "status", "metrics", "config", "dir"} <= set(summary[0])
