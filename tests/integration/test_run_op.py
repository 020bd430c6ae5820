"""`tether run OP`: real tether.toml projects, real `tether` processes, real run folders."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, run_cli

TETHER = str(Path(sys.executable).parent / "tether")

PROJECT = """\
project-id = "0b5d3f0e-5a43-4d47-9a4f-1f3c3ad2e0a1"

[ops.prepare]
exec = "python prepare.py {rows}"
sourcecode = ["prepare.py"]
[ops.prepare.config]
rows = 3

[ops.train]
description = "train on the prepared rows"
exec = "python train.py --lr {lr} --epochs {epochs}"
depends = [
  "run-files: op=prepare",
  { type = "project-files", files = ["data/labels.txt"] },
]
[ops.train.config]
lr = 0.1
epochs = 2

[ops.report]
exec = "cat in/rows.txt"

[[ops.report.depends]]
type = "runs-summary"
op = "prepare"
name = "history"

[[ops.report.depends]]
type = "run-files"
op = "prepare"
where = "config.rows = 2"
name = "data"
files = ["rows.txt"]
target = "in"

[ops.fail]
exec = ["python", "-c", "import sys; print('loss: 2.5'); sys.exit({code})"]
[ops.fail.config]
code = 3

[ops.sleep]
exec = "python -c 'import time; print(\\"sleeping\\", flush=True); time.sleep(60)'"
[ops.sleep.config]
n = 1
"""

PREPARE = """\
import sys
rows = int(sys.argv[1])
with open("rows.txt", "w") as fh:
    fh.write("".join(f"{i}\\n" for i in range(rows)))
print(f"rows: {rows}")
"""

TRAIN = """\
import argparse, os
p = argparse.ArgumentParser()
p.add_argument("--lr", type=float)
p.add_argument("--epochs", type=int)
a = p.parse_args()
rows = open("rows.txt").read().split()
labels = open("data/labels.txt").read().split()
assert os.getcwd() == os.environ["TETHER_RUN_DIR"], (os.getcwd(), os.environ["TETHER_RUN_DIR"])
print("run id", os.environ["TETHER_RUN_ID"])
for epoch in range(1, a.epochs + 1):
    print(f"step: {epoch}  loss: {a.lr / epoch:.4f}  acc={0.5 + epoch / 10:.2f}")
with open("model.txt", "w") as fh:
    fh.write(f"lr={a.lr} rows={len(rows)} labels={len(labels)}\\n")
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "data").mkdir(parents=True)
    (root / "tether.toml").write_text(PROJECT)
    (root / "prepare.py").write_text(PREPARE)
    (root / "train.py").write_text(TRAIN)
    (root / "data/labels.txt").write_text("a\nb\n")
    return root


def tether(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, cwd=cwd, env={"NO_COLOR": "1", "COLUMNS": "200", **env})


def listing(cwd: Path) -> list[dict[str, Any]]:
    return json.loads(tether("runs", "--json", "--all", cwd=cwd).stdout)


def lock_of(row: dict[str, Any]) -> dict[str, Any]:
    return yaml.safe_load((Path(row["dir"]) / "run.lock").read_text())


def state_of(row: dict[str, Any]) -> dict[str, Any]:
    return json.loads((Path(row["dir"]) / "state.json").read_text())


def test_unknown_op_and_flag(project: Path):
    proc = tether("run", "trian", cwd=project)
    assert proc.returncode == 2
    assert proc.stderr == (
        "tether: error: no operation 'trian' in tether.toml (did you mean 'train'?); "
        "operations: fail, prepare, report, sleep, train\n"
    )
    proc = tether("run", "train", "lrr=0.1", cwd=project)
    assert proc.returncode == 2
    assert proc.stderr == (
        "tether: error: unknown flag 'lrr' (did you mean 'lr'?); flags of op 'train': epochs, lr\n"
    )
    proc = tether("run", "train", "lr=abc", cwd=project)
    assert proc.stderr == (
        "tether: error: flag 'lr' of op 'train' expects a number (default 0.1), got 'abc'\n"
    )
    assert listing(project) == []


def test_missing_upstream_is_an_error_and_preview_shows_it(project: Path):
    proc = tether("run", "train", cwd=project)
    assert proc.returncode == 2
    assert proc.stderr == (
        "tether: error: ops.train.depends[0]: no completed run of op 'prepare' "
        "(run it first: tether run prepare)\n"
    )
    proc = tether("run", "train", "--preview", cwd=project)
    assert proc.returncode == 2
    assert "    error: ops.train.depends[0]: no completed run of op 'prepare'" in proc.stdout
    assert listing(project) == []


def test_preview_runs_nothing(project: Path):
    tether("run", "prepare", cwd=project).check_returncode()
    prepare = listing(project)[0]
    proc = tether("run", "train", "lr=0.5", "--preview", cwd=project)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "op: train  (tether.toml)\n  train on the prepared rows\n" in out
    assert "command: python train.py --lr 0.5 --epochs 2\n" in out
    assert "config:\n  lr: 0.5\n  epochs: 2\n" in out
    assert "sources: 3 files copied\n  prepare.py\n  tether.toml\n  train.py\n" in out
    assert "  ops.train.depends[0]: run-files op=prepare\n" in out
    assert f"    upstream: run {prepare['id'][:13]} (prepare, completed) as stage prepare\n" in out
    assert f"    link rows.txt -> {prepare['dir']}/rows.txt\n" in out
    assert f"    link data/labels.txt -> {project}/data/labels.txt\n" in out
    assert out.endswith("nothing was run (--preview)\n")
    batch = tether("run", "train", "lr=[0.1,0.2]", "epochs=range(1,3)", "--preview", cwd=project)
    assert "batch: 4 trials (grid), each a run of its own\n" in batch.stdout
    assert "    1  lr=0.1 epochs=1\n" in batch.stdout
    assert "    4  lr=0.2 epochs=2\n" in batch.stdout
    assert len(listing(project)) == 1


def test_run_stages_inputs_records_digests_lineage_and_scalars(project: Path):
    from tether.capture.datahash import hash_data

    proc = tether("run", "prepare", "rows=4", "--label", "first", cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "rows: 4\n"
    proc = tether("run", "train", "lr=0.5", "--tag", "smoke", cwd=project)
    assert proc.returncode == 0, proc.stderr
    train, prepare = listing(project)
    assert (train["name"], train["status"], prepare["status"]) == (
        "train",
        "completed",
        "completed",
    )
    assert prepare["label"] == "first" and train["tags"] == ["smoke"]
    run_dir = Path(train["dir"])
    assert f"run id {train['id']}" in proc.stdout
    # Staged: source copied, upstream output and project file linked (hard links once the run
    # has ended: ops.staging.settle).
    assert (run_dir / "train.py").read_text() == TRAIN and not (run_dir / "train.py").is_symlink()
    assert os.path.samefile(run_dir / "rows.txt", Path(prepare["dir"]) / "rows.txt")
    assert os.path.samefile(run_dir / "data/labels.txt", project / "data/labels.txt")
    assert (run_dir / "model.txt").read_text() == "lr=0.5 rows=4 labels=2\n"
    lock = lock_of(train)
    assert lock["command"] == ["tether", "run", "train", "lr=0.5"]
    assert lock["config"]["lr"] == 0.5 and lock["config"]["epochs"] == 2
    assert lock["project_id"] == "0b5d3f0e-5a43-4d47-9a4f-1f3c3ad2e0a1"
    assert lock["stages"] == [
        {"name": "prepare", "run": prepare["id"], "lock_digest": lock["stages"][0]["lock_digest"]}
    ]
    data = {d["path"]: d for d in lock["data"]}
    upstream_file = str(Path(prepare["dir"]) / "rows.txt")
    assert set(data) == {upstream_file, "data/labels.txt"}
    assert data["data/labels.txt"]["digest"] == hash_data([project / "data/labels.txt"])[0].digest
    assert data[upstream_file]["digest"] == hash_data([upstream_file])[0].digest
    assert all(d["algo"] == "blake3" and d["status"] == "done" for d in data.values())
    # Scalars with their step, into metrics.jsonl and summary.json.
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["metrics"]["loss"] == {"last": 0.25, "min": 0.25, "max": 0.5, "step": 2}
    assert summary["metrics"]["acc"]["last"] == 0.7
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["loss"]) for r in rows] == [(1, 0.5), (2, 0.25)]
    log = (run_dir / "output.log").read_text().splitlines()
    assert log[0].endswith(" $ python train.py --lr 0.5 --epochs 2")
    assert log[-1].endswith(" step: 2  loss: 0.2500  acc=0.70")
    lineage = tether("lineage", "1", cwd=project)
    assert lineage.returncode == 0, lineage.stderr
    assert "train  completed" in lineage.stdout
    assert "prepare  completed  as prepare" in lineage.stdout
    assert train["metrics"]["loss"] == 0.25


def test_where_and_stage_name_select_and_record_the_upstream(project: Path):
    for rows in ("2", "3"):
        tether("run", "prepare", f"rows={rows}", cwd=project).check_returncode()
    proc = tether("run", "report", cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "0\n1\n"
    report, newest, chosen = listing(project)
    assert lock_of(chosen)["config"]["rows"] == 2
    lock = lock_of(report)
    assert [(s["name"], s["run"]) for s in lock["stages"]] == [("data", chosen["id"])]
    assert [d["path"] for d in lock["data"]] == [str(Path(chosen["dir"]) / "rows.txt")]
    run_dir = Path(report["dir"])
    assert os.path.samefile(run_dir / "in/rows.txt", Path(chosen["dir"]) / "rows.txt")
    history = json.loads((run_dir / "history.json").read_text())
    assert [h["config"]["rows"] for h in history] == [3, 2]
    assert "prepare  completed  as data" in tether("lineage", "1", cwd=project).stdout
    down = tether("lineage", chosen["id"], "--down", cwd=project).stdout
    assert "report" in down
    assert tether("lineage", newest["id"], "--down", cwd=project).stdout.count("report") == 0


def test_exit_code_propagates_and_the_run_is_failed(project: Path):
    proc = tether("run", "fail", "code=7", cwd=project)
    assert proc.returncode == 7
    assert proc.stdout == "loss: 2.5\n"
    assert proc.stderr.endswith("failed (exit 7)\n")
    (row,) = listing(project)
    assert row["status"] == "failed"
    state = state_of(row)
    assert state["exit_code"] == 7
    assert (
        json.loads((Path(row["dir"]) / "summary.json").read_text())["metrics"]["loss"]["last"]
        == 2.5
    )


def test_grid_batch_makes_a_parent_and_four_trials(project: Path):
    tether("run", "prepare", cwd=project).check_returncode()
    proc = tether("run", "train", "lr=[0.1,0.2]", "epochs=range(1,3)", "--tag", "grid", cwd=project)
    assert proc.returncode == 0, proc.stderr
    rows = listing(project)
    batch = next(r for r in rows if r["name"] == "train+batch")
    trials = [r for r in rows if r["name"] == "train"]
    assert len(trials) == 4 and len(rows) == 6
    assert {r["parent"] for r in trials} == {batch["id"]}
    assert {r["status"] for r in trials} == {"completed"} and batch["status"] == "completed"
    assert all(r["tags"] == ["grid"] for r in [*trials, batch])
    configs = sorted((lock_of(r)["config"]["lr"], lock_of(r)["config"]["epochs"]) for r in trials)
    assert configs == [(0.1, 1), (0.1, 2), (0.2, 1), (0.2, 2)]
    lock = lock_of(batch)
    assert lock["config"]["mode"] == "grid" and lock["config"]["trials"] == 4
    assert lock["config"]["flags"] == {"lr": "[0.1,0.2]", "epochs": "range(1,3)"}
    assert lock["command"][:3] == ["tether", "run", "train"]
    table = json.loads((Path(batch["dir"]) / "batch.json").read_text())
    assert [t["status"] for t in table["trials"]] == ["completed"] * 4
    assert [t["flags"] for t in table["trials"]] == [
        {"lr": 0.1, "epochs": 1},
        {"lr": 0.1, "epochs": 2},
        {"lr": 0.2, "epochs": 1},
        {"lr": 0.2, "epochs": 2},
    ]
    assert {t["run"] for t in table["trials"]} == {r["id"] for r in trials}
    assert "[1/4] lr=0.1 epochs=1" in proc.stderr and "batch done: 4 completed" in proc.stderr
    assert batch["metrics"]["completed"] == 4


def test_batch_with_a_failing_trial_exits_non_zero(project: Path):
    proc = tether("run", "fail", "code=[0,5]", cwd=project)
    assert proc.returncode == 1
    rows = listing(project)
    batch = next(r for r in rows if r["name"] == "fail+batch")
    assert batch["status"] == "failed"
    assert sorted(r["status"] for r in rows if r["name"] == "fail") == ["completed", "failed"]
    assert "batch done: 1 completed, 1 failed" in proc.stderr


def test_batch_file_with_a_bad_row(project: Path):
    (project / "batch.csv").write_text("lr,epochs\n0.1,1\n0.2,2\nfast,3\n")
    proc = tether("run", "train", "--batch", "batch.csv", cwd=project)
    assert proc.returncode == 2
    assert proc.stderr == (
        "tether: error: batch.csv row 3: flag 'lr' of op 'train' expects a number "
        "(default 0.1), got 'fast'\n"
    )
    (project / "batch.csv").write_text("lr,lrr\n0.1,\n0.2,\n0.3,1\n")
    proc = tether("run", "train", "--batch", "batch.csv", cwd=project)
    assert proc.stderr == (
        "tether: error: batch.csv row 3: unknown flag 'lrr' (did you mean 'lr'?); "
        "flags of op 'train': epochs, lr\n"
    )
    assert listing(project) == []


def test_batch_file_rows_run_as_trials(project: Path):
    tether("run", "prepare", cwd=project).check_returncode()
    (project / "rows.yaml").write_text("- {lr: 1e-3}\n- {lr: 0.5, epochs: 1}\n")
    proc = tether("run", "train", "--batch", "rows.yaml", cwd=project)
    assert proc.returncode == 0, proc.stderr
    trials = [r for r in listing(project) if r["name"] == "train"]
    assert sorted((lock_of(r)["config"]["lr"], lock_of(r)["config"]["epochs"]) for r in trials) == [
        (0.001, 2),
        (0.5, 1),
    ]


def test_needed_skips_a_run_with_the_same_inputs(project: Path):
    first = tether("run", "prepare", "--needed", cwd=project)
    assert first.returncode == 0, first.stderr
    again = tether("run", "prepare", "--needed", cwd=project)
    assert again.returncode == 0, again.stderr
    (row,) = listing(project)
    assert again.stderr == (
        f"tether: skipped: run {row['id'][:13]} already completed with the same config, code "
        "and data (--needed)\n"
    )
    assert again.stdout == ""
    other = tether("run", "prepare", "rows=5", "--needed", cwd=project)
    assert other.returncode == 0
    assert len(listing(project)) == 2


def test_ctrl_c_stops_a_batch_cleanly(project: Path):
    env = dict(os.environ, NO_COLOR="1")
    proc = subprocess.Popen(
        [TETHER, "run", "sleep", "n=[1,2,3]", "-y"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    line = proc.stdout.readline()
    while "sleeping" not in line and time.monotonic() < deadline:
        line = proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "batch stopped: 0 completed, 0 failed, 1 terminated, 2 not started" in err
    rows = listing(project)
    batch = next(r for r in rows if r["name"] == "sleep+batch")
    (trial,) = [r for r in rows if r["name"] == "sleep"]
    assert batch["status"] == "terminated" and trial["status"] == "terminated"
    table = json.loads((Path(batch["dir"]) / "batch.json").read_text())
    assert table["interrupted"] is True
    assert [t["status"] for t in table["trials"]] == ["terminated", "not started", "not started"]
    assert table["trials"][0]["run"] == trial["id"]
    assert state_of(trial)["exit_code"] == 130
    assert batch["metrics"]["not_started"] == 2


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_the_pipeline_example(tmp_path: Path):
    """examples/pipeline in a git repository: prepare -> train -> evaluate, with lineage."""
    root = tmp_path / "repo"
    shutil.copytree(ROOT / "examples/pipeline", root, ignore=shutil.ignore_patterns(".tether"))
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    for args in (["prepare"], ["train", "epochs=2"], ["evaluate"]):
        proc = tether("run", *args, cwd=root)
        assert proc.returncode == 0, proc.stderr
    evaluate, train, prepare = listing(root)
    assert evaluate["metrics"]["test_accuracy"] > 0.9
    assert train["metrics"]["accuracy"] > 0.9
    assert (
        json.loads((Path(train["dir"]) / "summary.json").read_text())["metrics"]["accuracy"]["step"]
        == 2
    )
    assert lock_of(evaluate)["stages"][0]["run"] == train["id"]
    assert lock_of(train)["stages"][0]["run"] == prepare["id"]
    assert lock_of(train)["sources"][0]["commit"]  # a git snapshot
    lineage = tether("lineage", "1", cwd=root).stdout
    assert "as train" in lineage and "as prepare" in lineage


RESUME_PROJECT = """\
[ops.train]
exec = "python train.py {steps}"
sourcecode = ["train.py"]
output-scalars = false
[ops.train.config]
steps = 10
"""

RESUME = """\
import json, os, sys
from pathlib import Path
import tether

steps = int(sys.argv[1])
ckpt = Path("ckpt.json")  # in the run folder: the run's own
start = json.loads(ckpt.read_text())["next"] if ckpt.exists() else 0
history = tether.History()
print(f"from step {start}; history starts at {history.start_step}", flush=True)
for step in range(start, steps):
    history.update({"loss": 1 / (step + 1)}, step=step)
    if step % 4 == 3:
        ckpt.write_text(json.dumps({"next": step + 1}))
    if step == 6 and not Path(os.environ["TETHER_PROJECT_DIR"], "go-on").exists():
        sys.exit(3)  # the first attempt dies after step 6; its checkpoint says 4
"""


def test_restart_continues_the_run_in_its_folder(tmp_path: Path):
    """`tether run --restart RUN`: the same run id and folder, one more attempt; the script's
    History resumes after the last recorded step, so every step is in metrics.jsonl once."""
    root = tmp_path / "proj"
    root.mkdir()
    (root / "tether.toml").write_text(RESUME_PROJECT)
    (root / "train.py").write_text(RESUME)
    first = tether("run", "train", cwd=root)
    assert first.returncode == 3, first.stderr
    (row,) = listing(root)
    assert row["status"] == "failed"
    (root / "train.py").write_text("raise SystemExit('the project changed since')\n")
    (root / "go-on").write_text("")
    again = tether("run", "--restart", row["id"][:13], cwd=root)
    assert again.returncode == 0, again.stderr
    assert f"run {row['id'][:13]} (train): attempt 2" in again.stderr
    assert again.stdout == "from step 4; history starts at 7\n"  # its own copy of train.py ran
    (after,) = listing(root)
    assert after["id"] == row["id"] and after["status"] == "completed"
    rows = [json.loads(line) for line in (Path(row["dir"]) / "metrics.jsonl").open()]
    assert [r["step"] for r in rows] == list(range(10))  # 4, 5 and 6 logged twice, kept once
    state = state_of(after)
    assert [(a["status"], a["exit_code"]) for a in state["attempts"]] == [
        ("failed", 3),
        ("completed", 0),
    ]
    assert state["started"] == state["attempts"][0]["start"]
    shown = tether("show", row["id"], cwd=root).stdout
    attempts = shown[shown.index("attempts") :].splitlines()[1:3]
    assert attempts[0].startswith("1  ") and "failed  exit 3  SystemExit(3)" in attempts[0]
    assert attempts[1].startswith("2  ") and "completed  exit 0" in attempts[1]
    log = (Path(row["dir"]) / "output.log").read_text()
    assert "from step 0" in log and "from step 4" in log  # both attempts' output, in order
    # What --restart refuses, each in one line (exit 2).
    done = tether("run", "--restart", row["id"], cwd=root)
    assert done.returncode == 2 and "completed: there is nothing to continue" in done.stderr
    flags = tether("run", "--restart", row["id"], "steps=3", cwd=root)
    assert flags.returncode == 2 and "with the flags it recorded" in flags.stderr
    assert "Traceback" not in done.stderr + flags.stderr


def test_an_op_run_holding_the_project_file_is_purged_and_rolled_up(project: Path):
    # The staged sources hold tether.toml: the folder is still tether's own run folder (its
    # marker says so), not a project root, so the roll-up reads it and purge deletes it.
    proc = tether("run", "fail", "code=0", cwd=project)  # no sourcecode: the project is copied
    assert proc.returncode == 0, proc.stderr
    assert "roll-up" not in proc.stderr
    (row,) = listing(project)
    run_dir = Path(row["dir"])
    assert (run_dir / "tether.toml").is_file()
    tether("delete", row["id"], "-y", cwd=project).check_returncode()
    proc = tether("purge", "--all", "-y", cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert not run_dir.exists()
    assert (project / "tether.toml").read_text() == PROJECT
