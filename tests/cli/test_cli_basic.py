import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import tether
from tests.conftest import ROOT, run_cli
from tests.demos import reproduce_every_run, run_demo

HEAVY = ("torch", "mlflow", "omegaconf", "rich", "yaml", "sqlite3")


def test_help_imports_nothing_heavy():
    code = (
        "import sys\n"
        "from tether.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "Commands" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "HEAVY="


def test_version():
    proc = run_cli("--version", check=True)
    assert tether.__version__ in proc.stdout


def test_unknown_command_suggests():
    proc = run_cli("rns")
    assert proc.returncode == 2
    assert "did you mean 'runs'" in proc.stderr


def _make_runs(n: int) -> list[str]:
    ids = []
    for i in range(n):
        with tether.start_run(
            {"i": i}, name=f"job{i}", snapshot=False, capture_output=False
        ) as run:
            run.log_metrics({"loss": 1.0 / (i + 1)})
        ids.append(run.id)
    return ids


def test_runs_json_csv_and_table():
    ids = _make_runs(3)
    listing = json.loads(run_cli("runs", "--json", check=True).stdout)
    assert [r["id"] for r in listing] == ids[::-1]
    assert [r["index"] for r in listing] == [1, 2, 3]
    assert all(r["status"] == "completed" for r in listing)
    assert listing[0]["metrics"] == {"loss": pytest.approx(1 / 3)}
    rows = list(csv.DictReader(io.StringIO(run_cli("runs", "--csv", check=True).stdout)))
    assert [r["id"] for r in rows] == ids[::-1]
    assert "metrics.loss" in rows[0]
    table = run_cli("runs", "-n", "2", check=True).stdout
    assert "job2" in table and "job1" in table and "job0" not in table
    assert "2 of 3 runs shown" in table
    assert len(json.loads(run_cli("runs", "list", "--all", "--json", check=True).stdout)) == 3


def test_show_by_index_prefix_and_json():
    ids = _make_runs(2)
    text = run_cli("show", "2", check=True).stdout
    assert ids[0] in text and "config" in text and "run.lock" in text
    data = json.loads(run_cli("show", ids[1][:33], "--json", check=True).stdout)
    assert data["id"] == ids[1]
    assert data["lock"]["config"]["i"] == 1
    assert data["lock"]["config"]["save_dir"] == data["dir"]
    assert data["state"]["status"] == "completed"


def test_runs_on_an_empty_root():
    proc = run_cli("runs", check=True)
    assert "no runs in" in proc.stdout


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(shell: str):
    out = run_cli("completion", shell, check=True).stdout
    assert "_TETHER_COMPLETE" in out


def test_completion_offers_runs():
    ids = _make_runs(1)
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "tether"), "show", ""],
        env={
            **__import__("os").environ,
            "_TETHER_COMPLETE": "bash_complete",
            "COMP_WORDS": "tether show ",
            "COMP_CWORD": "2",
        },
        capture_output=True,
        text=True,
    )
    assert ids[0][:13] in proc.stdout


@pytest.fixture(scope="module")
def digits_demo(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess[str], list[dict]]:
    """One run of `make demo`'s digits script for this module: (runs root, the demo's output,
    the listing right after it; later tests add runs to the root)."""
    runs = tmp_path_factory.mktemp("digits-demo") / "demo-runs"
    proc = run_demo("digits", runs)
    listing = json.loads(run_cli("runs", "--json", env={"TETHER_RUNS": str(runs)}).stdout)
    return runs, proc, listing


def test_demo_end_to_end(digits_demo: tuple[Path, subprocess.CompletedProcess[str], list[dict]]):
    """`make demo`'s script: prepare -> 3 trains, all completed, each logging per-epoch metrics;
    it ends with a terminal chart and a report.md whose PNGs are real images; reindex gives the
    same listing; lineage links the stages."""
    runs, proc, listing = digits_demo
    assert "test accuracy" in proc.stdout
    here = {"TETHER_RUNS": str(runs)}
    assert [r["name"] for r in listing] == ["train", "train", "train", "prepare"]
    assert {r["status"] for r in listing} == {"completed"}
    for row in listing[:3]:
        lock = yaml.safe_load((Path(row["dir"]) / "run.lock").read_text())
        assert lock["config"]["model"]["kind"] in ("logistic", "svm")
        assert lock["env"]["python"] and lock["env"]["packages_digest"]
        assert lock["stages"][0]["run"] == listing[3]["id"]
        assert lock["data"][0]["digest"]
        assert row["metrics"]["eval/acc"] > 0.9
        # One row per epoch, logged through History, with the three keys.
        epochs = lock["config"]["model"]["epochs"]
        lines = (Path(row["dir"]) / "metrics.jsonl").read_text().splitlines()
        rows = [json.loads(line) for line in lines]
        assert [r["step"] for r in rows] == list(range(epochs))
        assert all({"train/loss", "train/acc", "eval/acc"} <= set(r) for r in rows)
    # The demo ends with terminal charts and a report with PNG charts of the newest run.
    out = proc.stdout
    tail = out[out.index("== tether plot 1 ") :]
    assert "train/loss" in tail and "eval/acc" in tail and "step" in tail and "┌" in tail
    newest = Path(listing[0]["dir"])
    report = newest / "report.md"
    assert str(report) in out
    text = report.read_text()
    assert listing[0]["id"] in text and "completed" in text
    assert "| eval/acc |" in text and "| model.kind | svm |" in text
    pngs = sorted((newest / "plots").glob("*.png"))
    assert [p.name for p in pngs] == ["eval.png", "train.png"]
    for png in pngs:
        assert f"](plots/{png.name})" in text
        width, height = png_size(png)
        assert width > 100 and height > 100
        from matplotlib.image import imread

        pixels = imread(png)  # decodes the whole image: a truncated or corrupt file fails here
        assert pixels.shape[:2] == (height, width)
        assert pixels.std() > 0  # not a blank canvas
    before = json.loads(run_cli("runs", "--all", "--json", env=here, check=True).stdout)
    (runs / "index.db").unlink()
    run_cli("runs", "reindex", env=here, check=True)
    again = json.loads(run_cli("runs", "--all", "--json", env=here, check=True).stdout)
    assert again == before
    lineage = run_cli("lineage", listing[0]["id"], env=here, check=True).stdout
    assert "train" in lineage and "prepare" in lineage


def test_every_demo_run_reproduces(
    digits_demo: tuple[Path, subprocess.CompletedProcess[str], list[dict]],
):
    """Each run of the demo reproduces with identical inputs (the `${stage:...}` upstream
    included) and metrics, and so does a reproduction of a reproduction."""
    runs, _, listing = digits_demo
    made = reproduce_every_run(runs, [r["id"] for r in listing], cwd=ROOT)
    reproduce_every_run(runs, [made[listing[0]["id"]]], cwd=ROOT)


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's signature and IHDR chunk; fails for anything else."""
    import struct

    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert head[12:16] == b"IHDR", f"{path}: no IHDR chunk first"
    width, height = struct.unpack(">II", head[16:24])
    return width, height
