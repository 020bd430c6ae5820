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
    _run({"lr": 0.1, "seed": 1})
    _run({"lr": 0.2, "seed": 1})
    proc = run_cli("plot", "1", "2", "--key", "eval/acc", env=NO_TTY, check=True)
    out = proc.stdout
    assert out.count("eval/acc") == 1  # one chart, titled by the key
    # A legend entry per run naming what differs among them, not ids.
    assert "lr=0.2" in out and "lr=0.1" in out and "seed" not in out
    assert "train/loss" not in out
    # A slice works as well, and a group picks its keys.
    sliced = run_cli("plot", "1:2", "-k", "train", env=NO_TTY, check=True).stdout
    assert "train/loss" in sliced and "train/acc" in sliced and "eval/acc" not in sliced


def test_plot_legend_falls_back_to_ids_when_nothing_differs():
    a = _run({"lr": 0.1})
    b = _run({"lr": 0.1})
    out = run_cli("plot", "1:2", "-k", "eval/acc", env=NO_TTY, check=True).stdout
    assert a.id[:8] in out and b.id[:8] in out and "lr=" not in out
    hidden = run_cli("plot", "1:2", "-k", "eval/acc", "--no-legend", "--title", "Sweep", env=NO_TTY)
    assert a.id[:8] not in hidden.stdout and "Sweep" in hidden.stdout


def test_plot_where_and_slices_count_the_filtered_listing():
    _run({"lr": 0.1})
    _run({"lr": 0.2}, name="other")
    _run({"lr": 0.3})
    out = run_cli("plot", "--where", "name = train", "-k", "eval/acc", env=NO_TTY, check=True)
    assert "lr=0.3" in out.stdout and "lr=0.1" in out.stdout and "lr=0.2" not in out.stdout
    # 2 is the second run of the filtered listing: lr=0.1, not the run named other.
    two = run_cli("plot", "1", "2", "--where", "name = train", "-k", "eval/acc", env=NO_TTY)
    assert two.returncode == 0 and "lr=0.1" in two.stdout and "lr=0.2" not in two.stdout
    none = run_cli("plot", "--where", "name = nothing")
    assert none.returncode == 2 and "no runs match 'name = nothing'" in none.stderr
    bad = run_cli("plot", "9", "--where", "name = train")
    assert bad.returncode == 2 and "no run number 9 among the 2 runs matching" in bad.stderr


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


def test_chart_files_sizes_and_formats(tmp_path: Path):
    _run({"lr": 0.1})
    _run({"lr": 0.2})
    # A path with a chart suffix is one file (not a folder named out.png), every chart in it.
    one = tmp_path / "out.png"
    proc = run_cli("plot", "1:2", "--png", str(one), "--size", "600x300", check=True)
    assert proc.stdout.split() == [str(one)] and one.is_file()
    assert _png_size(one) == (600, 300 * 3)  # three keys: three charts of 600x300
    svg = run_cli("plot", "1:2", "-k", "eval/acc", "-o", str(tmp_path / "c.svg"), check=True)
    text = Path(svg.stdout.strip()).read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text and "lr=0.2" in text
    pdf = run_cli("plot", "1", "--pdf", str(tmp_path / "pdfs"), check=True).stdout.split()
    assert [Path(p).name for p in pdf] == ["train.pdf", "eval.pdf"]
    assert Path(pdf[0]).read_bytes().startswith(b"%PDF")
    default = run_cli("plot", "1", "-k", "eval/acc", "--png", str(tmp_path / "d"), check=True)
    assert _png_size(Path(default.stdout.strip())) == (720, 400)
    bad = run_cli("plot", "1", "--png", str(tmp_path / "x.jpg"))
    assert bad.returncode == 2 and "not 'jpg'" in bad.stderr and "Traceback" not in bad.stderr
    mismatch = run_cli("plot", "1", "--png", str(tmp_path / "x.svg"))
    assert mismatch.returncode == 2 and "a .svg file name for png charts" in mismatch.stderr
    size = run_cli("plot", "1", "--png", str(tmp_path / "e"), "--size", "big")
    assert size.returncode == 2 and "--size 'big': expected WIDTHxHEIGHT" in size.stderr


def test_report_records_code_data_and_environment(tmp_path: Path, monkeypatch: Any):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data.csv"
    data.write_text("x,y\n1,2\n")
    with tether.start_run(
        {"lr": 0.1}, name="fit", snapshot=False, capture_output=False, track=[str(data)]
    ) as run:
        run.log_metrics({"loss": 0.5}, step=0)
    proc = run_cli("report", "1", "--html", check=True, cwd=tmp_path)
    md, page = (Path(p) for p in proc.stdout.split())
    text = md.read_text()
    digest = yaml_lock(run.dir)["data"][0]["digest"]
    assert "## Data" in text and "data.csv" in text and f"`blake3:{digest}`" in text
    assert "## Environment" in text and "| python | CPython" in text and "| packages |" in text
    assert page.name == "report.html" and "<svg" in page.read_text()
    assert f"<code>blake3:{digest}</code>" in page.read_text()


def test_report_of_a_git_run_names_its_commit(tmp_path: Path, monkeypatch: Any):
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()
    for args in (["init", "-q"], ["config", "user.email", "t@x"], ["config", "user.name", "t"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    (repo / "train.py").write_text("print(1)\n")
    subprocess.run(["git", "add", "."], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "one"], cwd=repo, check=True)
    monkeypatch.chdir(repo)
    with tether.start_run({"lr": 0.1}, name="git", capture_output=False) as run:
        run.log_metrics({"loss": 0.5}, step=0)
    text = Path(run_cli("report", "1", check=True).stdout.strip()).read_text()
    commit = yaml_lock(run.dir)["sources"][0]["commit"]
    assert "## Code" in text and f"`{commit}`" in text and "git snapshot" in text


def yaml_lock(run_dir: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load((run_dir / "run.lock").read_text())


def test_diff_takes_where_and_a_slice():
    import json

    _run({"lr": 0.1})
    _run({"lr": 0.2}, name="other")
    _run({"lr": 0.3})
    # 1:2 of the runs named train: lr=0.3 (newest) then lr=0.1, skipping the run named other.
    proc = run_cli("diff", "1:2", "--where", "name = train", "--json", check=True)
    changes = json.loads(proc.stdout)["config"]
    assert [(c["key"], c["old"], c["new"]) for c in changes] == [("lr", 0.3, 0.1)]
    three = run_cli("diff", "1:3")
    assert (
        three.returncode == 2 and "diff takes two runs, OLD and NEW; these select 3" in three.stderr
    )
