"""An empty `@tether.experiment` run against an empty `@hydra.main` app.

Both are fresh `python script.py` processes started from a temporary folder, with a tiny YAML
config and a function body of `pass`:

- tether: `@tether.experiment(config="conf.yaml")` inside a throwaway git repository, so a run
  does everything a real one does: load the config, write run.lock, take the source snapshot
  (a commit in refs/tether/snapshots/), record state.json and add the run to the SQLite index.
  TETHER_RUNS points at a temporary folder.
- hydra: `@hydra.main(version_base=None, config_path="conf", config_name="config")`, which
  writes its outputs/ folder (config copies, log) into its temporary folder.

Goal: tether <= 0.4 x hydra (medians). `python -c "import omegaconf"` is shown for context: both
load OmegaConf, so it is a cost neither can avoid without giving it up. After timing, the script
checks that every tether run completed with a snapshot and an index, so a broken run can't pass
as a fast one.

    .venv-bench/bin/python bench/bench_experiment.py      # or: make bench
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from benchlib import (
    BenchError,
    Command,
    begin,
    fail,
    precompile_tether,
    print_table,
    ratio_line,
    ratio_row,
    record,
    repeat_count,
    time_commands,
    versions,
    versions_line,
    warmup_count,
)

GOAL = 0.4

CONFIG_YAML = "lr: 0.1\nepochs: 3\nmodel:\n  name: mlp\n  width: 64\nsave_dir: ???\n"
HYDRA_YAML = "lr: 0.1\nepochs: 3\nmodel:\n  name: mlp\n  width: 64\n"

TETHER_SCRIPT = """\
import tether


@tether.experiment(config="conf.yaml")
def main(cfg):
    pass


if __name__ == "__main__":
    main()
"""

# The same run without its source snapshot: the breakdown below, not a goal.
NOSNAP_SCRIPT = TETHER_SCRIPT.replace('config="conf.yaml"', 'config="conf.yaml", snapshot=False')

# What an empty run imports (the modules of its path), without running anything.
IMPORTS = "import omegaconf, yaml, tether, tether.api, tether.session.start, tether.store"

HYDRA_SCRIPT = """\
import hydra


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg):
    pass


if __name__ == "__main__":
    main()
"""

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@localhost",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@localhost",
}


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), *args],
        check=True,
        capture_output=True,
        env=dict(os.environ, **GIT_IDENTITY),
    )


def make_tether_project(folder: Path) -> Path:
    """A git repository with train.py and conf.yaml committed, like a small real project."""
    folder.mkdir()
    (folder / "train.py").write_text(TETHER_SCRIPT, encoding="utf-8")
    (folder / "nosnap.py").write_text(NOSNAP_SCRIPT, encoding="utf-8")
    (folder / "conf.yaml").write_text(CONFIG_YAML, encoding="utf-8")
    (folder / ".gitignore").write_text("__pycache__/\n", encoding="utf-8")
    _git(folder, "init", "-q", "-b", "main")
    _git(folder, "add", "-A")
    _git(folder, "commit", "-q", "-m", "bench project")
    return folder / "train.py"


def make_hydra_app(folder: Path) -> Path:
    (folder / "conf").mkdir(parents=True)
    (folder / "app.py").write_text(HYDRA_SCRIPT, encoding="utf-8")
    (folder / "conf" / "config.yaml").write_text(HYDRA_YAML, encoding="utf-8")
    return folder / "app.py"


def check_tether_runs(runs: Path, expected: int) -> None:
    """Every timed tether run must have completed, with a snapshot, and be in the index."""
    locks = sorted(runs.glob("*/run.lock"))
    if len(locks) != expected:
        raise BenchError(f"expected {expected} tether runs in {runs}, found {len(locks)}")
    for lock in locks:
        state = json.loads((lock.parent / "state.json").read_text(encoding="utf-8"))
        if state.get("status") != "completed":
            raise BenchError(f"run {lock.parent.name} ended {state.get('status')!r}")
        sources = yaml.safe_load(lock.read_text(encoding="utf-8")).get("sources") or []
        if not any(source.get("commit") for source in sources):
            raise BenchError(f"run {lock.parent.name} has no source snapshot in run.lock")
    with sqlite3.connect(runs / "index.db") as db:
        (indexed,) = db.execute("SELECT count(*) FROM runs").fetchone()
    if indexed != expected:
        raise BenchError(f"index.db lists {indexed} runs, {expected} were made")


def check_snapshots(repo: Path, expected: int) -> None:
    out = subprocess.run(
        ["git", "-C", str(repo), "for-each-ref", "refs/tether/snapshots/"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found = len(out.splitlines())
    if found != expected:
        raise BenchError(f"expected {expected} snapshot refs, found {found}")


def main() -> int:
    repeat = repeat_count(20)
    warmup = warmup_count()
    begin()
    precompile_tether()
    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="tether-bench-experiment-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            train = make_tether_project(tmp / "project")
        except subprocess.CalledProcessError as exc:
            return fail(BenchError(f"cannot make the git project: {exc.stderr!r}"))
        app = make_hydra_app(tmp / "hydra")
        runs = tmp / "runs"
        tether_env = dict(os.environ, TETHER_RUNS=str(runs))
        hydra_env = dict(os.environ)
        commands = [
            Command("tether experiment", [python, train.name], cwd=train.parent, env=tether_env),
            Command("hydra main", [python, app.name], cwd=app.parent, env=hydra_env),
            Command("python -c 'import omegaconf'", [python, "-c", "import omegaconf"], cwd=tmp),
            Command("python -c pass", [python, "-c", "pass"], cwd=tmp),
            Command("import omegaconf + tether's run modules", [python, "-c", IMPORTS], cwd=tmp),
            Command(
                "tether experiment, snapshot=False",
                [python, "nosnap.py"],
                cwd=train.parent,
                env=dict(tether_env, TETHER_RUNS=str(tmp / "runs-nosnap")),
            ),
        ]
        try:
            ours, baseline, omegaconf, floor, imports, nosnap = time_commands(
                commands, repeat, warmup
            )
            check_tether_runs(runs, repeat + warmup)
            check_snapshots(train.parent, repeat + warmup)
        except BenchError as exc:
            return fail(exc)
    print(f"empty experiment run, median of {repeat} runs each:")
    print_table([ours, baseline, omegaconf, floor, imports, nosnap])
    print(
        ratio_line(ours, baseline, GOAL, floor) + f"  (import omegaconf {omegaconf.median:.3f} s)"
    )
    found = versions("tether", "hydra-core", "omegaconf", "PyYAML")
    print(versions_line(found))
    rows = [
        ratio_row(
            "empty @tether.experiment run / empty @hydra.main", ours.median, baseline.median, GOAL
        )
    ]
    record(
        "experiment",
        rows,
        versions=found,
        timings=[t.as_dict() for t in (ours, baseline, omegaconf, floor, imports, nosnap)],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
