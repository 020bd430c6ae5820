"""Runs for the view's tests, made by a real decorated main: three completed runs with metrics
(one with 10,000 steps and a spike), one failed run, and files a run wrote."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import tether

SPIKE_STEP = 7777
SPIKE = 50.0


def make_runs(folder: Path) -> list[Path]:
    """Run the main four times into TETHER_RUNS; the run folders, oldest first."""
    conf = folder / "conf.yaml"
    conf.write_text("optim:\n  lr: 0.1\nepochs: 3\nmodel: mlp\nsave_dir: ???\n")

    @tether.experiment(config=str(conf), snapshot=False)
    def train(cfg, run):
        if cfg.model == "broken":
            raise RuntimeError("diverged")
        steps = 10_000 if cfg.model == "long" else cfg.epochs
        rows = []
        for step in range(steps):
            loss = cfg.optim.lr / (step + 1)
            if step == SPIKE_STEP:
                loss = SPIKE
            rows.append(loss)
            run.log_metrics({"train/loss": loss, "eval/acc": 0.5 + cfg.optim.lr * step}, step=step)
        (Path(run.dir) / "report.html").write_text("<script>alert(1)</script>")
        (Path(run.dir) / "picture.svg").write_text("<svg onload='alert(1)'></svg>")
        print(f"trained {cfg.model} with lr {cfg.optim.lr}")
        return run.dir

    dirs = [train(**{"optim.lr": lr}) for lr in (0.1, 0.2)]
    dirs.append(train(**{"optim.lr": 0.3, "model": "long"}))
    with pytest.raises(RuntimeError):
        train(model="broken")
    return [Path(d) for d in dirs]


@pytest.fixture
def runs(tmp_path: Path, runs_root: Path) -> list[Path]:
    return make_runs(tmp_path)


@pytest.fixture(scope="module")
def module_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[Path]]]:
    """A runs root of its own for a whole module (the browser tests share one server)."""
    folder = tmp_path_factory.mktemp("view")
    root = folder / "runs"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TETHER_RUNS", str(root))
        mp.setenv("TETHER_CACHE_DIR", str(folder / "cache"))
        for name in ("TETHER_RUN_DIR", "TETHER_RUN_ID", "TETHER_LAUNCH_ID", "TETHER_DEBUG"):
            mp.delenv(name, raising=False)
        dirs = make_runs(folder)
    yield root, dirs


def artifacts_dir(tmp: Path) -> Path:
    """Where screenshots go: $TETHER_TEST_ARTIFACTS/view when set, else a temporary folder."""
    base = os.environ.get("TETHER_TEST_ARTIFACTS")
    out = Path(base) / "view" if base else tmp / "artifacts"
    out.mkdir(parents=True, exist_ok=True)
    return out
