"""`-m` (multirun) of a decorated main: the sweeps on the command line make one batch, a parent
run and one child run per point, on the batch machinery of tether.batches.

The acceptance of the digits example (docs/configuration.md, "Coming from Hydra"): `python
examples/digits/train.py -m model=logistic,svm model.C=0.5,1` makes one batch of 4 child runs,
and `model=svn` gets a did-you-mean naming `svm`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.integration

DIGITS = ROOT / "examples" / "digits"


def _python(*args: str, runs: Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env={**os.environ, "TETHER_RUNS": str(runs), "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )


def _listing(runs: Path) -> list[dict[str, Any]]:
    out = run_cli("runs", "--all", "--json", env={"TETHER_RUNS": str(runs)}, check=True)
    return json.loads(out.stdout)


def _config(row: dict[str, Any]) -> dict[str, Any]:
    return yaml.safe_load((Path(row["dir"]) / "run.lock").read_text())["config"]


def test_the_digits_sweep_makes_one_batch_of_four_child_runs(tmp_path: Path):
    runs = tmp_path / "runs"
    prep = _python(str(DIGITS / "prepare.py"), runs=runs)
    assert prep.returncode == 0, prep.stderr
    proc = _python(str(DIGITS / "train.py"), "-m", "model=logistic,svm", "model.C=0.5,1", runs=runs)
    assert proc.returncode == 0, proc.stderr
    assert "4 tasks: 4 completed" in proc.stderr
    rows = _listing(runs)
    batches = [r for r in rows if r["name"] == "train+batch"]
    assert len(batches) == 1
    children = [r for r in rows if r["name"] == "train"]
    assert len(children) == 4 and {r["status"] for r in children} == {"completed"}
    for row in children:
        lock = yaml.safe_load((Path(row["dir"]) / "run.lock").read_text())
        assert lock["parent"] == batches[0]["id"]
    got = sorted((_config(r)["model"]["kind"], _config(r)["model"]["C"]) for r in children)
    assert got == [("logistic", 0.5), ("logistic", 1), ("svm", 0.5), ("svm", 1)]
    # Each child's config is what its point composes alone: the option's file, then model.C.
    alone = _python(
        str(DIGITS / "train.py"), "model=svm", "model.C=0.5", "--print-config", runs=runs
    )
    assert alone.returncode == 0, alone.stderr
    svm = next(
        r
        for r in children
        if _config(r)["model"] == {**_config(r)["model"], "kind": "svm", "C": 0.5}
    )
    expected = yaml.safe_load(alone.stdout)
    expected["save_dir"] = _config(svm)["save_dir"]
    assert _config(svm) == expected


def test_a_misspelled_group_option_names_the_right_one(tmp_path: Path):
    proc = _python(str(DIGITS / "train.py"), "model=svn", runs=tmp_path / "runs")
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert "\n" not in line and "did you mean 'svm'?" in line and "Traceback" not in line
    proc = _python(str(DIGITS / "train.py"), "-m", "model=logistic,svn", runs=tmp_path / "runs")
    assert proc.returncode == 2 and "did you mean 'svm'?" in proc.stderr
    assert not (tmp_path / "runs").exists() or not _listing(tmp_path / "runs")


SCRIPT = """
import json, os
from pathlib import Path
import tether

@tether.experiment(config="conf/config.yaml")
def main(cfg, run):
    Path(cfg.save_dir, "seen.json").write_text(json.dumps(
        {"lr": cfg.optim.lr, "model": cfg.model.name, "seed": cfg.seed, "pid": os.getpid()}))

if __name__ == "__main__":
    main()
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "config.yaml").write_text(
        "defaults:\n  - model: small\n  - _self_\nseed: 0\nsave_dir: ???\noptim:\n  lr: 0.1\n"
    )
    (tmp_path / "conf" / "model" / "small.yaml").write_text("name: small\nwidth: 8\n")
    (tmp_path / "conf" / "model" / "wide.yaml").write_text("name: wide\nwidth: 64\n")
    (tmp_path / "train.py").write_text(SCRIPT)
    return tmp_path


def _seen(runs: Path) -> list[dict[str, Any]]:
    rows = [r for r in _listing(runs) if not r["name"].endswith("+batch")]
    return [json.loads((Path(r["dir"]) / "seen.json").read_text()) for r in rows]


def test_three_sweeps_on_the_local_executor(project: Path):
    runs = project / "runs"
    proc = _python(
        "train.py",
        "-m",
        "optim.lr=0.1,0.01",
        "model=small,wide",
        "seed=range(3)",
        "--n-jobs",
        "2",
        runs=runs,
        cwd=project,
    )
    assert proc.returncode == 0, proc.stderr
    seen = _seen(runs)
    points = sorted((s["lr"], s["model"], s["seed"]) for s in seen)
    assert points == sorted(
        (lr, m, s) for lr in (0.1, 0.01) for m in ("small", "wide") for s in range(3)
    )
    assert len([r for r in _listing(runs) if r["name"].endswith("+batch")]) == 1


def test_glob_and_random_points(project: Path):
    runs = project / "runs"
    proc = _python("train.py", "-m", "model=glob(*)", runs=runs, cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert sorted(s["model"] for s in _seen(runs)) == ["small", "wide"]
    runs2 = project / "runs2"
    proc = _python(
        "train.py",
        "-m",
        "--random",
        "--max-runs",
        "3",
        "--seed",
        "1",
        "optim.lr=loguniform(1e-4,1e-1)",
        runs=runs2,
        cwd=project,
    )
    assert proc.returncode == 0, proc.stderr
    lrs = [s["lr"] for s in _seen(runs2)]
    assert len(lrs) == 3 and all(1e-4 <= lr <= 0.1 for lr in lrs) and len(set(lrs)) == 3


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["optim.lr=0.1,0.01"], "add -m"),
        (["-m", "seed=1"], "needs a sweep"),
        (["-m", "optim.lr=interval(0,1)"], "add --random"),
        (["-m", "seed=range(2)", "--task-to", "seed"], "do not combine"),
        (["-m", "optim.lr=0.1,0.01", "optim.lr=3,4"], "swept twice"),
        (["-m", "seed=glob(*)"], "not one"),
        (["--random", "seed=1,2"], "belongs to a random multirun"),
        (["-m", "opitm.lr=0.1,0.2"], "did you mean 'optim.lr'"),
    ],
)
def test_multirun_mistakes_are_one_line(project: Path, argv: list[str], says: str):
    runs = project / "runs"
    proc = _python("train.py", *argv, runs=runs, cwd=project)
    assert proc.returncode == 2, proc.stderr
    assert says in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not runs.exists() or not _listing(runs)


def test_tether_run_reads_the_same_sweeps_with_m(tmp_path: Path):
    (tmp_path / "tether.toml").write_text(
        "[ops.echo]\nexec = \"python -c 'print({lr}, {n})'\"\n"
        "[ops.echo.config]\nlr = 0.1\nn = 1\nlayers = [1, 2]\n"
    )
    subprocess.run(["git", "init", "-q", "."], cwd=tmp_path, check=True)
    env = {"TETHER_RUNS": str(tmp_path / "runs")}
    proc = run_cli(
        "run",
        "echo",
        "-m",
        "lr=0.1,0.01",
        "n=range(2)",
        "layers=[3]",
        "--preview",
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "batch: 4 trials (grid)" in proc.stdout
    assert "lr=0.01 n=1" in proc.stdout
    # Without -m a comma is part of the value, as before; a bracketed list is still a grid.
    proc = run_cli("run", "echo", "lr=0.1,0.01", "--preview", cwd=tmp_path, env=env)
    assert proc.returncode == 2 and "expects a number" in proc.stderr
    proc = run_cli("run", "echo", "lr=[0.1,0.01]", "--preview", cwd=tmp_path, env=env)
    assert proc.returncode == 0 and "batch: 2 trials (grid)" in proc.stdout
    proc = run_cli(
        "run",
        "echo",
        "-m",
        "lr=interval(0,1)",
        "--random",
        "--max-runs",
        "2",
        "--preview",
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0 and "batch: 2 trials (random)" in proc.stdout
