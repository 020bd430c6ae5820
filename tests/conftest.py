"""Shared fixtures: every test gets its own runs root, so nothing touches ~/.tether."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


# Variables that must not outlive a test: a MASTER_ADDR/MASTER_PORT left in os.environ makes
# the next torch.distributed (gloo) test try to rendezvous with a process that is gone, and wait
# out a timeout of many minutes (ezpz guards its suite the same way).
_LEAK_GUARDED = ("MASTER_ADDR", "MASTER_PORT")


@pytest.fixture(autouse=True)
def _guard_rendezvous_env() -> Iterator[None]:
    """Fail a test that leaves MASTER_ADDR/MASTER_PORT changed in os.environ (and restore them).

    Named to sort before `_isolated_runs`, so it is set up before `monkeypatch` and torn down
    after it: `monkeypatch.setenv("MASTER_PORT", ...)` is undone in time and is no leak."""
    before = {name: os.environ.get(name) for name in _LEAK_GUARDED}
    yield
    after = {name: os.environ.get(name) for name in _LEAK_GUARDED}
    leaked = {name: value for name, value in after.items() if value != before[name]}
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    if leaked:
        shown = ", ".join(f"{k}={v!r}" for k, v in leaked.items())
        pytest.fail(
            f"this test leaked {shown} into os.environ (a later gloo test would wait for "
            "minutes); use monkeypatch.setenv, a child environment, or "
            "tether.distributed.cleanup()",
            pytrace=False,
        )


@pytest.fixture(autouse=True)
def _isolated_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    runs = tmp_path / "runs"
    monkeypatch.setenv("TETHER_RUNS", str(runs))
    monkeypatch.setenv("TETHER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TETHER_DEBUG", raising=False)
    monkeypatch.delenv("TETHER_SHARED_FS", raising=False)  # the tests that want it set it
    # A suite run inside a run (a `tether run` exec) must not attach its tests to that run.
    for name in ("TETHER_RUN_DIR", "TETHER_RUN_ID", "TETHER_LAUNCH_ID"):
        monkeypatch.delenv(name, raising=False)
    return runs


@pytest.fixture
def runs_root(_isolated_runs: Path) -> Path:
    return _isolated_runs


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run the real `tether` console script of this environment."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run(
        [str(BIN / "tether"), *args], cwd=cwd, env=full_env, capture_output=True, text=True
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"tether {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


@pytest.fixture
def cli():
    return run_cli
