"""The project id: `tether runs --project ID|this`, `--where 'project = ...'`, and
`tether runs adopt --project-id ID RUNS` for runs moved with a project (an attrs event: run.lock
is never rewritten)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import run_cli

OLD = "0b5d3f0e-5a43-4d47-9a4f-1f3c3ad2e0a1"
NEW = "7d4c56c6-44e6-4a4c-9a0a-5b0b8f6c8f11"


def project_file(root: Path, pid: str | None) -> None:
    root.mkdir(parents=True, exist_ok=True)
    head = f'project-id = "{pid}"\n' if pid else ""
    (root / "tether.toml").write_text(head + '[ops.train]\nexec = "echo trained"\n')


def tether(*args: str, cwd: Path, runs: Path):
    return run_cli(
        *args, cwd=cwd, env={"NO_COLOR": "1", "COLUMNS": "200", "TETHER_RUNS": str(runs)}
    )


def ids(cwd: Path, runs: Path, *args: str) -> list[str]:
    proc = tether("runs", "--json", "--all", *args, cwd=cwd, runs=runs)
    assert proc.returncode == 0, proc.stderr
    return [r["id"] for r in json.loads(proc.stdout)]


@pytest.fixture
def two_projects(tmp_path: Path) -> tuple[Path, Path, Path, list[str]]:
    """Two projects sharing one runs root: a run of the old one, two of the new one."""
    runs = tmp_path / "runs"
    old, new = tmp_path / "old", tmp_path / "new"
    project_file(old, OLD.upper())  # run.lock records it as written; the index in one case
    project_file(new, NEW)
    made = []
    for cwd in (old, new, new):
        assert tether("run", "train", cwd=cwd, runs=runs).returncode == 0
        made.append(ids(cwd, runs)[0])
    return runs, old, new, made


def test_runs_of_one_project(two_projects):
    runs, old, new, made = two_projects
    assert ids(new, runs, "--project", "this") == [made[2], made[1]]
    assert ids(new, runs, "--project", OLD) == [made[0]]
    assert ids(new, runs, "--project", OLD.upper()) == [made[0]]  # a UUID in any case
    assert ids(old, runs, "--where", f"project = {NEW[:8]}") == [made[2], made[1]]
    assert ids(new, runs, "--project", "this", "--where", f"id = {made[1][:18]}") == [made[1]]
    shown = tether("runs", "--columns", "name,project", cwd=new, runs=runs).stdout
    assert shown.count(NEW) == 2 and shown.count(OLD) == 1


def test_adopt_moves_runs_to_another_project_without_touching_run_lock(two_projects):
    runs, _old, new, made = two_projects
    lock = (runs / made[0] / "run.lock").read_bytes()
    proc = tether("runs", "adopt", "--project-id", "this", made[0][:13], cwd=new, runs=runs)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith(f"(train): project {NEW} (was {OLD})\n")
    assert ids(new, runs, "--project", "this") == made[::-1]
    assert ids(new, runs, "--project", OLD) == []
    assert (runs / made[0] / "run.lock").read_bytes() == lock  # run.lock never changes
    again = tether("runs", "adopt", "--project-id", NEW, made[0][:13], cwd=new, runs=runs)
    assert again.stdout.endswith(f"(train): already in project {NEW}\n")
    # The index is a cache: rebuilt from the folders, the adoption still holds.
    (runs / "index.db").unlink()
    shutil.rmtree(runs.parent / "cache", ignore_errors=True)
    assert tether("runs", "reindex", cwd=new, runs=runs).returncode == 0
    assert ids(new, runs, "--project", "this") == made[::-1]
    # The latest adoption wins.
    assert (
        tether("runs", "adopt", "--project-id", OLD, made[0][:13], cwd=new, runs=runs).returncode
        == 0
    )
    assert ids(new, runs, "--project", OLD) == [made[0]]


@pytest.mark.parametrize(
    ("args", "pid", "message"),
    [
        (
            ["runs", "--project", "abc"],
            NEW,
            "--project: expected a project id (a UUID, as tether.toml's project-id) or 'this', "
            "found 'abc'",
        ),
        (
            ["runs", "adopt", "--project-id", "nope", "1"],
            NEW,
            "--project-id: expected a project id (a UUID, as tether.toml's project-id) or "
            "'this', found 'nope'",
        ),
        (["runs", "--project", "this", "--where", "op ="], NEW, None),
    ],
)
def test_bad_project_ids_are_one_line(tmp_path: Path, args, pid, message):
    project_file(tmp_path / "p", pid)
    proc = tether(*args, cwd=tmp_path / "p", runs=tmp_path / "runs")
    assert proc.returncode == 2
    if message is None:  # a mistake in --where points into what the user wrote
        assert proc.stderr.splitlines()[1:] == ["  op =", "      ^"]
    else:
        assert proc.stderr == f"tether: error: {message}\n"


def test_this_needs_a_project_id(tmp_path: Path):
    project_file(tmp_path / "p", None)
    proc = tether("runs", "--project", "this", cwd=tmp_path / "p", runs=tmp_path / "runs")
    assert proc.returncode == 2
    assert proc.stderr.startswith(
        'tether: error: --project this: tether.toml has no project-id; add project-id = "'
    )
    assert len(proc.stderr.splitlines()) == 1
    proc = tether("runs", "--project", "this", cwd=tmp_path, runs=tmp_path / "runs")
    assert proc.stderr == (
        "tether: error: --project this: no project file in this folder or a parent folder; "
        "give the project id itself, or run it inside the project\n"
    )
