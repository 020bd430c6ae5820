"""Import budgets: what importing a part of tether loads (in the style of click's test_imports).

Each check runs in a fresh interpreter, so modules loaded by this test process do not count.
A failure names the heavy modules that were loaded, and `python -X importtime -c "import X"`
shows which import brought them in.
"""

from __future__ import annotations

import json
import subprocess
import sys

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
