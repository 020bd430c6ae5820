"""`tether reproduce` and `--needed` against a real git project and the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_cli
from tests.integration.test_snapshot import git, make_repo, tree_files

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


# -- reproductions keep the inputs and the project layout -------------------------------------
PREP = """
import pathlib, tether

@tether.experiment(defaults={"n": 3, "save_dir": "???"})
def prep(cfg, run):
    pathlib.Path(cfg.save_dir, "n.txt").write_text(str(cfg.n))

if __name__ == "__main__":
    prep()
"""

STAGED = """
import pathlib, tether

@tether.experiment(config="train.yaml", exclude=["data/"])
def train(cfg, run):
    n = int(pathlib.Path(cfg.upstream).read_text())
    words = pathlib.Path(cfg.words).read_text().split()
    run.log_metrics({"score": n * len(words)})

if __name__ == "__main__":
    train()
"""


def reproduce_json(run: str, **kw: object) -> dict[str, object]:
    proc = run_cli("reproduce", run, "--json", **kw)  # type: ignore[arg-type]
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def lock_of(run: str, **kw: object) -> dict[str, object]:
    shown = json.loads(run_cli("show", run, "--json", check=True, **kw).stdout)  # type: ignore[arg-type]
    return yaml.safe_load((Path(shown["dir"]) / "run.lock").read_text())


def assert_reproduces(new: dict, old: dict) -> None:
    """`new` (a run.lock) reproduces `old`: same inputs, and its paths are the project's."""
    assert new["reproduces"] == old["id"]
    for key in ("data", "stages"):
        assert new[key] == old[key], key
    for a, b in zip(new["sources"], old["sources"], strict=True):
        assert (a["path"], a["root"], a["tree"]) == (b["path"], b["root"], b["tree"])
    assert new["env"]["cwd"] == old["env"]["cwd"]
    assert new["command"] == old["command"]


def test_reproduce_keeps_stages_tracked_data_and_the_project_layout(tmp_path: Path):
    """`${stage:...}` and `${track:...}` are recorded resolved: the reproduction still records
    the same upstream run and data (so its inputs are identical), names its source by the
    project's path (not the temporary worktree's), and is itself reproducible; `tether diff`
    of the two shows no difference."""
    repo = make_repo(
        tmp_path / "proj",
        {
            "tether.toml": "",  # the project root: source paths are relative to it
            "sub/prep.py": PREP,
            "sub/train.py": STAGED,
            "sub/train.yaml": (
                "upstream: ${stage:prep}/n.txt\nwords: ${track:data/words.txt}\nsave_dir: ???\n"
            ),
            ".gitignore": "data/\n",
        },
    )
    (repo / "sub" / "data").mkdir()
    (repo / "sub" / "data" / "words.txt").write_text("a b c d")
    sub = repo / "sub"
    for script in ("prep.py", "train.py"):
        proc = subprocess.run([sys.executable, script], cwd=sub, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    old = lock_of("1", cwd=sub)
    assert old["sources"][0]["path"] == "."  # the repository, relative to the project root
    assert [s["name"] for s in old["stages"]] == ["prep"]
    assert [d["path"] for d in old["data"]] == ["data/words.txt"]
    # Another prep run since: the reproduction still takes the recorded one.
    assert subprocess.run([sys.executable, "prep.py", "n=5"], cwd=sub).returncode == 0

    result = reproduce_json(old["id"], cwd=tmp_path)  # from outside the project, too
    assert result["identical"] and result["same_inputs"], result
    assert result["metrics"] == [{"key": "score", "old": 12.0, "new": 12.0}]
    assert result["packages"] == [] and result["environment"] == []
    new = lock_of(result["new"], cwd=sub)
    assert_reproduces(new, old)
    diff = json.loads(run_cli("diff", old["id"], new["id"], "--json", cwd=sub, check=True).stdout)
    assert diff["identical"], diff
    assert [s["change"] for s in diff["sources"]] == ["same"]

    again = reproduce_json(new["id"], cwd=sub)  # a reproduction of the reproduction
    assert again["identical"] and again["same_inputs"], again
    assert_reproduces(lock_of(again["new"], cwd=sub), new)
    assert git(repo, "worktree", "list").count("\n") == 0


TOML = """
[ops.prepare]
exec = "python prepare.py {n}"
sourcecode = ["prepare.py"]

[ops.prepare.config]
n = 3

[ops.train]
exec = "python train.py"
sourcecode = ["train.py"]
depends = ["run-files: op=prepare"]
"""

PREPARE_OP = """
import sys
open("n.txt", "w").write(sys.argv[1])
"""

TRAIN_OP = """
n = int(open("n.txt").read())
print(f"score: {n * 2}")
"""


def test_reproduce_an_operation_whose_sourcecode_narrows_the_snapshot(tmp_path: Path):
    """The snapshot of an operation with `sourcecode` globs keeps the project file, so the op
    runs again from it where the project was (here a folder below the repository's top); its
    `run-files` dependency takes the recorded upstream run, not the latest."""
    repo = make_repo(
        tmp_path / "repo",
        {
            "proj/tether.toml": TOML,
            "proj/prepare.py": PREPARE_OP,
            "proj/train.py": TRAIN_OP,
            "README": "top of the repository\n",
        },
    )
    proj = repo / "proj"
    run_cli("run", "prepare", cwd=proj, check=True)
    run_cli("run", "train", cwd=proj, check=True)
    old = lock_of("1", cwd=proj)
    assert old["sources"][0]["include"] == ["/proj/**/train.py", "/proj/tether.toml"]
    assert tree_files(repo, old["sources"][0]["commit"]) == {"proj/train.py", "proj/tether.toml"}
    run_cli("run", "prepare", "n=7", cwd=proj, check=True)  # a newer upstream run

    result = reproduce_json(old["id"], cwd=proj)
    assert result["identical"] and result["same_inputs"], result
    assert result["metrics"] == [{"key": "score", "old": 6.0, "new": 6.0}]
    new = lock_of(result["new"], cwd=proj)
    assert_reproduces(new, old)
    assert new["sources"][0]["path"] == ".."
    again = reproduce_json(new["id"], cwd=proj)
    assert again["identical"] and again["same_inputs"], again


def test_reproduce_names_the_packages_that_differ(project: Path, tmp_path: Path):
    """A distribution at another version when the run is reproduced: a warning names it, the
    JSON lists it, `tether diff` shows it, and the inputs differ (the packages digest)."""
    site = tmp_path / "site"
    (site / "fakepkg-1.0.dist-info").mkdir(parents=True)
    env = {"PYTHONPATH": str(site)}
    proc = subprocess.run(
        [sys.executable, "train.py"], cwd=project, env={**os.environ, **env}, capture_output=True
    )
    assert proc.returncode == 0, proc.stderr
    old = lock_of("1", cwd=project)
    assert "fakepkg==1.0" in old["env"]["packages"]
    (site / "fakepkg-1.0.dist-info").rename(site / "fakepkg-2.0.dist-info")
    proc = run_cli("reproduce", "1", "--json", cwd=project, env=env)
    assert proc.returncode == 0, proc.stderr  # the metrics are the same
    assert "environment differs" in proc.stderr and "fakepkg 1.0 -> 2.0" in proc.stderr
    result = json.loads(proc.stdout)
    assert result["packages"] == [
        {"name": "fakepkg", "change": "changed", "old": "1.0", "new": "2.0"}
    ]
    assert not result["same_inputs"]
    shown = run_cli("diff", "2", "1", cwd=project, env={"NO_COLOR": "1"}, check=True).stdout
    assert (
        "Environment\n  ~ fakepkg 1.0 -> 2.0" in shown
        or "Environment\n  ~ fakepkg 1.0 → 2.0" in shown
    )


BY_NAME = """
import pathlib, tether

@tether.experiment(defaults={"save_dir": "???"}, stages={"prep": None})
def train(cfg, run):
    n = int(pathlib.Path(run.stage("prep"), "n.txt").read_text())
    run.log_metrics({"n": n})

if __name__ == "__main__":
    train()
"""


def test_reproduce_takes_the_recorded_upstream_of_a_stage_found_by_name(tmp_path: Path):
    """`stages={"prep": None}` means the latest completed `prep` run: the reproduction takes
    the one the recorded run took, though a newer one exists."""
    repo = make_repo(tmp_path / "proj", {"prep.py": PREP, "train.py": BY_NAME})
    for argv in (["prep.py"], ["train.py"], ["prep.py", "n=5"]):
        proc = subprocess.run([sys.executable, *argv], cwd=repo, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    old = lock_of("2", cwd=repo)
    assert old["name"] == "train"
    result = reproduce_json(old["id"], cwd=repo)
    assert result["metrics"] == [{"key": "n", "old": 3.0, "new": 3.0}]
    assert result["identical"] and result["same_inputs"], result
    assert lock_of(result["new"], cwd=repo)["stages"] == old["stages"]
