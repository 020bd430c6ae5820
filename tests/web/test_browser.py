"""The page in a real browser: Debian's Chromium driven by Playwright, against a real
`tether view` subprocess. One browser and one server serve the whole module."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

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
