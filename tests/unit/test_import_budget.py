"""What each entry point imports: the start-up budgets of issue 19, kept by the modules loaded.

Timings belong to bench/ (bench_startup, bench_experiment, bench_query); these tests keep the
cause of a slow start out: a heavy library, or a part of tether the entry point does not use,
imported on the way. Each runs the entry point in a fresh interpreter and reads sys.modules at
its exit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# Libraries no listing or start of a run should pay for unless it uses them.
HEAVY = ("torch", "numpy", "mlflow", "rich", "pandas", "matplotlib", "optuna", "starlette")

REPORT = (
    "import atexit, json, sys\n"
    "atexit.register(lambda: sys.__stderr__.write('MODULES=' + json.dumps(sorted(sys.modules))))\n"
)


def _modules(code: str, cwd: Path, env: dict[str, str]) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-c", REPORT + code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = [x for x in proc.stderr.splitlines() if x.startswith("MODULES=")]
    assert line, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    return set(json.loads(line[-1].removeprefix("MODULES=")))


def _env(runs: Path) -> dict[str, str]:
    env = dict(os.environ, TETHER_RUNS=str(runs))
    env.pop("TETHER_DEBUG", None)
    return env


def _tether(mods: set[str]) -> set[str]:
    return {m for m in mods if m == "tether" or m.startswith("tether.")}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs root with two finished runs, made in a child so this process stays clean."""
    root = tmp_path_factory.mktemp("budget") / "runs"
    code = (
        "import tether\n"
        "for i in range(2):\n"
        "    with tether.start_run({'i': i}, name='job', snapshot=False, capture_output=False)"
        " as run:\n"
        "        run.log_metrics({'loss': 1.0 / (i + 1)})\n"
    )
    subprocess.run([sys.executable, "-c", code], env=_env(root), check=True, timeout=120)
    return root


def test_help_loads_no_store_no_config(tmp_path: Path) -> None:
    mods = _modules(
        "from tether.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n",
        tmp_path,
        _env(tmp_path / "runs"),
    )
    assert not [m for m in (*HEAVY, "omegaconf", "yaml", "sqlite3") if m in mods]
    assert not [m for m in _tether(mods) if m.startswith(("tether.store", "tether.config"))]


def test_listing_loads_the_store_and_nothing_of_a_run(store: Path, tmp_path: Path) -> None:
    mods = _modules(
        "from tether.cli.main import main\n"
        "try:\n    main(['runs', '-n', '20'])\nexcept SystemExit as e:\n    assert not e.code\n",
        tmp_path,
        _env(store),
    )
    assert "tether.store.index" in mods  # it did list
    heavy = [m for m in (*HEAVY, "omegaconf", "yaml", "shutil", "random") if m in mods]
    assert not heavy, f"a listing imports {heavy}"
    unused = ("tether.config", "tether.capture", "tether.session", "tether.track", "tether.ops")
    assert not sorted(m for m in _tether(mods) if m.startswith(unused))
    # The store's modules a listing needs, the CLI's and the foundation: about 35 today.
    assert len(_tether(mods)) <= 40, sorted(_tether(mods))


def test_empty_experiment_loads_no_cli_and_no_sweeps(tmp_path: Path) -> None:
    (tmp_path / "conf.yaml").write_text("lr: 0.1\nsave_dir: ???\n", encoding="utf-8")
    (tmp_path / "app.py").write_text(
        textwrap.dedent(
            """\
            import tether

            @tether.experiment(config="conf.yaml")
            def main(cfg):
                pass

            main()
            """
        ),
        encoding="utf-8",
    )
    mods = _modules(
        "import runpy, sys\nsys.argv = ['app.py']\nrunpy.run_path('app.py', run_name='__main__')\n",
        tmp_path,
        _env(tmp_path / "runs"),
    )
    assert "tether.session.start" in mods  # it ran
    assert not [m for m in (*HEAVY, "click") if m in mods]
    unused = (
        "tether.cli",
        "tether.config.sweeps",
        "tether.config.multirun",
        "tether.search",
        "tether.track.history",
        "tether.track.sinks",
        "tether.ops",
        "tether.distributed",
        "tether.executors",
        "tether.web",
        "tether.sync",
    )
    assert not sorted(m for m in _tether(mods) if m.startswith(unused))
    assert len(_tether(mods)) <= 65, sorted(_tether(mods))
