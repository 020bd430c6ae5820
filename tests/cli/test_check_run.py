"""`tether check --run RUN` through the real console script, on runs made in a real git
project: a finished run re-verified against its manifest, its data digests, its snapshot ref and
its lock digest; one line per problem, exit 1 on drift, exit 2 on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_cli

TRAIN = """\
import pathlib

import tether


@tether.experiment(defaults={"lr": 0.1, "data": "data.csv"}, data=["data"])
def main(cfg, run):
    out = pathlib.Path(run.dir) / "out"
    out.mkdir()
    (out / "model.txt").write_text(f"weights for lr={cfg.lr}\\n")
    run.log_metrics({"loss": 0.5})


if __name__ == "__main__":
    main()
"""


def _git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)
    return proc.stdout.strip()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "train.py").write_text(TRAIN)
    (proj / "data.csv").write_text("x,y\n1,2\n")
    _git(proj, "init", "-q")
    _git(proj, "add", ".")
    _git(proj, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    return proj


def _train(project: Path) -> Path:
    proc = subprocess.run([sys.executable, "train.py"], cwd=project, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    [folder] = [p for p in (project.parent / "runs").iterdir() if (p / "run.lock").is_file()]
    return folder


def _check(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("check", "--run", *args, cwd=project)


def test_an_untouched_run_checks_clean(project: Path, runs_root: Path) -> None:
    folder = _train(project)
    lock = yaml.safe_load((folder / "run.lock").read_text())
    assert lock["sources"][0]["commit"], "the run must have a snapshot for this test"
    proc = _check(project, "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "files, data, snapshot refs and lock digest match" in proc.stdout


def test_a_modified_output_file_is_drift(project: Path, runs_root: Path) -> None:
    folder = _train(project)
    model = folder / "out" / "model.txt"
    model.write_text("weights for lr=0.2\n")  # the same size, other bytes
    os.utime(model, ns=(1, 1))  # and an old mtime: only the contents tell
    proc = _check(project, "1")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert [line for line in lines if line.startswith("modified: out/model.txt: ")], lines
    assert "1 problem found" in proc.stderr


def test_a_missing_snapshot_ref_is_drift(project: Path, runs_root: Path) -> None:
    folder = _train(project)
    run_id = json.loads((folder / "manifest.json").read_text())["run"]
    ref = f"refs/tether/snapshots/{run_id}"
    assert _git(project, "rev-parse", "--verify", ref)
    _git(project, "update-ref", "-d", ref)
    proc = _check(project, run_id[:15], "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is False
    assert report["problems"] == [
        {"kind": "snapshot", "subject": str(project), "detail": f"{ref} is missing"}
    ]


def test_missing_and_extra_files_changed_data_and_an_edited_lock(
    project: Path, runs_root: Path
) -> None:
    folder = _train(project)
    (folder / "out" / "model.txt").unlink()
    (folder / "notes.txt").write_text("added later\n")
    (project / "data.csv").write_text("x,y\n1,3\n")
    lock_path = folder / "run.lock"
    lock_path.write_text(lock_path.read_text().replace("lr: 0.1", "lr: 0.3"))
    proc = _check(project, "1")
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert "missing: out/model.txt: missing" in lines
    assert [x for x in lines if x.startswith("extra: notes.txt: not in the manifest")]
    assert [x for x in lines if x.startswith("data: data.csv: digest ")]
    assert [x for x in lines if x.startswith("modified: run.lock: ")]
    assert [x for x in lines if x.startswith("lock: run.lock: the run's identity changed")]


def test_labels_after_the_end_are_no_drift(project: Path, runs_root: Path) -> None:
    _train(project)
    assert run_cli("label", "1", "best", cwd=project).returncode == 0
    assert run_cli("tag", "1", "good", cwd=project).returncode == 0
    proc = _check(project, "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("spec", ["99", "nosuchrun", "99999999999999999999999"])
def test_a_bad_run_is_one_line_exit_2(project: Path, runs_root: Path, spec: str) -> None:
    _train(project)
    proc = _check(project, spec)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("tether: error:")


def test_an_edited_upstream_stage_is_drift_of_its_consumer(runs_root: Path) -> None:
    import tether

    with tether.start_run({"rows": 3}, name="prep", snapshot=False) as prep:
        pass
    with tether.start_run({}, name="train", snapshot=False, stages={"prep": None}) as train:
        pass
    assert run_cli("check", "--run", train.id).returncode == 0
    lock = prep.dir / "run.lock"
    lock.write_text(lock.read_text().replace("rows: 3", "rows: 4"))
    proc = run_cli("check", "--run", train.id)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert [
        x
        for x in proc.stdout.splitlines()
        if x.startswith(f"stage: prep: upstream run {prep.id[:13]} changed since")
    ]
