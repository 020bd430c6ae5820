"""One run, wherever it starts: an operation whose `exec` runs a decorated script (or a bare
`History`, `open_run()`, a batch) makes one run, the script attaching to the operation's run.

Real `tether run` processes in a real git project; the runs root is the test's own."""

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

PROJECT = """\
[ops.prepare]
exec = "python prepare.py seed={seed}"
sourcecode = ["prepare.py"]
[ops.prepare.config]
seed = 0

[ops.train]
exec = "python train.py"
sourcecode = ["train.py"]
depends = [{ type = "run-files", op = "prepare", files = ["split.npz"] }]

[ops.owner]
exec = "python quiet.py && python after.py"
sourcecode = ["quiet.py", "after.py"]

[ops.boom]
exec = "python boom.py"
sourcecode = ["boom.py"]

[ops.bare]
exec = "python bare.py"
sourcecode = ["bare.py"]

[ops.sweep]
exec = "python sweep.py --task-to seed"
sourcecode = ["sweep.py"]
"""

# The decorated script of the issue: History metrics and a file the next op needs.
PREPARE = """\
import os, subprocess, sys
from pathlib import Path

import tether


@tether.experiment(defaults={"seed": 1, "lr": 0.1, "save_dir": None})
def main(cfg, run):
    history = tether.History()
    for step in range(4):
        history.update({"loss": 1.0 / (step + 1)}, step=step)
    Path(cfg.save_dir, "split.npz").write_bytes(b"split")
    probe = "import os; print(os.environ.get('TETHER_RUN_DIR'), os.environ.get('TETHER_RUNS'))"
    child = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    print("child sees", child.stdout.strip())
    print("attached", run.attached, run.id, os.environ.get("TETHER_RUN_ID"))


main()
"""

TRAIN = """\
from pathlib import Path
print("split:", Path("split.npz").read_bytes().decode())
"""

QUIET = """\
import tether


@tether.experiment(defaults={"x": 1})
def main(cfg, run):
    run.log_metrics({"x": float(cfg.x)})


main()
"""

AFTER = """\
import json
print("after:", json.load(open("state.json"))["status"])
"""

BOOM = """\
import tether


@tether.experiment(defaults={"x": 1})
def main(cfg, run):
    run.log_metrics({"x": 1.0})
    raise ValueError("boom on purpose")


main()
"""

# Not decorated: a bare History, then open_run() adding a metric of its own.
BARE = """\
import tether

history = tether.History()
for step in range(3):
    history.update({"acc": step / 2}, step=step)
history.close()
with tether.open_run() as run:
    run.log_metrics({"extra": 7.0})
"""

SWEEP = """\
import tether


@tether.experiment(defaults={"seed": 0, "tasks": [1, 2, 3]})
def main(cfg, run):
    run.log_metrics({"seed": float(cfg.seed)})


main()
"""


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    files = {
        "tether.toml": PROJECT,
        "prepare.py": PREPARE,
        "train.py": TRAIN,
        "quiet.py": QUIET,
        "after.py": AFTER,
        "boom.py": BOOM,
        "bare.py": BARE,
        "sweep.py": SWEEP,
    }
    for name, text in files.items():
        (root / name).write_text(text)
    git(root, "init", "-q", "-b", "main")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "project")
    return root


def tether(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, cwd=cwd, env={"NO_COLOR": "1", "COLUMNS": "200", **env})


def ok(*args: str, cwd: Path) -> str:
    proc = tether(*args, cwd=cwd)
    assert proc.returncode == 0, f"tether {' '.join(args)}: {proc.returncode}\n{proc.stderr}"
    return proc.stdout


def listing(cwd: Path, *extra: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(ok("runs", "--json", "--all", *extra, cwd=cwd))
    return rows


def lock_of(row: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((Path(row["dir"]) / "run.lock").read_text())
    return data


def no_store_inside_runs(runs_root: Path) -> None:
    assert not list(runs_root.rglob(".tether")), "a second store inside the runs root"


def test_an_op_running_a_decorated_script_is_one_run(project: Path, runs_root: Path) -> None:
    out = ok("run", "prepare", "seed=3", cwd=project)
    rows = listing(project)
    assert [(r["name"], r["status"]) for r in rows] == [("prepare", "completed")]
    run = rows[0]
    run_dir = Path(run["dir"])
    # The script attached: same run, the variables consumed (TETHER_RUNS kept) for its children.
    assert f"attached True {run['id']} None" in out
    assert f"child sees None {runs_root}" in out
    # Its metrics and files are the run's.
    assert (run_dir / "split.npz").read_bytes() == b"split"
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 4
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["metrics"]["loss"]["last"] == 0.25
    assert run["metrics"]["loss"] == 0.25
    # run.lock schema 2: the op's flags, the script's resolved config, one snapshot.
    lock = lock_of(run)
    assert lock["schema"] == 2
    assert lock["flags"] == {"seed": 3}
    assert lock["config"] == {"seed": 3, "lr": 0.1, "save_dir": str(run_dir)}
    assert lock["command"] == ["tether", "run", "prepare", "seed=3"]
    assert len(lock["sources"]) == 1 and "prepare.py" in lock["sources"][0]["include"]
    snapshots = git(project, "for-each-ref", "--format=%(refname)", "refs/tether/snapshots")
    assert snapshots.split() == [f"refs/tether/snapshots/{run['id']}"]
    # Queryable at once: flags, the script's config, its metrics.
    found = listing(
        project, "--where", "flags.seed = 3 and config.lr = 0.1 and metrics.loss.last = 0.25"
    )
    assert [r["id"] for r in found] == [run["id"]]
    no_store_inside_runs(runs_root)
    # The next op's run-files dependency finds the script's file in the op's run.
    assert "split: split" in ok("run", "train", cwd=project)
    train = listing(project, "--where", "op = train")[0]
    assert lock_of(train)["stages"][0]["run"] == run["id"]
    assert len(listing(project)) == 2
    no_store_inside_runs(runs_root)


def test_the_owner_records_the_end(project: Path) -> None:
    out = ok("run", "owner", cwd=project)
    # The attached script has ended; the run is still the op's, running, until the op ends.
    assert "after: running" in out
    (row,) = listing(project)
    assert row["status"] == "completed" and row["metrics"] == {"x": 1.0}
    assert lock_of(row)["config"] == {"x": 1, "save_dir": row["dir"]}


def test_a_failing_script_fails_the_one_run(project: Path) -> None:
    proc = tether("run", "boom", cwd=project)
    assert proc.returncode == 1
    (row,) = listing(project)
    assert row["status"] == "failed"
    assert "ValueError: boom on purpose" in (Path(row["dir"]) / "output.log").read_text()
    assert json.loads((Path(row["dir"]) / "state.json").read_text())["exit_code"] == 1


def test_a_bare_history_and_open_run_attach(project: Path) -> None:
    ok("run", "bare", cwd=project)
    (row,) = listing(project)
    assert row["status"] == "completed"
    assert row["metrics"] == {"acc": 1.0, "extra": 7.0}
    assert (
        listing(project, "--where", "metrics.acc = 1 and metrics.extra = 7")[0]["id"] == row["id"]
    )


def test_a_batch_inside_an_attached_run_has_it_as_parent(project: Path) -> None:
    ok("run", "sweep", cwd=project)
    rows = listing(project)
    (op_run,) = [r for r in rows if r["parent"] is None]
    children = [r for r in rows if r["parent"] is not None]
    assert op_run["name"] == "sweep" and op_run["status"] == "completed"
    assert len(children) == 3 and {r["parent"] for r in children} == {op_run["id"]}
    assert sorted(r["metrics"]["seed"] for r in children) == [1.0, 2.0, 3.0]
    assert (Path(op_run["dir"]) / "tasks.db").is_file()


def test_a_missing_or_finished_run_is_a_one_line_error(
    project: Path, tmp_path: Path, runs_root: Path
) -> None:
    env = dict(os.environ, TETHER_RUN_DIR=str(tmp_path / "nothing"))
    script = project / "quiet.py"
    proc = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"tether: error: TETHER_RUN_DIR={tmp_path / 'nothing'}: no run there (no run.lock); "
        "unset TETHER_RUN_DIR to make a new run"
    ]
    ok("run", "owner", cwd=project)
    (done,) = listing(project)
    env["TETHER_RUN_DIR"] = done["dir"]
    proc = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1
    assert f"run {done['id'][:13]} (owner) is completed" in proc.stderr
    # attach=False: a new run all the same, a child of the run named.
    code = (
        "import tether\n"
        "with tether.start_run({'a': 1}, name='side', attach=False, snapshot=False) as run:\n"
        "    print(run.id)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    side = [r for r in listing(project) if r["name"] == "side"]
    assert [(r["id"], r["parent"]) for r in side] == [(proc.stdout.strip(), done["id"])]
    assert listing(project, "--where", "op = owner")[0]["status"] == "completed"
