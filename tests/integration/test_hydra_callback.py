"""An unmodified Hydra app (tests/integration/hydra_app: a config group and `-m`) run with the
tether callback (tether.integrations.hydra) on Hydra's BasicLauncher, in a real hydra-core 1.3.

hydra-core 1.3 needs omegaconf < 2.4. When the test environment has a newer one, the test runs
the app in a virtual environment of its own, `.tether/venv-hydra-1.3.2` in the checkout
(git-ignored), made once under a file lock (so concurrent tests and other users of it make it
once) with hydra-core 1.3.2, tether's own dependencies and tether from the checkout.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ._support import World

ROOT = Path(__file__).resolve().parents[2]
APP = Path(__file__).parent / "hydra_app"
HYDRA = "1.3.2"
VENV = ROOT / ".tether" / f"venv-hydra-{HYDRA}"
READY = VENV / ".tether-ready"  # written last: a venv without it is half made
pytestmark = [pytest.mark.integration]


def _tether_deps() -> list[str]:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return list(project["dependencies"])


def _has_hydra_here() -> bool:
    try:
        import hydra  # noqa: F401
    except ImportError:
        return False
    return True


def hydra_python() -> str:
    """A Python with hydra-core 1.3 and tether: this one if it has them, else the shared venv."""
    if _has_hydra_here():
        return sys.executable
    VENV.parent.mkdir(exist_ok=True)
    with open(VENV.parent / f"venv-hydra-{HYDRA}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one maker; the others wait and reuse it
        if not READY.is_file():
            if VENV.exists():
                shutil.rmtree(VENV)  # left half made by a killed maker (ours: READY missing)
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
            pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "-q"]
            proc = subprocess.run(
                [*pip, f"hydra-core=={HYDRA}", *_tether_deps()], capture_output=True, text=True
            )
            if proc.returncode != 0:
                pytest.fail(f"cannot make {VENV}: {proc.stderr[-2000:]}")
            subprocess.run([*pip, "--no-deps", "-e", str(ROOT)], check=True)
            READY.write_text(f"hydra-core=={HYDRA}\n")
    return str(VENV / "bin" / "python")


def _app(world: World) -> Path:
    dest = world.work / "app"
    shutil.copytree(APP, dest)
    return dest / "app.py"


def _run(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    python = hydra_python()
    app = _app(world) if not (world.work / "app").exists() else world.work / "app" / "app.py"
    return subprocess.run(
        [python, str(app), *args],
        cwd=world.work,
        env=world.environ(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _lock(run: dict[str, Any]) -> dict[str, Any]:
    return yaml.safe_load((Path(run["dir"]) / "run.lock").read_text())


def _steps(run: dict[str, Any]) -> list[int]:
    lines = (Path(run["dir"]) / "metrics.jsonl").read_text().splitlines()
    return [row["step"] for row in map(json.loads, lines) if "step" in row]


def test_a_hydra_multirun_is_one_batch_with_a_child_run_per_job(world: World) -> None:
    proc = _run(world, "-m", "model=small,wide", "lr=0.1,0.01")
    assert proc.returncode == 0, proc.stderr
    runs = world.listing()
    [batch] = [r for r in runs if r["name"] == "app+batch"]
    jobs = [r for r in runs if r["name"] == "app"]
    assert len(jobs) == 4 and len(runs) == 5
    assert all(j["parent"] == batch["id"] and j["status"] == "completed" for j in jobs)
    assert sorted(_lock(batch)["config"]["overrides"]) == ["lr=0.1,0.01", "model=small,wide"]
    seen = set()
    for job in jobs:
        config = _lock(job)["config"]
        assert "hydra" not in config and config["epochs"] == 3
        model = config["model"]
        assert model["_target_"] == "builtins.dict"  # the group's file, as Hydra composed it
        seen.add((model["name"], config["lr"]))
        loss = model["scale"] * config["lr"] / 3
        assert job["metrics"]["loss"] == pytest.approx(loss)  # History, step by step
        assert job["metrics"]["return"] == pytest.approx(loss)  # what the task returned
        assert _steps(job) == [0, 1, 2]
    assert seen == {("small", 0.1), ("small", 0.01), ("wide", 0.1), ("wide", 0.01)}
    assert batch["status"] == "completed"


def test_a_single_hydra_run_is_one_run_with_its_snapshot(world: World) -> None:
    subprocess.run(["git", "init", "-q", str(world.work)], check=True)
    proc = _run(world, "model=wide")
    assert proc.returncode == 0, proc.stderr
    [run] = world.listing()
    lock = _lock(run)
    assert run["name"] == "app" and run["parent"] is None and lock["config"]["model"]["scale"] == 4
    assert lock["sources"], lock  # the app's code is recorded
    assert _steps(run) == [0, 1, 2]


def test_a_failing_hydra_job_is_a_failed_run(world: World) -> None:
    proc = _run(world, "epochs=notanumber")
    assert proc.returncode != 0
    runs = world.listing()
    assert [r["status"] for r in runs] == ["failed"]


INSTANTIATE = """
import hydra.utils
import tether

@tether.experiment(defaults={"model": {"_target_": "collections.Counter", "a": 2}, "n": 1})
def main(cfg, run):
    model = hydra.utils.instantiate(cfg.model)
    run.log_metrics({"a": model["a"] * cfg.n})

if __name__ == "__main__":
    main()
"""


def test_instantiate_and_target_work_on_a_tether_config(world: World) -> None:
    script = world.work / "inst.py"
    script.write_text(INSTANTIATE)
    proc = subprocess.run(
        [hydra_python(), str(script), "n=3", "model.a=5"],
        cwd=world.work,
        env=world.environ(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    [run] = world.listing()
    assert run["metrics"]["a"] == 15
