"""The page in a real browser: Debian's Chromium driven by Playwright, against a real
`tether view` subprocess. One browser and one server serve the whole module."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tether
from tests.conftest import BIN, run_cli

from .conftest import artifacts_dir

CHROMIUM = "/usr/bin/chromium"
IN_CI = os.environ.get("CI", "").lower() == "true"


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright)"
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        return "tether view needs starlette and uvicorn (pip install 'tether[view]')"
    if not shutil.which(CHROMIUM):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


_why = _missing()
if _why and IN_CI:
    raise RuntimeError(f"the browser tests must run in CI: {_why}")
pytestmark = pytest.mark.skipif(_why is not None, reason=_why or "")

# Page scripts run under the page's CSP (no eval): waits are selectors, not JS strings.
# Counts the drawn (non-transparent) pixels of every chart canvas on the page.
INKED = """() => [...document.querySelectorAll('#charts canvas')].map((c) => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) n++;
  return n;
})"""


@pytest.fixture(scope="module")
def server(module_runs) -> Iterator[tuple[str, Path, dict[str, str]]]:
    """`tether view --port 0` on the module's runs: (base URL with token, runs root, env)."""
    root, _ = module_runs
    env = {**os.environ, "TETHER_RUNS": str(root)}
    env.pop("TETHER_DEBUG", None)
    proc = subprocess.Popen(
        [str(BIN / "tether"), "view", "--port", "0", "--runs-dir", str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # printed once the socket listens
    found = re.search(r"http://\S+", line)
    assert found, (
        f"tether view printed {line!r}; stderr: {proc.stderr.read() if proc.stderr else ''}"
    )
    yield found.group(0), root, env
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    try:
        rc = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert rc == 0, proc.stderr.read() if proc.stderr else ""


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return artifacts_dir(tmp_path_factory.mktemp("shots"))


@pytest.fixture
def page(browser, server) -> Iterator[object]:
    """A fresh page that opened the printed URL (so it holds the token cookie)."""
    url, _, _ = server
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda e: errors.append(str(e)))
    tab.goto(url)
    tab.wait_for_selector("table#runs tbody tr")
    yield tab
    context.close()
    assert not errors, errors


def base(server) -> str:
    return server[0].split("?")[0]


def rows(page) -> list[str]:
    return page.eval_on_selector_all("table#runs tbody tr", "rs => rs.map(r => r.dataset.id)")


def test_table_loads_every_run(page, server, shots):
    assert len(rows(page)) == 4
    assert page.inner_text("#count") == "1–4 of 4 runs"
    assert page.locator("tr[data-status=failed] .status-failed").count() == 1
    page.screenshot(path=str(shots / "runs.png"), full_page=True)


def test_filter_with_a_where_expression_and_its_error(page, shots):
    page.fill("#where", "status = completed and config.optim.lr >= 0.2")
    page.press("#where", "Enter")
    page.wait_for_selector("#count:has-text('of 2 runs')")
    assert "where=status" in page.url  # the filter is in the URL
    page.fill("#where", "config.optim.lr >=")
    page.press("#where", "Enter")
    error = page.wait_for_selector("#where-error pre.error")
    text = error.inner_text()
    assert "expected a value" in text and text.rstrip().endswith("^")
    page.screenshot(path=str(shots / "where-error.png"))
    page.go_back()  # back to the good filter
    page.wait_for_selector("#count:has-text('of 2 runs')")


def test_sort_by_a_column(page):
    page.fill("#columns", "config.optim.lr")
    page.press("#columns", "Enter")
    page.wait_for_selector("th[data-field='config.optim.lr']")
    page.click("th[data-field='config.optim.lr']")  # descending first
    page.wait_for_selector("th.sorted-desc")
    cells = page.eval_on_selector_all(
        "table#runs tbody tr td:nth-child(3)", "tds => tds.map(t => t.textContent)"
    )
    assert cells[:3] == ["0.3000", "0.2000", "0.1000"]
    page.click("th[data-field='config.optim.lr']")
    page.wait_for_selector("th.sorted-asc")
    cells = page.eval_on_selector_all(
        "table#runs tbody tr td:nth-child(3)", "tds => tds.map(t => t.textContent)"
    )
    assert cells[0] == "0.1000"


def test_open_a_run_and_its_chart_draws(page, shots):
    page.click("table#runs tbody tr:nth-child(2) td:nth-child(2) a")  # 2: the 10,000-step run
    page.wait_for_selector("#charts canvas")
    assert "trained long" in page.wait_for_selector("#log:not(:empty)").inner_text()
    inked = page.evaluate(INKED)
    assert inked and all(n > 200 for n in inked), inked
    assert page.locator("#files a", has_text="report.html").count() == 1
    shown = page.inner_text("main")
    assert "[object" not in shown and "null" not in shown  # nothing drawn from a missing value
    page.fill("#diff-other", "3")  # the run before it: another learning rate
    page.press("#diff-other", "Enter")
    assert "optim.lr" in page.wait_for_selector("#diff table").inner_text()
    page.screenshot(path=str(shots / "run.png"), full_page=True)


def test_compare_three_runs(page, server, shots):
    for n in (2, 3, 4):
        page.check(f"table#runs tbody tr:nth-child({n}) input[type=checkbox]")
        page.wait_for_selector(f"#compare-button:has-text('compare ({n - 1})')")
    page.click("#compare-button")
    page.wait_for_selector("#charts canvas")
    headers = page.eval_on_selector_all("th.config-key", "ths => ths.map(t => t.textContent)")
    assert headers == ["optim.lr", "model"]  # only the keys that differ
    assert page.locator("table#compare tbody tr").count() == 3
    inked = page.evaluate(INKED)
    assert len(inked) == 2 and all(n > 200 for n in inked), inked
    # Curves are named by what differs, not by ids.
    legend = page.eval_on_selector_all(".u-legend .u-series th", "s => s.map(t => t.textContent)")
    assert any("optim.lr=0.3" in text and "model=long" in text for text in legend), legend
    page.screenshot(path=str(shots / "compare.png"), full_page=True)
    page.check("#all-keys")
    page.wait_for_selector("th.config-key:has-text('epochs')")
    page.go_back()
    page.wait_for_selector("th.config-key:has-text('epochs')", state="detached")
    assert page.locator("th.config-key").count() == 2


def test_label_a_run_and_see_it_in_the_cli(page, server):
    _, root, env = server
    page.click("table#runs tbody tr:nth-child(3) td:nth-child(2) a")
    page.wait_for_selector("#label-input")
    run_id = page.url.rsplit("/", 1)[-1]
    page.fill("#label-input", "from-browser")
    page.click("#label-save")
    page.wait_for_selector("#label-text:has-text('from-browser')")
    page.fill("#tag-input", "+good")
    page.click("#tag-save")
    page.wait_for_selector("#attrs .tag:has-text('good')")
    shown = json.loads(
        run_cli("--runs-dir", str(root), "show", run_id, "--json", env=env, check=True).stdout
    )
    assert shown["label"] == "from-browser" and shown["tags"] == ["good"]
    listed = run_cli("--runs-dir", str(root), "runs", env=env, check=True).stdout
    assert "from-browser" in listed


def test_a_page_without_the_token_cannot_write(browser, server):
    """Opened without ?token= (no cookie), reads work on loopback but a label is refused."""
    context = browser.new_context()
    tab = context.new_page()
    tab.goto(base(server) + "#/run/2")
    tab.wait_for_selector("#label-input")
    tab.fill("#label-input", "sneaky")
    tab.click("#label-save")
    assert "token" in tab.wait_for_selector("#attr-error:not([hidden])").inner_text()
    context.close()


def api(server, path: str, **params: str) -> Any:
    """A read of the server's API (loopback: no token needed)."""
    query = urllib.parse.urlencode(params)
    with urllib.request.urlopen(f"{base(server).rstrip('/')}{path}?{query}", timeout=30) as answer:
        return json.loads(answer.read())


def ids(server, where: str) -> list[str]:
    return [r["id"] for r in api(server, "/api/runs", where=where)["runs"]]


# The band of a grouped chart: at the x nearest the middle where the group's max and min
# differ, the canvas pixel a quarter of the way from max to min (inside the band, away from the
# mean line drawn half-way) and one as far above the max (outside). uPlot's valToPos with
# canvas pixels gives device pixels on the chart's canvas.
BAND = """(key) => {
  const box = document.querySelector(`.chart[data-key="${key}"]`);
  const u = box.chart;
  const [hi, lo] = box.bands[0];
  const xs = u.data[0];
  let best = -1;
  for (let i = 0; i < xs.length; i++) {
    const a = u.data[hi][i], b = u.data[lo][i];
    if (a === null || b === null || a - b <= 0) continue;
    if (best < 0 || Math.abs(i - xs.length / 2) < Math.abs(best - xs.length / 2)) best = i;
  }
  const x = Math.round(u.valToPos(xs[best], 'x', true));
  const yHi = u.valToPos(u.data[hi][best], 'y', true);
  const yLo = u.valToPos(u.data[lo][best], 'y', true);
  const ctx = u.ctx;
  const px = (y) => [...ctx.getImageData(x, Math.round(y), 1, 1).data];
  return { gap: yLo - yHi, inside: px(yHi + (yLo - yHi) / 4), outside: px(yHi - (yLo - yHi) / 4) };
}"""

# uPlot draws the axis label on its canvas: the chart's own option says it.
XLABEL = """([key, label]) => {
  const box = document.querySelector(`.chart[data-key="${key}"]`);
  return box && box.chart && box.chart.axes[0].label === label;
}"""
CHART = '(key) => document.querySelector(`.chart[data-key="${key}"]`).chart.data'
# Drawn pixels of one canvas, by id.
CANVAS_INK = """(id) => {
  const c = document.getElementById(id);
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) n++;
  return n;
}"""


def test_compare_groups_with_a_band_smooths_and_plots_by_time(page, server, shots):
    mlp = ids(server, "config.model = mlp")
    broken = ids(server, "status = failed")
    assert len(mlp) == 2 and len(broken) == 1
    runs = ",".join(mlp + broken)
    page.goto(f"{base(server)}#/compare?runs={runs}")
    page.wait_for_selector(".chart[data-key='eval/acc'] canvas")
    raw = page.evaluate(CHART, "eval/acc")
    page.select_option("#group-by", "model")
    page.wait_for_selector(".u-legend th:has-text('model=mlp (2)')")
    assert "group=model" in page.url
    band = page.evaluate(BAND, "eval/acc")
    assert band["gap"] > 20, band  # the two runs' curves are apart: a band to see
    r, _, b, a = band["inside"]
    assert a > 0 and b > r + 50, band  # the group's blue, filled between max and min
    assert not (band["outside"][3] > 0 and band["outside"][2] > band["outside"][0] + 50), band
    page.screenshot(path=str(shots / "compare-grouped.png"), full_page=True)
    grouped = page.evaluate(CHART, "eval/acc")

    page.locator("#smooth").fill("0.9")
    page.wait_for_url(re.compile(r"smooth=0\.9"))
    page.wait_for_selector("#smooth-value:has-text('0.90')")
    smoothed = page.evaluate(CHART, "eval/acc")
    assert smoothed[0] == grouped[0] and smoothed[1] != grouped[1]  # same x, other means

    page.select_option("#x-axis", "time")
    page.wait_for_url(re.compile(r"x=time"))
    page.wait_for_function(XLABEL, arg=["eval/acc", "seconds"])
    by_time = page.evaluate(CHART, "eval/acc")[0]
    assert by_time[0] == 0 and by_time != raw[0] and max(by_time) < 600  # seconds from start

    page.go_back()  # back: x by step again, smoothing and grouping kept
    page.wait_for_url(lambda u: "x=time" not in u and "smooth=0.9" in u and "group=model" in u)
    page.wait_for_function(XLABEL, arg=["eval/acc", "step"])
    assert page.evaluate(CHART, "eval/acc")[0] == grouped[0]


def test_compare_draws_the_sweep_parallel_coordinates_and_scatter(page, server, shots):
    mlp = ids(server, "config.model = mlp")
    long = ids(server, "config.model = long")
    page.goto(f"{base(server)}#/compare?runs={','.join(mlp + long)}")
    page.wait_for_selector("canvas#parcoords")
    assert page.evaluate(CANVAS_INK, "parcoords") > 500
    assert page.get_attribute("canvas#scatter", "data-points") == "3"
    assert page.evaluate(CANVAS_INK, "scatter") > 200
    page.select_option("#scatter-y", "eval/acc")
    page.wait_for_url(re.compile(r"sy=eval%2Facc|sy=eval/acc"))
    page.wait_for_selector("#sweep h4:has-text('eval/acc against optim.lr')")
    page.screenshot(path=str(shots / "sweep.png"), full_page=True)


def test_pick_a_column_from_the_keys(page):
    page.click("#column-picker summary")
    page.fill("#column-find", "optim")
    page.check("#column-picker label[data-key='config.optim.lr'] input")
    page.wait_for_selector("th[data-field='config.optim.lr']")
    assert "config.optim.lr" in urllib.parse.unquote(page.url)
    # The picker of the table drawn again lists the metric statistics too (fetched after).
    page.wait_for_selector(
        "#column-picker label[data-key='metrics.train/loss.max']", state="attached"
    )
    page.click("#column-picker summary")
    page.uncheck("#column-picker label[data-key='config.optim.lr'] input")
    page.wait_for_selector("th[data-field='config.optim.lr']", state="detached")


def test_lineage_graph_links_the_stages(browser, server, monkeypatch):
    _, root, _ = server
    monkeypatch.setenv("TETHER_RUNS", str(root))
    with tether.start_run({"n": 1}, name="prep", snapshot=False, capture_output=False) as prep:
        pass
    with tether.start_run(
        {"lr": 0.1}, name="fit", snapshot=False, capture_output=False, stages={"prep": None}
    ) as fit:
        pass
    context = browser.new_context()
    tab = context.new_page()
    tab.goto(f"{base(server)}#/run/{fit.id}")
    graph = tab.wait_for_selector("svg#lineage-graph")
    nodes = tab.eval_on_selector_all("svg#lineage-graph a.node", "ns => ns.map(n => n.dataset.id)")
    assert sorted(nodes) == sorted([prep.id, fit.id])
    assert graph.query_selector("path.edge") is not None
    assert "prep" in (graph.text_content() or "")
    tab.click(f"svg#lineage-graph a.node[data-id='{prep.id}']")
    tab.wait_for_url(re.compile(f"#/run/{prep.id}"))
    tab.wait_for_selector("h2:has-text('prep')")
    tab.click("#head-go")  # no snapshot: said so
    tab.wait_for_selector("#head-diff:has-text('recorded')")
    context.close()


def test_virtual_scroll_fetches_rows_beyond_the_first_chunk(browser, server, monkeypatch):
    """A short window fetches 30 runs at a time: scrolling to the end of 40 shows the 40th,
    with only the rows in view (and a margin) in the page."""
    url, root, _ = server
    monkeypatch.setenv("TETHER_RUNS", str(root))
    made = []
    for i in range(40):
        with tether.start_run({"i": i}, name="bulk", snapshot=False, capture_output=False) as run:
            made.append(run.id)
    context = browser.new_context(viewport={"width": 1000, "height": 400})
    tab = context.new_page()
    tab.goto(url.split("#")[0] + "#/runs?where=name%20%3D%20bulk")
    tab.wait_for_selector("#count:has-text('of 40 runs')")
    assert tab.locator("table#runs tbody tr").count() < 40
    tab.eval_on_selector("#runs-scroll", "s => { s.scrollTop = s.scrollHeight; }")
    last = tab.wait_for_selector("tr[data-index='39'][data-id]")
    assert last.get_attribute("data-id") == made[0]  # newest first: the first made is last
    assert tab.locator("table#runs tbody tr").count() < 40
    assert "of 40 runs" in tab.inner_text("#count") and "40 of" in tab.inner_text("#count")
    context.close()


LIVE_MAIN = """
import os, sys, time
from pathlib import Path
import tether

GO = Path(os.environ["VIEW_TEST_GO"])  # argv is the decorated main's

@tether.experiment(config={"save_dir": "???", "steps": 5}, snapshot=False)
def live(cfg, run):
    for step in range(cfg.steps):
        run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
    run.flush()
    print("first half", flush=True)
    print(f"RUN-ID {run.id}", flush=True)
    deadline = time.monotonic() + 120
    while not GO.exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # the test says when to go on
    for step in range(cfg.steps, 2 * cfg.steps):
        run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
    print("second half", flush=True)

live()
"""

POINTS = "() => document.querySelector('.chart[data-key=loss]').chart.data[0].length"


def test_follow_a_running_run_live(browser, server, tmp_path, shots):
    url, _, env = server
    script = tmp_path / "live.py"
    script.write_text(LIVE_MAIN)
    go = tmp_path / "go"
    proc = subprocess.Popen(
        [str(BIN / "python"), str(script)],
        stdout=subprocess.PIPE,
        text=True,
        env={**env, "VIEW_TEST_GO": str(go)},
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        # The run's output goes to output.log and to this pipe: its id is the RUN-ID line.
        lines = iter(proc.stdout.readline, "")
        run_id = next((ln.split()[1] for ln in lines if ln.startswith("RUN-ID ")), "")
        assert run_id, "the live main printed no run id"
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        table = context.new_page()
        table.goto(url)
        table.wait_for_selector(f"tr[data-id='{run_id}'][data-status=running]")
        tab = context.new_page()
        tab.goto(f"{base(server)}#/run/{run_id}")
        tab.wait_for_selector("#run-status:has-text('running')")
        tab.wait_for_selector(".chart[data-key=loss] canvas")
        assert tab.evaluate(POINTS) == 5
        assert "first half" in tab.wait_for_selector("#log:not(:empty)").inner_text()
        go.write_text("")
        assert proc.wait(timeout=120) == 0
        tab.wait_for_selector("#run-status:has-text('completed')")
        tab.wait_for_selector("#log:has-text('second half')")
        assert tab.evaluate(POINTS) == 10
        tab.screenshot(path=str(shots / "live-run.png"), full_page=True)
        # The table updated itself from the server's events: no reload.
        table.wait_for_selector(f"tr[data-id='{run_id}'][data-status=completed]")
        context.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
