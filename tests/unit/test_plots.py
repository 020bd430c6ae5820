"""tether.track: reading metrics.jsonl back, charts (plotext, matplotlib) and report.md."""

from __future__ import annotations

import io
import json
import math
import os
import struct
from pathlib import Path

import pytest

from tether.errors import TetherError
from tether.track import metrics_file, plots, report


def write_rows(path: Path, rows: list[dict], tail: str = "") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    with open(path / "metrics.jsonl", "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
        fh.write(tail)
    return path


def curves(n: int = 10) -> list[dict]:
    rows = []
    for i in range(n):
        rows.append({"step": i, "t": 1.0 + i, "train/loss": 1 / (i + 1), "train/acc": i / n})
        rows.append({"step": i, "t": 1.5 + i, "eval/acc": 0.5 + i / (2 * n)})
    return rows


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


# -- reading ---------------------------------------------------------------------------------------
def test_reader_skips_a_torn_last_line(tmp_path: Path):
    run = write_rows(tmp_path / "r", curves(3), tail='{"step": 3, "train/lo')
    rows = metrics_file.read_metrics(run)
    assert len(rows) == 6 and rows[-1] == {"step": 2, "t": 3.5, "eval/acc": 0.5 + 2 / 6}
    assert metrics_file.read_metrics(run / "metrics.jsonl") == rows  # the file itself works too


def test_reader_skips_bad_lines_and_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    run = tmp_path / "r"
    run.mkdir()
    (run / "metrics.jsonl").write_bytes(
        b'{"step": 0, "a": 1}\nnot json\n[1, 2]\n\n{"step": 1, "a": 2}\n{"step": 2, "a": \xff'
    )
    with caplog.at_level("WARNING"):
        rows = metrics_file.read_metrics(run)
    assert rows == [{"step": 0, "a": 1}, {"step": 1, "a": 2}]
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "metrics.jsonl:2" in warned and "metrics.jsonl:6" not in warned  # the torn tail: quiet


def test_reader_of_a_missing_file_gives_nothing(tmp_path: Path):
    assert metrics_file.read_metrics(tmp_path) == []
    assert metrics_file.read_metrics(tmp_path / "nope" / "metrics.jsonl") == []


def test_series_use_steps_or_value_numbers():
    rows = [
        {"step": 0, "t": 1, "loss": 2.0, "name": "x", "flag": True},
        {"step": 5, "loss": float("nan"), "lr": 0.1},
        {"loss": 1.0, "lr": 0.05},  # no step: loss falls back to value numbers
        {"step": 7, "acc": 1},
    ]
    series = metrics_file.to_series(rows)
    assert list(series) == ["loss", "lr", "acc"]  # strings and booleans are not metrics
    loss = series["loss"]
    assert not loss.x_is_step and loss.xs == [0.0, 1.0, 2.0]
    assert loss.ys[0] == 2.0 and math.isnan(loss.ys[1])
    assert loss.finite() == ([0.0, 2.0], [2.0, 1.0])
    assert series["acc"].x_is_step and series["acc"].xs == [7.0]


def test_summarize_matches_summary_json_shape():
    rows = [
        {"step": 0, "loss": 3.0},
        {"step": 1, "loss": float("nan")},
        {"step": 2, "loss": 1.0},
        {"acc": 0.5},
        {"step": 3, "big": float("inf")},
    ]
    out = metrics_file.summarize(rows)
    assert out["loss"] == {"last": 1.0, "min": 1.0, "max": 3.0, "step": 2}
    assert out["big"] == {"last": math.inf, "min": math.inf, "max": math.inf, "step": 3}
    assert out["acc"] == {"last": 0.5, "min": 0.5, "max": 0.5}


# -- charts ----------------------------------------------------------------------------------------
def test_keys_are_grouped_by_prefix():
    assert plots.group_of("train/loss") == "train"
    assert plots.group_of("eval/top/1") == "eval"
    assert plots.group_of("loss") == plots.DEFAULT_GROUP
    assert plots.group_of("/odd") == plots.DEFAULT_GROUP
    series = metrics_file.to_series([*curves(3), {"lr": 0.1}])
    charts = plots.charts_for_run(series)
    assert [(c.name, [ln.label for ln in c.lines]) for c in charts] == [
        ("train", ["train/loss", "train/acc"]),
        ("eval", ["eval/acc"]),
        ("metrics", ["lr"]),
    ]
    assert charts[0].xlabel == "step" and charts[2].xlabel == "value number"
    assert [c.filename for c in charts] == ["train.png", "eval.png", "metrics.png"]


def test_select_keys_by_key_group_and_glob():
    keys = ["train/loss", "train/acc", "eval/acc", "lr"]
    assert plots.select_keys(keys, None) == keys
    assert plots.select_keys(keys, ["eval/acc", "train"]) == ["train/loss", "train/acc", "eval/acc"]
    assert plots.select_keys(keys, ["*/acc"]) == ["train/acc", "eval/acc"]
    assert plots.select_keys(keys, ["metrics"]) == ["lr"]
    with pytest.raises(TetherError) as err:
        plots.select_keys(keys, ["eval/acx"])
    assert "no metric 'eval/acx'" in str(err.value)
    assert "did you mean 'eval/acc'?" in str(err.value)
    assert "logged: train/loss, train/acc, eval/acc, lr" in str(err.value)
    with pytest.raises(TetherError, match="no metrics were logged"):
        plots.select_keys([], ["loss"])


def test_several_runs_give_one_chart_per_key():
    a = metrics_file.to_series(curves(3))
    b = metrics_file.to_series([{"step": 0, "eval/acc": 0.9}, {"step": 0, "extra": 1}])
    charts = plots.charts_for_runs([("01a2 train", a), ("01a3 train", b)])
    assert [c.name for c in charts] == ["train/loss", "train/acc", "eval/acc", "extra"]
    eval_chart = charts[2]
    assert [ln.label for ln in eval_chart.lines] == ["01a2 train", "01a3 train"]
    assert [ln.label for ln in charts[0].lines] == ["01a2 train"]
    only = plots.charts_for_runs([("a", a), ("b", b)], ["eval/acc"])
    assert [c.name for c in only] == ["eval/acc"] and len(only[0].lines) == 2
    assert [c.name for c in plots.charts_for_runs([("a", a)])] == ["train", "eval"]
    assert plots.safe_name("eval/acc") == "eval_acc"
    assert plots.safe_name("../x y") == "x_y"


def test_thin_keeps_the_ends():
    xs = [float(i) for i in range(10_001)]
    tx, ty = plots._thin(xs, xs, 1000)
    assert len(tx) <= 1001 and tx[0] == 0 and tx[-1] == 10_000 and tx == ty
    assert plots._thin([1.0], [2.0], 10) == ([1.0], [2.0])
    assert plots._integer_ticks(0, 14) == [0, 5, 10]
    assert plots._integer_ticks(0, 3) == [0, 1, 2, 3]
    assert plots._integer_ticks(100, 100_000)[:2] == [20000, 40000]


def test_terminal_text_without_and_with_colour():
    charts = plots.charts_for_run(metrics_file.to_series(curves(10)))
    text = plots.render_text(charts, width=70, height=14, color=False)
    assert "\x1b[" not in text
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 70
    for word in ("train", "eval", "train/loss", "train/acc", "eval/acc", "step"):
        assert word in text
    assert "┌" in text and "└" in text
    assert "\x1b[" in plots.render_text(charts[:1], width=70, height=14, color=True)


def test_terminal_chart_of_only_nan_values():
    series = metrics_file.to_series([{"step": 0, "loss": float("nan")}])
    text = plots.render_text(plots.charts_for_run(series), width=60, height=10, color=False)
    assert text == "metrics: no finite values to draw\n"


def test_colour_follows_the_stream_and_no_color(monkeypatch: pytest.MonkeyPatch):
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("TERM", raising=False)
    assert plots.use_color(Tty()) and not plots.use_color(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not plots.use_color(Tty())


def test_pngs_are_valid_images(tmp_path: Path):
    from matplotlib.image import imread

    series = metrics_file.to_series(
        [*curves(50), {"step": 0, "bad/x": float("nan")}, {"step": 1, "bad/x": float("inf")}]
    )
    paths = plots.save_pngs(plots.charts_for_run(series), tmp_path / "out")
    assert [p.name for p in paths] == ["train.png", "eval.png", "bad.png"]
    for path in paths:
        width, height = png_size(path)
        assert (width, height) == (720, 400)
        pixels = imread(path)
        assert pixels.shape[:2] == (400, 720) and pixels.std() > 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in paths)


def test_plot_prints_or_writes_pngs(tmp_path: Path):
    run = write_rows(tmp_path / "run", curves(5))
    out = io.StringIO()
    assert plots.plot(run, ["eval"], file=out, width=60, height=10) == []
    assert "eval/acc" in out.getvalue() and "train/loss" not in out.getvalue()
    paths = plots.plot(run, png=True)
    assert paths == [run / "plots" / "train.png", run / "plots" / "eval.png"]
    assert plots.plot(run / "metrics.jsonl", ["train/loss"], png=tmp_path / "elsewhere") == [
        tmp_path / "elsewhere" / "train.png"
    ]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TetherError, match="no metrics to plot"):
        plots.plot(empty)


def test_plotext_6_is_refused_clearly(monkeypatch: pytest.MonkeyPatch):
    import sys
    import types

    fake = types.ModuleType("plotext")
    fake.__version__ = "6.1.0"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "plotext", fake)
    with pytest.raises(plots.MissingDependency, match=r"plotext 6.1.0 is not supported"):
        plots.render_text([])


# -- report ----------------------------------------------------------------------------------------
def test_report_of_a_bare_metrics_folder(tmp_path: Path):
    folder = write_rows(tmp_path / "hist", curves(4))
    path = report.write_report(folder)
    assert path == folder / "report.md"
    text = path.read_text()
    assert text.startswith("# Metrics of hist\n\n## Metrics\n")
    assert "| eval/acc | 0.875 | 0.5 | 0.875 | 3 |" in text
    assert "| train/loss | 0.25 | 0.25 | 1 | 3 |" in text
    assert "![train](plots/train.png)" in text and "![eval](plots/eval.png)" in text
    assert "\n\n\n" not in text


def test_report_of_a_run(tmp_path: Path):
    import tether

    cfg = {"model": {"kind": "svm", "C": 5, "note": "a|b"}, "epochs": 3, "empty": {}}
    with tether.start_run(cfg, name="train", snapshot=False, capture_output=False) as run:
        for i in range(3):
            run.log_metrics({"train/loss": 1.0 / (i + 1), "eval/acc": 0.8 + i / 10}, step=i)
        run.set_label("baseline")
        run.add_tag("demo")
    out = tmp_path / "elsewhere" / "r.md"
    path = report.write_report(run.dir, out, keys=["eval"])
    assert path == out
    text = out.read_text()
    assert text.startswith(f"# Run train {run.id[:13]}\n")
    assert f"| id | `{run.id}` |" in text
    assert "| name | train |" in text and "| status | completed |" in text
    assert "| duration | " in text and "| label | baseline |" in text and "| tags | demo |" in text
    assert "## Config" in text and "| model.kind | svm |" in text and "| model.C | 5 |" in text
    assert "| model.note | a\\|b |" in text and "| epochs | 3 |" in text
    assert "| eval/acc | 1 | 0.8 | 1 | 2 |" in text
    # Only the chart asked for; linked relative to the report's own folder.
    link = Path(os.path.relpath(run.dir / "plots" / "eval.png", out.parent)).as_posix()
    assert link.startswith("../") and f"![eval]({link})" in text
    assert "train.png" not in text
    # No plots at all.
    plain = report.write_report(run.dir, plots=False).read_text()
    assert "## Plots" not in plain and "| train/loss |" in plain


def test_report_table_helpers():
    assert report.flatten({"a": {"b": 1, "c": {"d": None}}, "e": [1, 2], "f": {}}) == [
        ("a.b", 1),
        ("a.c.d", None),
        ("e", [1, 2]),
        ("f", {}),
    ]
    assert report.number(0.123456789) == "0.123457"
    assert report.number(float("nan")) == "nan" and report.number(None) == "-"
    assert report.duration("2026-01-01T00:00:00Z", "2026-01-01T01:02:03Z") == "1:02:03"
    assert report.duration("2026-01-01T00:00:00Z", None) is None
    assert report.table(["k", "v"], [("x", True)]) == "| k | v |\n|---|---|\n| x | true |"


def test_report_of_something_that_is_not_a_folder(tmp_path: Path):
    with pytest.raises(TetherError, match="is not a run folder or a metrics file"):
        report.write_report(tmp_path / "missing")


def test_two_lines_of_disjoint_ranges_get_a_right_axis(tmp_path: Path):
    rows = [{"step": i, "train/loss": 0.1 - i / 100, "train/acc": 0.9 + i / 100} for i in range(5)]
    chart = plots.charts_for_run(metrics_file.to_series(rows))[0]
    assert plots.right_axis(chart) == 1
    text = plots.render_text([chart], width=70, height=12, color=False)
    assert "├0.9" in text  # ticks of the right axis
    width, height = png_size(plots.save_pngs([chart], tmp_path)[0])
    assert (width, height) == (720, 400)
    overlapping = plots.charts_for_run(metrics_file.to_series(curves(5)))[0]
    assert plots.right_axis(overlapping) is None
    three = [*rows, {"step": 5, "train/lr": 5.0}]
    assert plots.right_axis(plots.charts_for_run(metrics_file.to_series(three))[0]) is None


def test_history_plot_and_report(tmp_path: Path):
    import tether

    with tether.start_run({"lr": 0.1}, name="hist", snapshot=False, capture_output=False) as run:
        history = tether.History(run)
        for i in range(4):
            history.update({"train/loss": 1.0 / (i + 1), "eval/acc": 0.5 + i / 10}, step=i)
        out = io.StringIO()
        history.plot(["train"], file=out, width=60, height=10)
        assert "train/loss" in out.getvalue() and "eval/acc" not in out.getvalue()
        assert history.plot(png=True) == [
            run.dir / "plots" / "train.png",
            run.dir / "plots" / "eval.png",
        ]
        path = history.report()
    assert path == run.dir / "report.md"
    text = path.read_text()
    assert "| name | hist |" in text and "| train/loss | 0.25 | 0.25 | 1 | 3 |" in text
    # A History of its own file, outside any run.
    alone = tether.History(path=tmp_path / "alone" / "metrics.jsonl")
    alone.update({"loss": 2.0}, step=0)
    alone.update({"loss": 1.0}, step=1)
    report_path = alone.report()
    assert report_path == tmp_path / "alone" / "report.md"
    assert "| loss | 1 | 1 | 2 | 1 |" in report_path.read_text()
    alone.close()


def test_report_of_a_metrics_file_with_another_name(tmp_path: Path):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "hist.jsonl").write_text(json.dumps({"step": 0, "x/a": 1.5}) + "\n")
    path = report.write_report(folder / "hist.jsonl")
    assert path == folder / "report.md"
    text = path.read_text()
    assert "| x/a | 1.5 | 1.5 | 1.5 | 0 |" in text and "![x](plots/x.png)" in text
