"""scripts/bench_docs.py: docs/benchmarks.md's tables come from bench/results/*.json."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


bench_docs = _load("bench_docs", ROOT / "scripts" / "bench_docs.py")
sys.path.insert(0, str(ROOT / "bench"))
benchlib = _load("benchlib", ROOT / "bench" / "benchlib.py")

PAGE = """# Benchmarks

Hand-written prose stays.

<!-- bench:launch -->
| typed by hand | 1.0 s |
<!-- /bench:launch -->

<!-- bench:launch:timings -->
<!-- /bench:launch:timings -->

<!-- bench:missing -->
kept: no results
<!-- /bench:missing -->

<!-- bench:summary -->
<!-- /bench:summary -->
"""


def _results(folder: Path) -> None:
    folder.mkdir()
    rows = [
        benchlib.ratio_row("launch / mpiexec", 0.3, 0.1, 1.5),
        benchlib.ratio_row("scan / query", 50.0, 0.01, 1000, ">="),
    ]
    data = {
        "benchmark": "launch",
        "commit": "abc1234",
        "when": "2026-12-02T04:00:00Z",
        "load_before": [0.5, 1, 1],
        "load_after": [0.7, 1, 1],
        "rows": rows,
        "timings": [
            {
                "label": "tether",
                "median_s": 0.3,
                "min_s": 0.2,
                "max_s": 0.4,
                "samples_s": [0.2, 0.3, 0.4],
            }
        ],
    }
    (folder / "launch.json").write_text(json.dumps(data))


def test_rows_carry_the_ratio_the_goal_and_the_verdict():
    cost = benchlib.ratio_row("a / b", 3.0, 2.0, 1.5)
    assert (cost["ratio"], cost["op"], cost["ok"]) == (1.5, "<=", True)
    speed = benchlib.ratio_row("b / a", 2.0, 4.0, 1.0, ">=")
    assert (speed["ratio"], speed["ok"]) == (0.5, False)
    assert benchlib.row_line(speed) == "b / a: ratio 0.5 (goal >= 1)  MISSED"


def test_blocks_are_generated_from_results_and_the_rest_is_kept(tmp_path: Path, capsys):
    results = tmp_path / "results"
    _results(results)
    page = tmp_path / "benchmarks.md"
    page.write_text(PAGE)
    assert bench_docs.main(["--results", str(results), "--page", str(page), "--check"]) == 1
    assert bench_docs.main(["--results", str(results), "--page", str(page)]) == 0
    text = page.read_text()
    assert "typed by hand" not in text and "Hand-written prose stays." in text
    assert "| launch / mpiexec | 0.3 s | 0.1 s | 3.00 | <= 1.5 | **MISSED** |" in text
    assert "| scan / query | 50.0 s | 10.0 ms | 5,000 | >= 1000 | **OK** |" in text
    assert "| tether | 0.3 s | 0.2 s | 0.4 s | 3 |" in text
    assert "Measured at commit `abc1234`" in text and "load average 0.50 before" in text
    assert "kept: no results" in text  # a block without results stays as it was
    assert "| launch | launch / mpiexec |" in text  # the summary of every goal
    assert bench_docs.main(["--results", str(results), "--page", str(page), "--check"]) == 0
    capsys.readouterr()
    assert bench_docs.main(["--results", str(results), "--summary"]) == 0
    out = capsys.readouterr().out
    assert (
        "launch: launch / mpiexec" in out and "MISSED" in out and "2 goals: 1 OK, 1 MISSED" in out
    )
