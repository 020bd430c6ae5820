"""`tether push|pull|sync|checkout` through a plain-folder remote: two stores, two clones."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import BIN, run_cli
from tests.integration._support import wait_for
from tests.integration.test_snapshot import git, make_repo

SCRIPT = """
import json, pathlib, sys, time
import tether

@tether.experiment(config="conf.yaml", data=["data_file"], exclude=["data/"])
def main(cfg, run):
    text = pathlib.Path(cfg.data_file).read_text()
    score = len(text) * cfg.scale
    run.log_metrics({"score": score})
    while cfg.wait and not pathlib.Path(cfg.wait).exists():  # held running by the test
        time.sleep(0.02)
    run.log_metrics({"score": score + 1})
    if cfg.big:
        (pathlib.Path(run.dir) / "big.bin").write_bytes(b"x" * cfg.big)

if __name__ == "__main__":
    main()
"""


CONF = "scale: 2\ndata_file: data/input.txt\nbig: 0\nwait: ''\nsave_dir: ???\n"


class Side:
    """One machine: a clone of the project and its own runs root."""

    def __init__(self, repo: Path, runs: Path, home: Path) -> None:
        self.repo, self.runs, self.home = repo, runs, home

    def env(self) -> dict[str, str]:
        return {"TETHER_RUNS": str(self.runs), "XDG_CONFIG_HOME": str(self.home)}

    def tether(self, *args: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
        proc = run_cli(*args, cwd=self.repo, env=self.env())
        assert proc.returncode in ok, f"tether {' '.join(args)}: {proc.returncode}\n{proc.stderr}"
        return proc

    def json(self, *args: str, ok: tuple[int, ...] = (0,)) -> object:
        return json.loads(self.tether(*args, "--json", ok=ok).stdout)

    def train(self, *overrides: str) -> None:
        env = {**os.environ, **self.env()}
        proc = subprocess.run(
            [sys.executable, "train.py", *overrides],
            cwd=self.repo,
            env=env,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr


@pytest.fixture
def sides(tmp_path: Path) -> tuple[Side, Side, Path]:
    origin = make_repo(
        tmp_path / "a",
        {
            "train.py": SCRIPT,
            "conf.yaml": CONF,
            ".gitignore": "data/\n",
            "tether.toml": 'project-id = "share-test"\n',
        },
    )
    (origin / "data").mkdir()
    (origin / "data" / "input.txt").write_text("hello world")
    clone = tmp_path / "b"
    git(tmp_path, "clone", "-q", str(origin), str(clone))
    (clone / "data").mkdir()
    (clone / "data" / "input.txt").write_text("hello world")
    a = Side(origin, tmp_path / "runs-a", tmp_path / "home-a")
    b = Side(clone, tmp_path / "runs-b", tmp_path / "home-b")
    remote = tmp_path / "remote"
    for side in (a, b):
        side.tether("remote", "add", "shared", str(remote), "--user")
    return a, b, remote


def _ids_metrics(items: object) -> dict[str, object]:
    assert isinstance(items, list)
    return {it["id"]: it["metrics"] for it in items}


def test_push_pull_reproduce_checkout(sides: tuple[Side, Side, Path]) -> None:
    a, b, _ = sides
    a.train("scale=3")
    a.train("scale=5")
    pushed = a.json("push", "shared")
    assert pushed["changed"] == 2 and pushed["failed"] == 0 and pushed["bytes"] > 0
    assert len(pushed["bundles"]) == 1  # both snapshots in one thin bundle
    listed = a.json("remote", "runs", "shared")
    assert {it["status"] for it in listed} == {"completed"}
    assert b.json("runs", "--remote", "shared") == listed

    picked = b.json("pull", "shared", "--where", "config.scale = 5", "--dry-run")
    assert [r["action"] for r in picked["runs"]] == ["would pull"]
    assert not b.runs.exists() or not any(b.runs.glob("*/run.lock"))  # a dry run moves nothing
    pulled = b.json("pull", "shared")
    assert pulled["changed"] == 2 and pulled["refs"] == 2, pulled
    here = _ids_metrics(a.json("runs"))
    assert _ids_metrics(b.json("runs")) == here
    assert _ids_metrics(listed) == here

    again = b.json("pull", "shared", ok=(3,))
    assert again["changed"] == 0 and again["bytes"] == 0

    run_id = sorted(here)[0]
    b.tether("check", "--run", run_id[:13])  # the pulled folder matches its own manifest
    made = b.tether("checkout", run_id[:13], "--branch", "from-a")
    assert "branch from-a at" in made.stdout
    snap = git(b.repo, "rev-parse", f"refs/tether/snapshots/{run_id}")
    assert git(b.repo, "rev-parse", "from-a") == snap
    rep = b.tether("reproduce", run_id[:13], "--json")
    assert json.loads(rep.stdout)["identical"]


def test_second_push_moves_nothing(sides: tuple[Side, Side, Path]) -> None:
    a, _, remote = sides
    a.train()
    assert a.json("push", "shared")["changed"] == 1
    mtimes = {p: p.stat().st_mtime_ns for p in remote.rglob("*") if p.is_file()}
    second = a.json("push", "shared", ok=(3,))
    assert second["changed"] == 0 and second["bytes"] == 0 and second["files"] == 0
    assert {p: p.stat().st_mtime_ns for p in remote.rglob("*") if p.is_file()} == mtimes
    dry = a.json("push", "shared", "--dry-run", ok=(3,))
    assert [r["action"] for r in dry["runs"]] == ["unchanged"]


def test_labels_merge_both_ways(sides: tuple[Side, Side, Path]) -> None:
    a, b, _ = sides
    a.train()
    a.tether("push", "shared")
    b.tether("pull", "shared")
    a.tether("label", "1", "from-a")
    b.tether("tag", "1", "from-b")
    b.tether("note", "1", "seen by b")
    b.tether("sync", "shared")
    a.tether("sync", "shared")
    b.tether("sync", "shared", ok=(0, 3))
    for side in (a, b):
        shown = side.json("show", "1")
        assert shown["attrs"]["label"] == "from-a", shown["attrs"]
        assert "from-b" in shown["attrs"]["tags"]
        assert [n["text"] for n in shown["attrs"]["notes"]] == ["seen by b"]
    check = a.tether("sync", "shared", "--check")
    assert "0 differ" in check.stdout


def test_different_run_lock_is_refused(sides: tuple[Side, Side, Path]) -> None:
    a, b, _ = sides
    a.train()
    a.tether("push", "shared")
    b.tether("pull", "shared")
    run_id = next(p.name for p in b.runs.iterdir() if (p / "run.lock").is_file())
    lock = b.runs / run_id / "run.lock"
    lock.write_text(lock.read_text().replace("scale: 2", "scale: 9"))
    out = b.tether("push", "shared", ok=(1,))
    assert "run.lock differs" in out.stderr and out.stderr.count("blake3") == 2


def test_killed_push_shows_no_half_run_and_resumes(sides: tuple[Side, Side, Path]) -> None:
    a, b, remote = sides
    a.train("big=200000000")
    proc = subprocess.Popen(
        [str(BIN / "tether"), "push", "shared"],
        cwd=a.repo,
        env={**os.environ, **a.env()},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def partial() -> bool:  # big.bin half copied, under its temporary name
        return any(remote.glob("runs/*/.big.bin.*.part"))

    wait_for(partial, "part of big.bin on the remote", proc=proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert not list(remote.glob("index/*.json"))  # no run visible
    assert b.json("remote", "runs", "shared") == []
    done = a.json("push", "shared")
    assert done["changed"] == 1
    assert len(b.json("remote", "runs", "shared")) == 1
    b.tether("pull", "shared")
    assert _ids_metrics(b.json("runs")) == _ids_metrics(a.json("runs"))


def test_a_running_run_is_pushed_again_and_again(sides: tuple[Side, Side, Path]) -> None:
    a, b, _ = sides
    go = a.repo.parent / "go"
    proc = subprocess.Popen(
        [sys.executable, "train.py", f"wait={go}"],
        cwd=a.repo,
        env={**os.environ, **a.env()},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def running() -> bool:
        items = a.json("runs")
        return bool(items) and items[0]["status"] == "running" and bool(items[0]["metrics"])

    wait_for(running, "the run to log while running", proc=proc)
    first = a.json("push", "shared")
    assert first["changed"] == 1
    assert [it["status"] for it in b.json("remote", "runs", "shared")] == ["running (remote)"]
    b.tether("pull", "shared")
    assert b.json("runs")[0]["status"] == "running"
    go.write_text("")
    proc.communicate(timeout=60)
    assert proc.returncode == 0
    again = a.json("push", "shared")
    assert again["changed"] == 1 and again["runs"][0]["action"] == "pushed"
    pulled = b.json("pull", "shared")
    assert pulled["runs"][0]["action"] == "updated", pulled
    assert _ids_metrics(b.json("runs")) == _ids_metrics(a.json("runs"))
    assert b.json("runs")[0]["status"] == "completed"
