"""`tether plot` and `tether report` through the real console script."""

from __future__ import annotations

import copy
import struct
from pathlib import Path
from typing import Any

import tether
from tests.conftest import run_cli

NO_TTY = {"NO_COLOR": "1", "COLUMNS": "100"}


def _run(cfg: dict[str, Any], epochs: int = 5, name: str = "train") -> tether.Run:
    with tether.start_run(
        copy.deepcopy(cfg), name=name, snapshot=False, capture_output=False
    ) as run:
        for i in range(epochs):
            run.log_metrics({"train/loss": cfg["lr"] / (i + 1), "train/acc": i / epochs}, step=i)
            run.log_metrics({"eval/acc": 0.5 + cfg["lr"] * i}, step=i)
    return run


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def test_plot_one_run_in_the_terminal():
    _run({"lr": 0.1})
    proc = run_cli("plot", "1", "--width", "80", "--height", "12", env=NO_TTY, check=True)
    out = proc.stdout
    assert "\x1b[" not in out  # not a terminal: no colour codes
    # One chart per key group: train (loss and acc together), then eval.
    assert out.index("train/loss") < out.index("train/acc") < out.index("eval/acc")
    titles = [line.strip() for line in out.splitlines() if line.strip() in ("train", "eval")]
    assert titles == ["train", "eval"]
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "step" in out


def test_plot_several_runs_compares_one_key():
    a = _run({"lr": 0.1})
    b = _run({"lr": 0.2})
    proc = run_cli("plot", "1", "2", "--key", "eval/acc", env=NO_TTY, check=True)
    out = proc.stdout
    assert out.count("eval/acc") == 1  # one chart, titled by the key
    assert b.id[:8] in out and a.id[:8] in out  # a legend entry per run: short id and name
    assert "train/loss" not in out
    # A slice works as well, and a group picks its keys.
    sliced = run_cli("plot", "1:2", "-k", "train", env=NO_TTY, check=True).stdout
    assert "train/loss" in sliced and "train/acc" in sliced and "eval/acc" not in sliced


def test_plot_png_files(tmp_path: Path):
    run = _run({"lr": 0.1})
    proc = run_cli("plot", "1", "--png", check=True)
    paths = [Path(p) for p in proc.stdout.split()]
    assert paths == [run.dir / "plots" / "train.png", run.dir / "plots" / "eval.png"]
    for path in paths:
        width, height = _png_size(path)
        assert width > 100 and height > 100
    _run({"lr": 0.2})
    out = tmp_path / "cmp"
    proc = run_cli("plot", "1:2", "--png", str(out), "-k", "eval/acc,train/loss", check=True)
    assert proc.stdout.split() == [str(out / "train_loss.png"), str(out / "eval_acc.png")]
    several = run_cli("plot", "1", "2", "--png")
    assert several.returncode == 2 and "give --png DIR" in several.stderr


def test_plot_unknown_key_suggests():
    _run({"lr": 0.1})
    proc = run_cli("plot", "1", "--key", "eval/accc")
    assert proc.returncode == 2
    assert proc.stderr.startswith("tether: error: no metric 'eval/accc'; did you mean 'eval/acc'?")
    assert "train/loss" in proc.stderr and proc.stdout == ""


def test_plot_a_run_without_metrics():
    with tether.start_run({}, name="quiet", snapshot=False, capture_output=False):
        pass
    proc = run_cli("plot", "1")
    assert proc.returncode == 2
    assert "has no metrics to plot (nothing logged" in proc.stderr
    # Among several runs, it is left out with a note; the others are drawn.
    _run({"lr": 0.1})
    proc = run_cli("plot", "1", "2", "-k", "eval/acc", env=NO_TTY, check=True)
    assert "quiet has no metrics to plot" in proc.stderr and "left out" in proc.stderr
    assert "eval/acc" in proc.stdout


def test_plot_unknown_run():
    proc = run_cli("plot", "nosuchrun")
    assert proc.returncode == 2 and "no run matches 'nosuchrun'" in proc.stderr


def test_report_writes_markdown_with_pngs(tmp_path: Path):
    run = _run({"lr": 0.1, "model": {"kind": "svm"}})
    proc = run_cli("report", "1", check=True)
    path = run.dir / "report.md"
    assert proc.stdout.strip() == str(path)
    text = path.read_text()
    assert text.startswith(f"# Run train {run.id[:13]}")
    assert "| status | completed |" in text and "| model.kind | svm |" in text
    assert "| key | last | min | max | step |" in text
    assert "| eval/acc | 0.9 | 0.5 | 0.9 | 4 |" in text
    for name in ("train", "eval"):
        assert f"![{name}](plots/{name}.png)" in text
        assert _png_size(run.dir / "plots" / f"{name}.png")[0] > 100
    other = tmp_path / "reports" / "r.md"
    proc = run_cli("report", run.id[:13], "-o", str(other), "--no-plots", check=True)
    assert proc.stdout.strip() == str(other)
    assert "## Plots" not in other.read_text() and "| train/acc |" in other.read_text()
    bad = run_cli("report", "1", "-k", "nope")
    assert bad.returncode == 2 and "no metric 'nope'" in bad.stderr


def test_report_takes_one_run():
    _run({"lr": 0.1})
    _run({"lr": 0.2})
    proc = run_cli("report", "1:2")
    assert proc.returncode == 2 and "this command takes one" in proc.stderr
