"""A confirmed huge batch is streamed: its first trial starts at once and only the trials that
run are ever drawn. Real tether.toml project, real `tether` process, real SIGINT from the first
trial (a stop that does not depend on --max-runs)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tether.ops.batch import MAX_TRIALS

# The trial interrupts the batch that runs it, as Ctrl-C would: the batch must stop after it.
PROJECT = """\
[ops.stop]
exec = ["python", "-c", "import os, signal, sys; print('lr', sys.argv[1], flush=True); \
os.kill(os.getppid(), signal.SIGINT)", "{lr}"]
[ops.stop.config]
lr = 0.1
C = 1
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "tether.toml").write_text(PROJECT)
    return proj


def _batch_json(runs_root: Path) -> dict:
    [table] = [p for p in runs_root.glob("*/batch.json")]
    return json.loads(table.read_text())


@pytest.mark.parametrize(
    "flags",
    [
        ["lr=uniform(0,1)", "--random", "--max-runs", "99999999"],
        ["lr=range(0,10000)", "C=range(0,10000)", "--max-runs", "99999999"],  # a grid
    ],
)
def test_a_huge_confirmed_batch_draws_only_the_trials_it_runs(
    project: Path, runs_root: Path, flags: list[str]
) -> None:
    proc = run_cli("run", "stop", *flags, "--yes", cwd=project)
    assert proc.returncode == 130, proc.stderr
    assert "batch stopped: 0 completed, 0 failed, 1 terminated, 99999998 not started" in (
        proc.stderr
    )
    table = _batch_json(runs_root)
    assert table["interrupted"] is True
    assert [t["status"] for t in table["trials"]] == ["terminated"]  # one drawn, not 10**8
    assert table["trials"][0]["index"] == 1


def test_the_same_batch_without_yes_is_refused_in_one_line(project: Path, runs_root: Path) -> None:
    proc = run_cli(
        "run", "stop", "lr=uniform(0,1)", "--random", "--max-runs", "99999999", cwd=project
    )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"above the limit of {MAX_TRIALS}" in lines[0], lines
    assert not runs_root.exists() or not list(runs_root.glob("*/batch.json"))


def test_a_streamed_batch_is_refused_on_an_executor(project: Path, runs_root: Path) -> None:
    proc = run_cli(
        "run",
        "stop",
        "lr=uniform(0,1)",
        "--random",
        "--max-runs",
        "99999999",
        "--yes",
        "--executor",
        "serial",
        cwd=project,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "runs in this process, one trial at a time" in lines[0], lines
    assert sys.executable  # the refusal comes before any run is made:
    assert not runs_root.exists() or not [p for p in runs_root.iterdir() if p.is_dir()]
