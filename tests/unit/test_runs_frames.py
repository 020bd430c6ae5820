"""`tether.runs()` and `tether.metrics()`: runs as data, for notebooks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import tether
from tether.track.frames import MissingExtra


def _sweep(tmp_path: Path) -> list[Path]:
    """Three completed trainings (a decorated main, as a user writes it) and one that fails."""
    conf = tmp_path / "conf.yaml"
    conf.write_text("optim:\n  lr: 0.1\nepochs: 3\nmodel: mlp\nsave_dir: ???\n")

    @tether.experiment(config=str(conf), snapshot=False)
    def train(cfg, run):
        if cfg.model == "broken":
            raise RuntimeError("diverged")
        for epoch in range(cfg.epochs):
            run.log_metrics({"train/loss": cfg.optim.lr / (epoch + 1)}, step=epoch)
            run.log_metrics({"eval/acc": 0.5 + cfg.optim.lr * epoch}, step=epoch)
        return run.dir

    dirs = [train(**{"optim.lr": lr}) for lr in (0.1, 0.2, 0.3)]
    with pytest.raises(RuntimeError):
        train(model="broken")
    return dirs


def test_runs_to_pandas_has_a_row_per_completed_run(tmp_path: Path):
    pd = pytest.importorskip("pandas")
    dirs = _sweep(tmp_path)
    table = tether.runs(where="status = completed")
    assert len(table) == 3 and table.ids == [d.name for d in reversed(dirs)]  # newest first
    df = table.to_pandas()
    assert isinstance(df, pd.DataFrame) and len(df) == 3
    assert list(df["status"]) == ["completed"] * 3
    assert sorted(df["config.optim.lr"]) == [0.1, 0.2, 0.3]
    assert list(df["config.epochs"]) == [3, 3, 3] and list(df["config.model"]) == ["mlp"] * 3
    newest = df.iloc[0]
    assert newest["metrics.eval/acc"] == pytest.approx(0.5 + 0.3 * 2)
    assert newest["metrics.train/loss"] == pytest.approx(0.3 / 3)
    assert "metrics.eval/acc.max" not in df.columns  # the stats only when asked for
    # Every run, the failed one too, without a filter; --sort as on the command line.
    everything = tether.runs(sort="-config.model,-config.optim.lr")
    assert [(r["config.model"], r["status"]) for r in everything][-1] == ("broken", "failed")
    assert [r["config.optim.lr"] for r in everything[:3]] == [0.3, 0.2, 0.1]


def test_columns_pick_and_globs(tmp_path: Path):
    _sweep(tmp_path)
    table = tether.runs(where="status = completed", columns="config.optim.*,metrics.*.max")
    assert table.columns[:2] == ["id", "config.optim.lr"]
    assert sorted(table.columns[2:]) == ["metrics.eval/acc.max", "metrics.train/loss.max"]
    assert table[0]["metrics.eval/acc.max"] == pytest.approx(1.1)
    with pytest.raises(
        tether.TetherError, match=r"no run has 'config.optim.lrr'.*'config.optim.lr'"
    ):
        tether.runs(columns=["config.optim.lrr"])
    # A --where key no run has matches nothing: said with the nearest key, not silently.
    with pytest.warns(
        UserWarning, match=r"no run has 'config.optim.lrr'; did you mean 'config.optim.lr'"
    ):
        assert len(tether.runs(where="config.optim.lrr > 0")) == 0


def test_runs_with_specs_count_like_the_command_line(tmp_path: Path):
    dirs = _sweep(tmp_path)
    # 1 = newest (the failed run); 2:3 the two trainings before it.
    assert tether.runs(runs="2:3").ids == [dirs[2].name, dirs[1].name]
    # With --where, numbers count the filtered listing, as `tether runs --where` shows them.
    assert tether.runs(where="status = completed", runs="1").ids == [dirs[2].name]


def test_metrics_in_long_form(tmp_path: Path):
    pl = pytest.importorskip("polars")
    dirs = _sweep(tmp_path)
    table = tether.runs(where="status = completed")
    long = tether.metrics(table, "eval/acc")
    assert len(long) == 9 and {r["key"] for r in long} == {"eval/acc"}
    first = [r for r in long if r["run"] == dirs[0].name]
    assert [(r["step"], r["value"]) for r in first] == [(0, 0.5), (1, 0.6), (2, 0.7)]
    assert all(isinstance(r["time"], float) for r in long)
    frame = long.to_polars()
    assert isinstance(frame, pl.DataFrame) and frame.columns == [
        "run",
        "key",
        "step",
        "value",
        "time",
    ]
    # A group, a run spec, and every key.
    assert {r["key"] for r in tether.metrics("2", "train")} == {"train/loss"}
    assert {r["key"] for r in tether.metrics(dirs[0].name)} == {"train/loss", "eval/acc"}
    with pytest.raises(
        tether.TetherError, match="no run logged 'eval/acc1'; did you mean 'eval/acc'"
    ):
        tether.metrics(table, ["eval/acc1"])


def test_import_tether_loads_no_dataframe_library():
    code = (
        "import sys, tether\n"
        "tether.runs\n"
        "print(sorted(m for m in ('pandas', 'polars', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_a_missing_extra_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    _sweep(tmp_path)
    monkeypatch.setitem(sys.modules, "polars", None)  # an import of it now fails
    with pytest.raises(
        MissingExtra,
        match=r"^to_polars\(\) needs polars.*; pip install 'tether\[polars\]' \(or polars\)$",
    ):
        tether.runs().to_polars()


def test_the_digits_demo_as_a_data_frame(tmp_path: Path):
    """The acceptance case: the runs `make demo` makes, one row per completed run with its
    config and metrics as columns; and `tether report 1:4` of them as one sweep report."""
    pytest.importorskip("pandas")
    pytest.importorskip("sklearn")
    from tests.conftest import run_cli
    from tests.demos import run_demo

    runs = tmp_path / "demo-runs"
    run_demo("digits", runs)
    df = tether.runs(where="status = completed", root=runs).to_pandas()
    listing = tether.runs(root=runs)
    assert len(df) == len(listing) == 4  # prepare and three trainings, all completed
    assert list(df["name"]) == ["train", "train", "train", "prepare"]
    trains = df[df["name"] == "train"]
    assert sorted(trains["config.model.kind"]) == ["logistic", "logistic", "svm"]
    assert sorted(trains["config.model.lr"]) == [0.003, 0.01, 0.01]
    assert sorted(trains["config.model.C"]) == [1.0, 1.0, 5]
    assert (trains["metrics.eval/acc"] > 0.9).all()
    long = tether.metrics(tether.runs(where="name = train", root=runs), "eval/acc", root=runs)
    assert {r["run"] for r in long} == set(trains["id"])
    proc = run_cli("report", "1:4", cwd=tmp_path, env={"TETHER_RUNS": str(runs)}, check=True)
    text = (tmp_path / proc.stdout.strip()).read_text()
    assert text.startswith("# Sweep of prepare, train: 4 runs")
    header = next(ln for ln in text.splitlines() if ln.startswith("| # | id |"))
    assert " kind " in header and " lr " in header and "eval/acc" in header
    assert "![eval/acc](plots/eval_acc.png)" in text
