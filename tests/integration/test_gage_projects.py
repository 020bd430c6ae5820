"""gage-format projects (written for this suite) through `tether check` and `tether run`:
real `tether` processes, real run folders."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import BIN, run_cli

HELLO_PY = """\
# Say hello to someone.
name = "Joe"  # who to greet
times = 1  # how often

for _ in range(times):
    print(f"Hello, {name}")
"""
ADD_PY = 'x = 1\ny = 2\n\nprint(f"{x} + {y} = {x + y}")\n'


def _project(folder: Path, gage_toml: str, **files: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "gage.toml").write_text(gage_toml)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def _runs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if (p / "run.lock").is_file())


def _lock(run_dir: Path) -> dict:
    return yaml.safe_load((run_dir / "run.lock").read_text())


@pytest.fixture
def runs_root() -> Path:
    return Path(os.environ["TETHER_RUNS"])


def test_hello_with_a_flag_rewrites_only_the_staged_copy(tmp_path: Path, runs_root: Path) -> None:
    folder = _project(
        tmp_path / "hello",
        '[hello]\nexec = "python hello.py"\nconfig = "hello.py"\n',
        **{"hello.py": HELLO_PY},
    )
    assert run_cli("check", cwd=folder).returncode == 0
    proc = run_cli("run", "hello", "name=Mike", "-y", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    assert "Hello, Mike" in proc.stdout
    assert (folder / "hello.py").read_text() == HELLO_PY
    (run,) = _runs(runs_root)
    assert (run / "hello.py").read_text() == HELLO_PY.replace('"Joe"', '"Mike"')
    lock = _lock(run)
    assert lock["flags"] == {"name": "Mike", "times": 1}
    assert lock["name"] == "hello"


def test_help_lists_the_flags_of_the_source_file(tmp_path: Path) -> None:
    folder = _project(
        tmp_path / "hello",
        '[hello]\ndescription = "Say hello"\nexec = "python hello.py"\nconfig = "hello.py"\n',
        **{"hello.py": HELLO_PY},
    )
    proc = run_cli("run", "hello", "--help", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    assert "Say hello" in proc.stdout
    assert 'name="Joe"  who to greet; from hello.py' in proc.stdout
    assert "times=1     how often; from hello.py" in proc.stdout


def test_add_with_hash_y(tmp_path: Path) -> None:
    folder = _project(
        tmp_path / "add",
        '[add]\nexec = "python add.py"\nconfig = ["add.py#x", "#y"]\n',
        **{"add.py": ADD_PY},
    )
    proc = run_cli("run", "add", "x=3", "y=4", "-y", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    assert "3 + 4 = 7" in proc.stdout
    bad = run_cli("run", "add", "z=1", "-y", cwd=folder)
    assert bad.returncode == 2
    assert "unknown flag 'z'" in bad.stderr


def test_batch_over_a_json_file_makes_a_child_per_row(tmp_path: Path, runs_root: Path) -> None:
    folder = _project(
        tmp_path / "hello",
        '[hello]\nexec = "python hello.py"\nconfig = "hello.py"\ndefault = true\n',
        **{
            "hello.py": HELLO_PY,
            "hello-batch.json": json.dumps([{"name": "Ann"}, {"name": "Bob", "times": 2}]),
        },
    )
    proc = run_cli("run", "hello", "--batch", "hello-batch.json", "-y", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("Hello, Ann") == 1
    assert proc.stdout.count("Hello, Bob") == 2
    locks = [_lock(r) for r in _runs(runs_root)]
    children = [lock for lock in locks if lock.get("parent")]
    assert sorted(lock["flags"]["name"] for lock in children) == ["Ann", "Bob"]
    # `default = true`: no name needed, and a first FLAG=VALUE word is the default op's
    proc = run_cli("run", "name=Cy", "-y", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    assert "Hello, Cy" in proc.stdout


PHASES = """\
[train]
config = "train.py"
version = 2
[train.exec]
finalize = "echo finalize >> phases.txt"
run = "echo run >> phases.txt && python train.py"
stage-dependencies = "echo stage-dependencies >> phases.txt"
stage-runtime = "echo stage-runtime >> phases.txt && test -d \\"$project_dir\\""
stage-sourcecode = "echo stage-sourcecode >> \\"$run_dir/phases.txt\\" && test -f train.py"

[broken.exec]
stage-runtime = "echo preparing; exit 3"
run = "echo never"
"""


def test_phases_run_in_order_and_a_failing_one_is_named(tmp_path: Path, runs_root: Path) -> None:
    folder = _project(tmp_path / "p", PHASES, **{"train.py": 'lr = 0.1\nprint("lr:", lr)\n'})
    assert run_cli("check", cwd=folder).returncode == 0
    proc = run_cli("run", "train", "lr=0.5", "-y", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    (run,) = _runs(runs_root)
    assert (run / "phases.txt").read_text().split() == [
        "stage-sourcecode",
        "stage-runtime",
        "stage-dependencies",
        "run",
        "finalize",
    ]
    log = (run / "output.log").read_text()
    for name in ("stage-sourcecode", "stage-runtime", "stage-dependencies", "run", "finalize-run"):
        assert f"$ [{name}] " in log
    assert "lr: 0.5" in log
    assert run_cli("runs", "--where", "version = 2", cwd=folder).stdout.count("train") == 1
    proc = run_cli("run", "broken", "-y", cwd=folder)
    assert proc.returncode == 3
    assert "tether: phase stage-runtime failed (exit 3)" in proc.stderr
    assert "never" not in proc.stdout
    broken = [r for r in _runs(runs_root) if _lock(r)["name"] == "broken"]
    assert "preparing" in (broken[0] / "output.log").read_text()


def test_runs_dir_setting(tmp_path: Path) -> None:
    folder = _project(
        tmp_path / "p",
        '"$runs-dir" = "myruns"\n"$namespace" = "demo"\n[hello]\nexec = "python hello.py"\n'
        'config = "hello.py"\n',
        **{"hello.py": HELLO_PY},
    )
    env = {k: v for k, v in os.environ.items() if k != "TETHER_RUNS"}
    proc = subprocess.run(
        [str(BIN / "tether"), "run", "hello", "-y"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    (run,) = _runs(folder / "myruns")
    assert _lock(run)["env"]["op"] == {"namespace": "demo"}
    listed = subprocess.run(
        [str(BIN / "tether"), "runs", "--where", "namespace = demo", "--columns", "name,namespace"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
    )
    assert listed.returncode == 0, listed.stderr
    assert "hello" in listed.stdout and "demo" in listed.stdout


def test_check_reports_gage_keys_with_file_and_line(tmp_path: Path) -> None:
    folder = _project(tmp_path / "p", '[hello]\nexec = "python hello.py"\nrequires = "x"\n')
    proc = run_cli("check", cwd=folder)
    assert proc.returncode == 2
    assert "gage.toml:3:1: hello.requires: unknown key" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_run_a_script_directly(tmp_path: Path, runs_root: Path) -> None:
    folder = tmp_path / "bare"
    folder.mkdir()
    script = 'lr = 0.01  # learning rate\nepochs = 2\nprint(f"lr={lr} epochs={epochs}")\n'
    (folder / "train.py").write_text(script)
    proc = run_cli("run", "train.py", "lr=0.1", "-y", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    assert "lr=0.1 epochs=2" in proc.stdout
    assert (folder / "train.py").read_text() == script
    (run,) = _runs(runs_root)
    lock = _lock(run)
    assert lock["name"] == "train.py"
    assert lock["flags"] == {"lr": 0.1, "epochs": 2}
    help_text = run_cli("run", "train.py", "--help", cwd=folder).stdout
    assert "lr=0.01   learning rate; from train.py" in help_text


def test_tether_toml_config_from_a_python_file(tmp_path: Path, runs_root: Path) -> None:
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "tether.toml").write_text(
        '[ops.train]\nexec = "python train.py"\nconfig = ["train.py#lr", "#name"]\n'
    )
    script = 'lr = 0.01\nname = "mlp"\nepochs = 1\nprint(f"{name} lr={lr}")\n'
    (folder / "train.py").write_text(script)
    proc = run_cli("run", "train", "lr=0.5", "name=cnn", "-y", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    assert "cnn lr=0.5" in proc.stdout
    assert (folder / "train.py").read_text() == script
    (run,) = _runs(runs_root)
    assert _lock(run)["flags"] == {"lr": 0.5, "name": "cnn"}
    bad = run_cli("run", "train", "epochs=2", "-y", cwd=folder)
    assert bad.returncode == 2 and "unknown flag 'epochs'" in bad.stderr


def test_output_summary_and_progress_patterns_become_scalars(
    tmp_path: Path, runs_root: Path
) -> None:
    train = 'for i in range(1, 5):\n    print(f"epoch {i}/4 [{i * 25}%] acc={i / 10}")\n'
    folder = _project(
        tmp_path / "p",
        '[train]\nexec = "python train.py"\noutput-scalars = false\n'
        "output-summary = 'acc=(?P<acc>[0-9.]+)'\nprogress = '\\[(?P<progress>\\d+)%\\]'\n",
        **{"train.py": train},
    )
    proc = run_cli("run", "train", "-y", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(run_cli("runs", "--json", cwd=folder).stdout)
    assert row["metrics"]["acc"] == 0.4
    assert row["metrics"]["progress"] == 100
