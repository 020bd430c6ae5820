"""Import budgets: what importing a part of tether loads (in the style of click's test_imports).

Each check runs in a fresh interpreter, so modules loaded by this test process do not count.
A failure names the heavy modules that were loaded, and `python -X importtime -c "import X"`
shows which import brought them in.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# Libraries that must load only when a run, a config or a command needs them.
HEAVY = ("torch", "mlflow", "omegaconf", "rich", "click", "matplotlib", "wandb", "yaml", "numpy")


def _loaded(code: str) -> set[str]:
    probe = (
        "import sys\n"
        f"{code}\n"
        "import json\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


HELP = "from tether.cli.main import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"


@pytest.mark.parametrize(
    ("code", "allowed"),
    [
        # `tether --help` lists the commands: click, nothing else heavy, no database.
        (HELP, {"click"}),
        ("import tether", set()),
        # The decorators: a script that only decorates its main pays for nothing else.
        ("import tether.api", set()),
        ("import tether.session.start", set()),
        ("import tether.track.history", set()),
    ],
)
def test_import_loads_nothing_heavy(code: str, allowed: set[str]) -> None:
    heavy = (_loaded(code) & set(HEAVY)) - allowed
    assert not heavy, f"{code!r} loaded {sorted(heavy)}"


@pytest.mark.parametrize("module", ["tether.project.parse", "tether.workspace"])
def test_project_and_workspace_need_no_database(module: str) -> None:
    """Reading the project file and finding the runs root happen on every command: they must
    not load SQLite (or anything heavy)."""
    loaded = _loaded(f"import {module}")
    heavy = loaded & {*HEAVY, "sqlite3", "_sqlite3"}
    assert not heavy, f"import {module} loaded {sorted(heavy)}"


def test_help_loads_no_database() -> None:
    loaded = _loaded(HELP)
    assert not loaded & {"sqlite3", "_sqlite3"}


def test_a_listing_into_a_pipe_loads_neither_rich_nor_the_run_machinery(tmp_path: Path) -> None:
    """`tether runs -n 20` printed into a pipe (scripts, `| grep`) needs click and the index
    only: the table is plain text without rich, `runs adopt` and shell completion load on first
    use, and nothing of a run's making (config, YAML, git snapshots, History) is imported."""
    import tether

    root = tmp_path / "runs"
    with tether.start_run({"lr": 0.1}, name="train", runs_dir=root, snapshot=False) as run:
        run.log_metrics({"loss": 0.5}, step=0)
    code = (
        "from tether.cli.main import main\n"
        f"try:\n    main(['--runs-dir', {str(root)!r}, 'runs', '-n', '20'])\n"
        "except SystemExit:\n    pass\n"
        "import sys\n"
        "print(json.dumps(sorted(sys.modules)), file=sys.stderr)"
    )
    # The first listing applies the change journal's entries the run left (reading its
    # run.lock, YAML): the one after it is the ordinary listing measured here.
    for _ in range(2):
        probe = subprocess.run(
            [sys.executable, "-c", "import json\n" + code],
            capture_output=True,
            text=True,
            check=True,
        )
    assert "train" in probe.stdout  # the listing itself was printed
    loaded = set(json.loads(probe.stderr.strip().splitlines()[-1]))
    tops = {m.split(".")[0] for m in loaded}
    heavy = (tops & set(HEAVY)) - {"click"}
    assert not heavy, f"tether runs loaded {sorted(heavy)}"
    unneeded = loaded & {
        "tether.cli.adopt",
        "tether.cli.completion",
        "tether.config",
        "tether.session",
        "tether.track.history",
        "tether.capture",
        "tether.batches",
    }
    assert not unneeded, f"tether runs loaded {sorted(unneeded)}"
