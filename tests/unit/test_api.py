import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

import tether
from tether.store import open_store


def read_state(run) -> dict:
    return json.loads((run.dir / "state.json").read_text())


def test_start_run_records_config_env_and_completion(tmp_path: Path):
    cfg = {"lr": 0.1, "save_dir": "???"}
    with tether.start_run(cfg, name="unit", snapshot=False) as run:
        assert read_state(run)["status"] == "running"
        print("hello from the run")
        run.log_metrics({"loss": 1.0}, step=0)
        run.log_metrics({"loss": 0.5}, step=1)
    lock = yaml.safe_load((run.dir / "run.lock").read_text())
    assert lock["config"]["lr"] == 0.1
    assert lock["config"]["save_dir"] == str(run.dir)
    assert run.cfg["save_dir"] == str(run.dir)
    assert cfg["save_dir"] == "???"  # the caller's config is left alone
    with tether.start_run(cfg, name="again", snapshot=False) as second:
        pass
    assert second.dir != run.dir
    for key in ("python", "platform", "host", "user", "packages_digest"):
        assert lock["env"][key]
    state = read_state(run)
    assert state["status"] == "completed" and state["exit_code"] == 0
    assert "hello from the run" in (run.dir / "output.log").read_text()
    summary = json.loads((run.dir / "summary.json").read_text())
    assert summary["metrics"]["loss"] == {"last": 0.5, "min": 0.5, "max": 1.0, "step": 1}
    row = next(r for r in open_store().list() if r.id == run.id)
    assert row.status == "completed" and row.metrics == {"loss": 0.5}


def test_exception_marks_failed_with_traceback(tmp_path: Path):
    with pytest.raises(ZeroDivisionError), tether.start_run({}, snapshot=False) as run:
        1 / 0  # noqa: B018
    state = read_state(run)
    assert state["status"] == "failed" and "ZeroDivisionError" in state["error"]
    assert "Traceback" in (run.dir / "output.log").read_text()


def test_keyboard_interrupt_marks_terminated():
    with pytest.raises(KeyboardInterrupt), tether.start_run({}, snapshot=False) as run:
        raise KeyboardInterrupt
    assert read_state(run)["status"] == "terminated"


def test_explicit_save_dir_is_the_run_folder(tmp_path: Path):
    out = tmp_path / "out"
    with tether.start_run({"save_dir": str(out)}, snapshot=False) as run:
        pass
    assert run.dir == out
    assert (out / "run.lock").is_file()


def test_experiment_from_python_with_kwargs(tmp_path: Path):
    conf = tmp_path / "c.yaml"
    conf.write_text("lr: 0.1\nsave_dir: ???\n")

    @tether.experiment(config=str(conf), snapshot=False)
    def train(cfg, run):
        return cfg.lr, run.dir

    lr, run_dir = train(lr=0.5)
    assert lr == 0.5
    lock = yaml.safe_load((run_dir / "run.lock").read_text())
    assert lock["name"] == "train" and lock["config"]["lr"] == 0.5


def test_snapshot_records_the_working_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    env = dict(
        os.environ,
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t",
    )

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True
        ).stdout.strip()

    git("init", "-q", "-b", "main")
    (repo / "a.py").write_text("print(1)\n")
    git("add", "a.py")
    git("commit", "-qm", "init")
    (repo / "a.py").write_text("print(2)\n")
    (repo / "new.py").write_text("x = 1\n")
    status_before = git("status", "--porcelain")
    monkeypatch.chdir(repo)
    with tether.start_run({}, name="snap") as run:
        pass
    source = yaml.safe_load((run.dir / "run.lock").read_text())["sources"][0]
    assert source["dirty"] is True and source["branch"] == "main"
    assert source["head"] == git("rev-parse", "HEAD")
    assert git("rev-parse", f"refs/tether/snapshots/{run.id}") == source["commit"]
    assert git("show", f"{source['commit']}:a.py") == "print(2)"
    assert git("show", f"{source['commit']}:new.py") == "x = 1"
    assert git("status", "--porcelain") == status_before
