"""`tether report RUNS...` of a sweep: the differing config and final metrics, overlaid curves
named by what differs, the best run's record, Markdown + PNG/SVG and one HTML page; the SVG
charts and the page open in a real Chromium."""

from __future__ import annotations

import copy
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

import tether
from tests.conftest import run_cli

CHROMIUM = "/usr/bin/chromium"


def _run(cfg: dict[str, Any], name: str = "train", epochs: int = 4) -> tether.Run:
    with tether.start_run(
        copy.deepcopy(cfg), name=name, snapshot=False, capture_output=False
    ) as run:
        lr = cfg["optim"]["lr"]
        for i in range(epochs):
            run.log_metrics({"train/loss": 1 / (1 + lr * 10 * i), "eval/acc": 0.5 + lr * i}, step=i)
    return run


def _sweep() -> list[tether.Run]:
    """Four trainings: lr varies, model.depth varies in one, seed never."""
    runs = [_run({"optim": {"lr": lr}, "model": {"depth": 2}, "seed": 7}) for lr in (0.01, 0.03)]
    runs.append(_run({"optim": {"lr": 0.1}, "model": {"depth": 4}, "seed": 7}))
    runs.append(_run({"optim": {"lr": 0.3}, "model": {"depth": 2}, "seed": 7}))
    return runs


def _table(text: str, heading: str) -> list[list[str]]:
    """The rows (cells) of the first Markdown table after `heading`."""
    part = text.split(heading, 1)[1]
    block: list[str] = []
    for line in part.splitlines()[1:]:
        if line.startswith("|"):
            block.append(line)
        elif block:
            break
    assert block, heading
    return [[c.strip() for c in ln.strip("|").split(" | ")] for ln in block if "---|" not in ln]


def test_sweep_report_of_a_slice(tmp_path: Path):
    runs = _sweep()
    proc = run_cli("report", "1:4", cwd=tmp_path, check=True)
    report = tmp_path / "sweep-report" / "report.md"
    # One report for the four runs, in the working folder by default.
    assert proc.stdout.split() == ["sweep-report/report.md"]
    text = report.read_text()
    assert text.startswith("# Sweep of train: 4 runs")
    header, *rows = _table(text, "## Runs")
    # The config that differs (lr and depth), never the shared seed; then the final metrics.
    assert header[:6] == ["#", "id", "name", "status", "lr", "depth"] and "seed" not in header
    assert header[6:8] == ["eval/acc", "train/loss"] and header[-1] == "best"
    assert [r[4] for r in rows] == ["0.3", "0.1", "0.03", "0.01"]  # newest first, as listed
    assert [r[5] for r in rows] == ["2", "4", "2", "2"]
    assert rows[1][6] == f"{0.5 + 0.1 * 3:.6g}"
    # Best by the first shared metric, eval/acc: no loss, so the largest (lr=0.3).
    assert rows[0][-1] == "best eval/acc (max)" and all(r[-1] == "" for r in rows[1:])
    assert "## Record of the best run: Run train " + runs[3].id[:13] in text
    assert "### Config" in text and "### Environment" in text
    # One overlaid chart per metric, each line named by the values that differ.
    charts = re.findall(r"!\[(.+?)\]\((plots/.+?)\)", text)
    assert charts == [("train/loss", "plots/train_loss.png"), ("eval/acc", "plots/eval_acc.png")]
    for _, link in charts:
        assert (report.parent / link).read_bytes().startswith(b"\x89PNG")


def test_sweep_legends_name_the_differing_values(tmp_path: Path):
    _sweep()
    out = tmp_path / "out"
    run_cli("report", "1:4", "--svg", "-o", str(out), cwd=tmp_path, check=True)
    svg = (out / "plots" / "eval_acc.svg").read_text()
    # matplotlib keeps each text's string in a comment beside its glyphs.
    for label in ("lr=0.3, depth=2", "lr=0.1, depth=4", "lr=0.03, depth=2", "lr=0.01, depth=2"):
        assert label in svg
    assert "seed" not in svg and "train " not in svg


def test_sweep_best_where_and_html(tmp_path: Path):
    runs = _sweep()
    _run({"optim": {"lr": 0.5}, "model": {"depth": 2}, "seed": 7}, name="other")
    proc = run_cli(
        "report",
        "--where",
        "name = train",
        "--best",
        "eval/acc",
        "--html",
        "-o",
        str(tmp_path / "r.md"),
        cwd=tmp_path,
        check=True,
    )
    md, page = (Path(p) for p in proc.stdout.split())
    assert (md.name, page.name) == ("r.md", "r.html")
    text = md.read_text()
    assert "4 runs" in text and "other" not in text.split("## Best run")[0]
    _, *rows = _table(text, "## Runs")
    best = [r for r in rows if r[-1]]
    assert len(best) == 1 and best[0][4] == "0.3" and best[0][-1] == "best eval/acc (max)"
    assert f"`{runs[3].id[:8]}" in text.split("## Best run")[1]
    html = page.read_text()
    assert html.count("<figure") == 2 and html.count("<svg") == 2
    assert "src=" not in html and 'href="plots' not in html  # self-contained: nothing linked
    # --best KEY:max and a key no run has.
    low = run_cli("report", "1:4", "--best", "train/loss:max", "-o", str(tmp_path / "x"))
    assert low.returncode == 0
    xrows = _table((tmp_path / "x" / "report.md").read_text(), "## Runs")[1:]
    # 1:4 is the run named other (lr=0.5) and the three newest trainings: the largest final
    # loss is that of the smallest lr among them.
    assert [(r[4], r[-1]) for r in xrows if r[-1]] == [("0.03", "best train/loss (max)")]
    bad = run_cli("report", "1:4", "--best", "eval/acc1", "-o", str(tmp_path / "y"))
    assert bad.returncode == 2 and "did you mean 'eval/acc'?" in bad.stderr


def _browser_or_skip() -> Any:
    """Playwright's Chromium on the system chromium; a stated skip where it is missing, never
    under CI."""
    why = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        why = "playwright is not installed (pip install playwright)"
        sync_playwright = None
    if why is None and not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        why = f"{CHROMIUM} is missing (apt-get install chromium)"
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must open the SVG charts in Chromium: {why}")
        pytest.skip(why)
    return sync_playwright


def test_svg_charts_and_the_html_page_render_in_chromium(tmp_path: Path):
    sync_playwright = _browser_or_skip()
    _sweep()
    out = tmp_path / "out"
    run_cli("report", "1:4", "--svg", "--html", "-o", str(out), cwd=tmp_path, check=True)
    svgs = sorted((out / "plots").glob("*.svg"))
    assert [p.name for p in svgs] == ["eval_acc.svg", "train_loss.svg"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 800, "height": 500})
            for svg in svgs:
                page.goto(svg.as_uri())
                box = page.evaluate(
                    "(() => { const r = document.documentElement.getBBox();"
                    " return [document.documentElement.tagName, r.width, r.height]; })()"
                )
                assert box[0] == "svg" and box[1] > 300 and box[2] > 150, (svg, box)
                shot = tmp_path / f"{svg.stem}.png"
                page.screenshot(path=str(shot))
                assert _colours(shot) > 3, svg  # lines in several colours, not a blank page
            page.goto((out / "report.html").as_uri())
            sizes = page.evaluate(
                "Array.from(document.querySelectorAll('figure svg'))"
                ".map(s => { const r = s.getBoundingClientRect(); return [r.width, r.height]; })"
            )
            assert len(sizes) == 2 and all(w > 300 and h > 150 for w, h in sizes), sizes
            assert page.locator("table").count() >= 2
        finally:
            browser.close()


def _colours(png: Path) -> int:
    from PIL import Image

    with Image.open(png) as img:
        return len(img.convert("RGB").getcolors(maxcolors=1 << 20) or [])


def test_differing_values_labels_and_the_best_rule():
    from tether.track.sweep import best_run, config_labels, differing_keys

    configs = [
        {"optim": {"lr": 0.1}, "model": {"lr": 1}, "flag": True, "save_dir": "/a"},
        {"optim": {"lr": 0.2}, "model": {"lr": 1}, "flag": 1, "save_dir": "/b"},
    ]
    # True and 1 differ (a flag is not a count); save_dir is where a run wrote, not an input.
    assert differing_keys(configs) == ["optim.lr", "flag"]
    assert config_labels(configs, ["a", "b"]) == ["lr=0.1, flag=true", "lr=0.2, flag=1"]
    same = [{"x": 1}, {"x": 1}]
    assert config_labels(same, ["01a2 train", "01a3 train"]) == ["01a2 train", "01a3 train"]
    # Labels that collide (a differing key beyond the first four shown) get the fallback.
    a, b = {f"k{i}": 0 for i in range(5)}, {f"k{i}": 1 for i in range(5)}
    c = {**a, "k4": 1}
    labels = config_labels([a, b, c], ["ida", "idb", "idc"])
    assert labels[0] == "k0=0, k1=0, k2=0, k3=0 (+1) [ida]" and labels[2].endswith("[idc]")
    assert labels[1] == "k0=1, k1=1, k2=1, k3=1 (+1)"
    finals = [{"val/loss": 0.3, "acc": 0.9}, {"val/loss": 0.2, "acc": 0.8}]
    assert best_run(finals, "val/loss").index == 1  # a loss: the smallest
    assert best_run(finals, "acc").index == 0  # otherwise the largest
    assert best_run(finals, "acc", "min").index == 1
    assert best_run(finals).key == "acc"  # the first shared metric by name
    assert best_run([{"a": 1.0}, {"b": 2.0}]) is None  # nothing shared, nothing picked
