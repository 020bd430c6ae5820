"""The demos of `make demo`, run the way the Makefile runs them, and the check that every run
they make reproduces (shared by tests/cli/test_cli_basic.py and
tests/integration/test_reproduce_demos.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, run_cli


def run_demo(name: str, runs: Path) -> subprocess.CompletedProcess[str]:
    """`DEMO_RUNS=<runs> BIN=<this venv> bash examples/<name>/demo.sh`."""
    env = {"DEMO_RUNS": str(runs), "BIN": str(Path(sys.executable).parent)}
    proc = subprocess.run(
        ["bash", str(ROOT / "examples" / name / "demo.sh")],
        env={**os.environ, **env, "NO_COLOR": "1", "COLUMNS": "100"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def run_ids(runs: Path) -> list[str]:
    listing = json.loads(run_cli("runs", "--all", "--json", env={"TETHER_RUNS": str(runs)}).stdout)
    return [r["id"] for r in listing]


def reproduce_every_run(runs: Path, ids: list[str], cwd: Path) -> dict[str, str]:
    """Reproduce each run: identical metrics, identical inputs, the same environment, and
    `tether diff` finds no difference. Returns {run: its reproduction}."""
    env = {"TETHER_RUNS": str(runs)}
    made = {}
    for run_id in ids:
        proc = run_cli("reproduce", run_id, "--json", cwd=cwd, env=env)
        assert proc.returncode == 0, (run_id, proc.stderr)
        result = json.loads(proc.stdout)
        assert result["identical"] and result["same_inputs"], (run_id, result)
        assert (result["environment"], result["packages"], result["warnings"]) == ([], [], [])
        made[run_id] = result["new"]
        diff = json.loads(run_cli("diff", run_id, result["new"], "--json", env=env).stdout)
        assert diff["identical"], (run_id, diff)
        assert not any(s["differs"] for s in diff["sources"]), (run_id, diff["sources"])
    return made
