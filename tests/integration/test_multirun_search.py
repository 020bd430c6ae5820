"""`-m ... --optimize`: a decorated main's multirun as a search (tether.search.multirun), on the
machinery of `tether run OP --optimize`: one batch, a child run per trial, the study's journal in
the batch's folder, the best trial's run tagged `best`, and `tether show BATCH` shows the study.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import run_cli

pytestmark = pytest.mark.integration

MAIN = '''\
import tether


@tether.experiment(config="conf.yaml")
def main(cfg, run):
    """A quadratic with its minimum at x = 0.5."""
    run.log_metrics({"loss": (cfg.x - 0.5) ** 2 + cfg.offset})


if __name__ == "__main__":
    main()
'''


def _python(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "train.py", *args],
        cwd=folder,
        env={**os.environ, "TETHER_RUNS": str(folder / "runs"), "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )


def _main(tmp_path: Path) -> Path:
    (tmp_path / "train.py").write_text(MAIN)
    (tmp_path / "conf.yaml").write_text("x: 0.0\noffset: 1.0\n")
    return tmp_path


def _listing(folder: Path) -> list[dict[str, Any]]:
    out = run_cli("runs", "--all", "--json", env={"TETHER_RUNS": str(folder / "runs")}, check=True)
    return json.loads(out.stdout)


def test_a_tpe_search_of_a_decorated_main_makes_one_batch_of_8_trials(tmp_path: Path) -> None:
    folder = _main(tmp_path)
    args = ("-m", "x=interval(-2,2)", "--optimize", "tpe", "--trials", "8")
    proc = _python(folder, *args, "--minimize", "loss", "--n-jobs", "2")
    assert proc.returncode == 0, proc.stderr
    rows = _listing(folder)
    batches = [r for r in rows if r["name"] == "train+batch"]
    assert len(batches) == 1, rows
    batch = batches[0]
    children = [r for r in rows if r["name"] == "train"]
    assert len(children) == 8 and {r["status"] for r in children} == {"completed"}
    xs = []
    for row in children:
        lock = yaml.safe_load((Path(row["dir"]) / "run.lock").read_text())
        assert lock["parent"] == batch["id"]
        assert lock["config"]["offset"] == 1.0
        assert -2 <= lock["config"]["x"] <= 2
        xs.append(lock["config"]["x"])
    assert len(set(xs)) == 8  # each trial its own point, from the study
    assert (Path(batch["dir"]) / "study.journal").is_file()  # the study, in the batch's folder
    # The best trial's run, the one of least loss (x nearest 0.5), alone is tagged `best`.
    x_best = min(children, key=lambda r: abs(_x(r) - 0.5))
    assert [r["id"] for r in children if "best" in r["tags"]] == [x_best["id"]]
    env = {"TETHER_RUNS": str(folder / "runs")}
    shown = run_cli("show", batch["id"][:13], env=env, check=True).stdout
    assert f"(run {x_best['id'][:13]})" in shown.split("best:", 1)[1].splitlines()[0]
    assert len([line for line in shown.splitlines() if " complete " in line]) == 8


def _x(row: dict[str, Any]) -> float:
    return float(yaml.safe_load((Path(row["dir"]) / "run.lock").read_text())["config"]["x"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--optimize", "tpe", "--trials", "3", "--minimize", "loss"], "it needs -m"),
        (["-m", "x=interval(-2,2)", "--trials", "3"], "--trials belongs to a search"),
        (["-m", "x=interval(-2,2)", "--optimize", "tpe", "--trials", "3"], "one objective"),
        (
            ["-m", "x=interval(-2,2)", "--optimize", "bayes", "--trials", "3", "--minimize", "l"],
            "expected one of tpe, random, cmaes, grid",
        ),
        (
            ["-m", "x=0,1", "--optimize", "tpe", "--trials", "3", "--minimize", "l", "--random"],
            "two ways to choose the points",
        ),
        (
            [
                "-m",
                "x=0,1",
                "--optimize",
                "tpe",
                "--trials",
                "3",
                "--minimize",
                "l",
                "--prune",
                "median",
            ],
            "does not prune yet",
        ),
    ],
)
def test_bad_search_options_get_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    proc = _python(_main(tmp_path), *args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists() or not _listing(tmp_path)  # no run was made


def test_help_names_the_search_options(tmp_path: Path) -> None:
    proc = _python(_main(tmp_path), "--help")
    assert proc.returncode == 0, proc.stderr
    for flag in ("--optimize", "--trials", "--minimize", "--prune", "--resume"):
        assert flag in proc.stdout


def test_resume_continues_the_search_asked_the_same(tmp_path: Path) -> None:
    folder = _main(tmp_path)
    args = ("-m", "x=0,0.5,1", "--optimize", "grid", "--minimize", "loss")
    first = _python(folder, *args)
    assert first.returncode == 0, first.stderr
    again = _python(folder, *args, "--resume")
    assert again.returncode == 0, again.stderr
    assert "every trial is done" in again.stderr
    rows = _listing(folder)
    assert len([r for r in rows if r["name"] == "train+batch"]) == 1
    children = [r for r in rows if r["name"] == "train"]
    assert sorted(_x(r) for r in children) == [0, 0.5, 1]
    assert [_x(r) for r in children if "best" in r["tags"]] == [0.5]
