"""Where runs live: the runs root and the files inside a run folder."""

from __future__ import annotations

import os
from pathlib import Path

LOCK = "run.lock"
STATE = "state.json"
ATTRS = "attrs"
OUTPUT = "output.log"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
INDEX = "index.db"

PROJECT_FILES = ("tether.toml", "tether.yaml", "tether.json")


def find_project_file(start: Path | None = None) -> Path | None:
    """The nearest tether.toml (or .yaml/.json) in `start` or a parent folder."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        for name in PROJECT_FILES:
            candidate = folder / name
            if candidate.is_file():
                return candidate
    return None


def find_git_top(start: Path | None = None) -> Path | None:
    # Walking up for .git is much cheaper than spawning `git rev-parse` on every command.
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / ".git").exists():
            return folder
    return None


def _runs_dir_from_project(project_file: Path) -> Path | None:
    if project_file.suffix != ".toml":
        return None
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        with open(project_file, "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, ValueError):
        # A broken project file is reported by the commands that read it; the root falls back.
        return None
    value = data.get("runs-dir")
    if isinstance(value, str) and value:
        path = Path(os.path.expanduser(value))
        return path if path.is_absolute() else (project_file.parent / path)
    return None


def resolve_runs_root(
    explicit: str | os.PathLike[str] | None = None, cwd: Path | None = None
) -> Path:
    """First that applies: explicit, TETHER_RUNS, tether.toml runs-dir, project .tether/runs, ~."""
    if explicit:
        return Path(os.path.expanduser(str(explicit))).absolute()
    env = os.environ.get("TETHER_RUNS")
    if env:
        return Path(os.path.expanduser(env)).absolute()
    project_file = find_project_file(cwd)
    if project_file is not None:
        configured = _runs_dir_from_project(project_file)
        if configured is not None:
            return configured.absolute()
        return project_file.parent / ".tether" / "runs"
    top = find_git_top(cwd)
    if top is not None:
        return top / ".tether" / "runs"
    return Path.home() / ".tether" / "runs"
