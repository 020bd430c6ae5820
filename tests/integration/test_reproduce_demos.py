"""`tether reproduce` of every run the operations demo (examples/pipeline/demo.sh) makes.

The demo's operations narrow their snapshots with `sourcecode`, link upstream files
(`run-files`) and read runs summaries (`runs-summary`); one of them is a grid batch. Each run
reproduces with identical inputs and metrics, and a reproduction reproduces in turn. The
digits demo's runs are checked the same way in tests/cli/test_cli_basic.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_cli
from tests.demos import reproduce_every_run, run_demo, run_ids

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pipeline_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("pipeline-demo") / "demo-runs"
    run_demo("pipeline", base)
    return Path(f"{base}-pipeline")  # the demo's own suffix


def test_every_pipeline_demo_run_reproduces(pipeline_runs: Path, tmp_path: Path):
    env = {"TETHER_RUNS": str(pipeline_runs)}
    listing = json.loads(run_cli("runs", "--all", "--json", env=env, check=True).stdout)
    names = sorted({r["name"] for r in listing})
    assert names == ["compare", "evaluate", "prepare", "train", "train+batch"]
    ids = [r["id"] for r in listing]
    # From a folder outside the project: the run record is all it takes.
    made = reproduce_every_run(pipeline_runs, ids, cwd=tmp_path)
    # A reproduction of a reproduction: the evaluate run (two upstream stages deep).
    evaluate = next(r["id"] for r in listing if r["name"] == "evaluate")
    again = reproduce_every_run(pipeline_runs, [made[evaluate]], cwd=tmp_path)
    lock = yaml.safe_load(
        (pipeline_runs / again[made[evaluate]] / "run.lock").read_text(encoding="utf-8")
    )
    assert lock["reproduces"] == made[evaluate]
    assert lock["sources"][0]["path"] == "../.."  # the repository, from the project folder
    # The batch's reproduction made a new batch of six trials; every other run made one run.
    assert len(run_ids(pipeline_runs)) == len(ids) * 2 + 6 + 1
