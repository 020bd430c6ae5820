"""Where a project and its runs are: the project file, the git top, the runs root, the project id.

Runs root, first that applies: an explicit folder (`--runs-dir`), `TETHER_RUNS`, `runs-dir` in
the project file, `<project root>/.tether/runs`, `<git top>/.tether/runs`, `~/.tether/runs`.
Only the few keys needed here are read from the project file (`tether.project` validates all of
it); a broken project file is reported by the commands that load it, the root falls back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from . import git
from .fileformats import strip_json_comments, toml_module

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


def read_project_data(project_file: Path) -> dict[str, object]:
    """The raw top level of a project file (any of its three formats), {} when unreadable:
    a broken project file is reported by the commands that read it; the root falls back."""
    try:
        if project_file.suffix == ".toml":
            with open(project_file, "rb") as fh:
                data = toml_module().load(fh)
        elif project_file.suffix == ".json":
            data = json.loads(strip_json_comments(project_file.read_text(encoding="utf-8")))
        else:
            import yaml  # heavy: only for a YAML project file

            data = yaml.safe_load(project_file.read_text(encoding="utf-8"))
    except Exception:
        return {}
    return data if isinstance(data, dict) else {}


def project_id(start: Path | None = None) -> str | None:
    """The `project-id` of the nearest project file, as written there; None without one."""
    project = find_project_file(start)
    value = read_project_data(project).get("project-id") if project else None
    return str(value) if value else None


def _runs_dir_from_project(project_file: Path) -> Path | None:
    data = read_project_data(project_file)
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
    top = git.find_top(cwd)
    if top is not None:
        return top / ".tether" / "runs"
    return Path.home() / ".tether" / "runs"
