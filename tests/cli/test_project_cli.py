"""`tether init`, `tether check` and `tether ops` through the real console script."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import tether
from tests.conftest import run_cli
from tether.project.parse import load_project


def test_init_then_check_round_trip(tmp_path: Path, runs_root: Path):
    proc = run_cli("init", cwd=tmp_path, check=True)
    assert proc.stdout == (
        "wrote tether.toml: edit [ops.train], then `tether check` and `tether ops`\n"
    )
    project = load_project(path=tmp_path / "tether.toml")
    assert project.warnings == []
    assert list(project.ops) == ["train"]
    assert project.ops["train"].defaults() == {"lr": 0.1, "epochs": 10}

    proc = run_cli("check", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert lines[0] == f"tether      {tether.__version__}"
    assert lines[1].startswith(f"python      {sys.version.split()[0]} (")
    assert lines[2].startswith("git         ")
    assert lines[3:] == [
        "project     tether.toml",
        f"project-id  {project.project_id}",
        "ops         1: train",
        f"runs root   {runs_root} (not made yet; the first run makes it)",
        "index       none yet (made by the first run)",
        "all good",
    ]

    report = json.loads(run_cli("check", "--json", cwd=tmp_path, check=True).stdout)
    assert report["ok"] is True
    assert report["tether"] == tether.__version__
    assert report["project"] == {
        "path": str((tmp_path / "tether.toml").resolve()),
        "valid": True,
        "project_id": project.project_id,
        "ops": ["train"],
        "errors": [],
        "warnings": [],
    }
    assert report["runs_root"] == {
        "path": str(runs_root),
        "exists": False,
        "writable": True,
        "problem": None,
    }
    assert report["index"]["exists"] is False


def test_init_refuses_to_overwrite_without_force(tmp_path: Path):
    run_cli("init", cwd=tmp_path, check=True)
    first = load_project(path=tmp_path / "tether.toml").project_id
    proc = run_cli("init", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == (
        f"tether: error: tether.toml already exists in {tmp_path}; "
        "use --force to write tether.toml anyway\n"
    )
    run_cli("init", "--force", cwd=tmp_path, check=True)
    assert load_project(path=tmp_path / "tether.toml").project_id != first


def test_init_refuses_when_another_project_file_is_there(tmp_path: Path):
    (tmp_path / "tether.yaml").write_text("ops: {}\n")
    proc = run_cli("init", cwd=tmp_path)
    assert proc.returncode == 2
    assert "tether.yaml already exists" in proc.stderr
    assert not (tmp_path / "tether.toml").exists()


BAD = """\
projct = 1

[ops.train]
exec = "python train.py"

[[ops.train.depends]]
type = "run-file"
op = "prepare"

[ops.prepare]
exce = "python prepare.py"
"""


def test_check_reports_every_problem_and_exits_2(tmp_path: Path):
    (tmp_path / "tether.toml").write_text(BAD)
    proc = run_cli("check", cwd=tmp_path)
    assert proc.returncode == 2
    assert "project     tether.toml (invalid: 3 problems)" in proc.stdout
    assert "all good" not in proc.stdout
    assert proc.stderr.splitlines() == [
        "tether: warning: tether.toml:1:1: projct: unknown top-level key, ignored; expected one "
        "of project-id, runs-dir, snapshot, secrets, ops, runs, remotes "
        "(did you mean 'project-id'?)",
        "tether: error: tether.toml:7:1: ops.train.depends[0].type: expected one of "
        "project-files, run-files, runs-summary, dvcfile, found 'run-file' "
        "(did you mean 'run-files'?)",
        "tether: error: tether.toml:11:1: ops.prepare.exce: unknown key; expected one of exec, "
        "description, config, sourcecode, depends, output-scalars, needed (did you mean 'exec'?)",
        "tether: error: tether.toml:10:1: ops.prepare: expected an 'exec' command, found none",
    ]
    report = json.loads(run_cli("check", "--json", cwd=tmp_path).stdout)
    assert report["ok"] is False and report["project"]["valid"] is False
    assert len(report["project"]["errors"]) == 3
    assert len(report["project"]["warnings"]) == 1

    # Other commands print the first problem and point at `tether check`.
    proc = run_cli("ops", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == (
        "tether: error: tether.toml:7:1: ops.train.depends[0].type: expected one of "
        "project-files, run-files, runs-summary, dvcfile, found 'run-file' "
        "(did you mean 'run-files'?); "
        "2 more problems: see `tether check`\n"
    )


def test_check_prints_warnings_and_works_from_a_subfolder(tmp_path: Path):
    (tmp_path / "tether.toml").write_text('projct = 1\n[ops.a]\nexec = "e"\n')
    sub = tmp_path / "src" / "pkg"
    sub.mkdir(parents=True)
    proc = run_cli("check", cwd=sub)
    assert proc.returncode == 0
    assert f"project     {tmp_path / 'tether.toml'}" in proc.stdout
    assert "project-id  none" in proc.stdout
    assert proc.stderr == (
        f"tether: warning: {tmp_path / 'tether.toml'}:1:1: projct: unknown top-level key, "
        "ignored; expected one of project-id, runs-dir, snapshot, secrets, ops, runs, remotes "
        "(did you mean 'project-id'?)\n"
    )


def test_check_without_a_project(tmp_path: Path):
    proc = run_cli("check", cwd=tmp_path)
    assert proc.returncode == 0
    assert "project     none (`tether init` writes a tether.toml)" in proc.stdout
    report = json.loads(run_cli("check", "--json", cwd=tmp_path).stdout)
    assert report["project"]["path"] is None and report["ok"] is True


def test_check_unusable_runs_root_exits_1(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    proc = run_cli("--runs-dir", str(blocker / "runs"), "check", cwd=tmp_path)
    assert proc.returncode == 1
    assert f"runs root   {blocker / 'runs'} (problem)" in proc.stdout
    assert proc.stderr == (
        f"tether: error: runs root {blocker / 'runs'} cannot be created ({blocker} is not a "
        "folder)\n"
    )
    proc = run_cli("--runs-dir", str(blocker), "check", "--json", cwd=tmp_path)
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["runs_root"]["problem"] == f"runs root {blocker} is not a folder"


def test_check_reports_index_health(tmp_path: Path, runs_root: Path):
    for lr in (0.1, 0.2):
        with tether.start_run({"lr": lr}, name="fit", snapshot=False):
            pass
    proc = run_cli("check", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"index       {runs_root / 'index.db'} (ok, 2 runs)" in proc.stdout
    assert f"runs root   {runs_root} (exists, writable)" in proc.stdout
    report = json.loads(run_cli("check", "--json", cwd=tmp_path).stdout)
    assert report["index"].pop("shared") is False  # a local disk: index.db in the runs root
    report["index"].pop("filesystem")  # ext4, overlay, ... whatever holds the test's folder
    assert report["index"] == {
        "path": str(runs_root / "index.db"),
        "exists": True,
        "state": "ok",
        "ok": True,
        "check": "ok",
        "runs": 2,
        "problem": None,
    }


def test_check_reports_a_damaged_index(tmp_path: Path, runs_root: Path):
    runs_root.mkdir()
    (runs_root / "index.db").write_bytes(b"this is not a database" * 100)
    proc = run_cli("check", cwd=tmp_path)
    assert proc.returncode == 1
    assert f"index       {runs_root / 'index.db'} (damaged)" in proc.stdout
    assert proc.stderr == (
        f"tether: error: index {runs_root / 'index.db'} is damaged (file is not a database); "
        "`tether runs reindex` rebuilds it from the run folders\n"
    )


OPS = (
    "[ops.prepare]\n"
    'exec = "python prepare.py"\n'
    "\n"
    "[ops.train]\n"
    'description = "Train the model"\n'
    'exec = "python train.py"\n'
    'config = ["conf/model.yaml", {lr = 0.1, optimizer = {default = "adam", '
    'choices = ["adam", "sgd"], description = "update rule"}}]\n'
)


def test_ops_lists_operations_and_flags(tmp_path: Path):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "model.yaml").write_text("model:\n  depth: 3\n  name: small\n")
    (tmp_path / "tether.toml").write_text(OPS)
    proc = run_cli("ops", cwd=tmp_path, check=True)
    assert proc.stderr == ""
    assert proc.stdout == (
        "prepare\n"
        "  (no flags)\n"
        "\n"
        "train    Train the model\n"
        "  model.depth=3       from conf/model.yaml\n"
        '  model.name="small"  from conf/model.yaml\n'
        "  lr=0.1\n"
        '  optimizer="adam"    update rule; one of "adam", "sgd"\n'
    )
    listed = json.loads(run_cli("ops", "--json", cwd=tmp_path, check=True).stdout)
    assert [op["name"] for op in listed] == ["prepare", "train"]
    train = listed[1]
    assert train["description"] == "Train the model"
    assert train["config_files"] == [str((tmp_path / "conf" / "model.yaml").resolve())]
    assert train["flags"][0] == {
        "name": "model.depth",
        "default": 3,
        "description": None,
        "choices": None,
        "source": "conf/model.yaml",
    }
    assert train["flags"][3]["choices"] == ["adam", "sgd"]


def test_ops_without_a_project(tmp_path: Path):
    proc = run_cli("ops", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("tether: error: no tether.toml, tether.yaml or tether.json in ")
