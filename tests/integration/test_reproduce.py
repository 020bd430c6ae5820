"""`tether reproduce` and `--needed` against a real git project and the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_cli
from tests.integration.test_snapshot import git, make_repo

SCRIPT = """
import json, pathlib, sys
import tether

@tether.experiment(config="conf.yaml", data=["data_file"], exclude=["data/"])
def main(cfg, run):
    text = pathlib.Path(cfg.data_file).read_text()
    score = len(text) * cfg.scale + {offset}
    run.log_metrics({{"score": score}})
    print("score", score)

if __name__ == "__main__":
    main()
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    repo = make_repo(
        tmp_path / "proj",
        {
            "train.py": SCRIPT.format(offset=0),
            "conf.yaml": "scale: 2\ndata_file: data/input.txt\nsave_dir: ???\n",
            ".gitignore": "data/\n",
        },
    )
    (repo / "data").mkdir()
    (repo / "data" / "input.txt").write_text("hello world")
    return repo


def train(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "train.py", *args], cwd=repo, capture_output=True, text=True
    )


def test_reproduce_uses_the_snapshot_and_verifies_data(project: Path):
    assert train(project, "scale=3").returncode == 0
    # The working tree moves on after the run: reproduce must use the snapshot, not this.
    (project / "train.py").write_text(SCRIPT.format(offset=1000))
    git(project, "commit", "-qam", "later change")
    proc = run_cli("reproduce", "1", "--json", cwd=project)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["identical"] and result["same_inputs"]
    assert result["metrics"] == [{"key": "score", "old": 33.0, "new": 33.0}]
    assert git(project, "worktree", "list").count("\n") == 0  # temporary worktree removed
    (project / "data" / "input.txt").write_text("changed data!")
    proc = run_cli("reproduce", "2", cwd=project)
    assert proc.returncode == 2
    assert "data of run" in proc.stderr and "data/input.txt" in proc.stderr
    assert "--force" in proc.stderr and "Traceback" not in proc.stderr
    forced = run_cli("reproduce", "2", "--force", "--json", cwd=project)
    assert forced.returncode == 1  # it ran, and the metrics differ
    assert json.loads(forced.stdout)["metrics"][0]["new"] == 39.0  # len 13 * 3


def test_needed_skips_a_completed_twin(project: Path):
    first = train(project)
    assert first.returncode == 0
    again = train(project, "--needed")
    assert again.returncode == 0
    assert "skipped" in again.stderr
    listing = json.loads(run_cli("runs", "--json", cwd=project, check=True).stdout)
    assert len(listing) == 1
    assert listing[0]["id"] in again.stderr
    # Other inputs: a new run.
    assert train(project, "scale=5", "--needed").returncode == 0
    (project / "data" / "input.txt").write_text("other data")
    assert train(project, "scale=5", "--needed").returncode == 0
    assert len(json.loads(run_cli("runs", "--json", cwd=project, check=True).stdout)) == 3
    lock = yaml.safe_load(
        (
            Path(json.loads(run_cli("show", "1", "--json", cwd=project).stdout)["dir"]) / "run.lock"
        ).read_text()
    )
    assert lock["data"][0]["key"] == "data_file" and lock["data"][0]["status"] == "done"
