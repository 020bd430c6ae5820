"""`tether show RUN` is a summary that fits a screen, on the demo's train run; `--lock` prints
the run.lock whole, `--full` every digit and every config key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_tables import tty_cli
from tests.conftest import run_cli
from tests.demos import run_demo
from tether.cli.render import format_metric


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The digits demo, run once for the module: the env that lists its runs."""
    runs = tmp_path_factory.mktemp("demo") / "runs"
    run_demo("digits", runs)
    return {"TETHER_RUNS": str(runs)}


def _shown(demo: dict[str, str], *args: str) -> dict:
    return json.loads(run_cli("show", *args, "--json", env=demo, check=True).stdout)


@pytest.mark.parametrize("width", [80, 120, 200, None])
def test_show_of_the_demos_train_run_fits_40_lines(demo, width):
    if width is None:
        text = run_cli("show", "1", env=demo, check=True).stdout
    else:
        code, text, err = tty_cli("show", "1", width=width, env=demo)
        assert code == 0, err
    lines = text.rstrip("\n").splitlines()
    assert len(lines) <= 40, text
    data = _shown(demo, "1")
    assert lines[0].split() == [data["id"], "train", "completed"]
    # The config set on the command line (model.kind=svm model.C=5), not the whole config.
    start = next(i for i, line in enumerate(lines) if line.startswith("config"))
    assert lines[start] == "config set on the command line (5 other keys: --full or --lock)"
    assert lines[start + 1 : start + 3] == ["model.kind: svm", "model.C: 5"]
    # Metrics: a table, each number whole at 4 significant digits.
    start = lines.index("metrics")
    assert lines[start + 1].split() == ["last", "min", "max", "step"]
    for key, stats in data["metrics"].items():
        row = next(line.split() for line in lines[start + 2 :] if line.split()[0] == key)
        assert row[1:] == [
            format_metric(stats["last"]),
            format_metric(stats["min"]),
            format_metric(stats["max"]),
            str(stats["step"]),
        ]
    # Sources, data, stages: one line each, the rest of the lock behind --lock.
    assert any(line.startswith("source:") and "commit " in line for line in lines)
    assert any(line.startswith("data   ") and "blake3:" in line for line in lines)
    assert any(line.startswith("stage  prepare: prepare ") for line in lines)
    assert "packages_digest" not in text and "\nschema:" not in text


def test_show_lock_prints_the_whole_run_lock(demo):
    data = _shown(demo, "1")
    text = run_cli("show", "1", "--lock", env=demo, check=True).stdout
    assert text == (Path(data["dir"]) / "run.lock").read_text(encoding="utf-8")
    assert "packages:" in text and "config:" in text
    assert "0.9533333" not in text  # the lock holds no metrics: those are in summary.json


def test_show_full_has_every_digit_and_every_key(demo):
    data = _shown(demo, "1")
    text = run_cli("show", "1", "--full", env=demo, check=True).stdout
    for stats in data["metrics"].values():
        assert repr(stats["last"]) in text.split()
    assert "model.epochs: 15" in text and "seed: 0" in text
    # The first train run had no override: its whole config, flattened, save_dir aside.
    text = run_cli("show", "3", env=demo, check=True).stdout
    lines = text.splitlines()
    start = lines.index("config")
    assert lines[start + 1 : start + 8] == [
        "seed: 0",
        "data.prepare: prepare",
        f"data.split: {_shown(demo, '3')['lock']['config']['data']['split']}",
        "model.kind: logistic",
        "model.C: 1.0",
        "model.lr: 0.01",
        "model.epochs: 15",
    ]
    assert "save_dir" not in text


def test_show_lock_and_json_do_not_go_together(demo):
    proc = run_cli("show", "1", "--lock", "--json", env=demo)
    assert proc.returncode == 2 and "--json and --lock do not go together" in proc.stderr
