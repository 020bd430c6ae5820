"""Where a project and its runs are: the project file, the git top, the runs root, the project id.

Runs root, first that applies: an explicit folder (`--runs-dir`), `TETHER_RUNS`, `runs-dir` in
the project file, `<project root>/.tether/runs`, `<git top>/.tether/runs`, `~/.tether/runs`.
Inside a linked git worktree (`git worktree add`) a relative `runs-dir` and the two `.tether/runs`
are taken in the main worktree: runs kept inside a linked worktree would be deleted by
`git worktree remove`, leaving their snapshot refs (shared by all worktrees) behind. An absolute
`runs-dir` is used as written.
Only the few keys needed here are read from the project file (`tether.project` validates all of
it); a broken project file is reported by the commands that load it, the root falls back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from . import git
from .fileformats import strip_json_comments, toml_module

TETHER_FILES = ("tether.toml", "tether.yaml", "tether.json")
# gage's project files (tether.project.gage reads them); in one folder tether's own file wins.
GAGE_FILES = ("gage.toml", "gage.yaml", "gage.json")
PROJECT_FILES = (*TETHER_FILES, *GAGE_FILES)


def is_gage_file(path: Path) -> bool:
    return path.name in GAGE_FILES


def find_project_file(start: Path | None = None) -> Path | None:
    """The nearest tether.toml (or .yaml/.json, or gage's gage.toml/.yaml/.json) in `start` or
    a parent folder."""
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
    if not isinstance(data, dict):
        return {}
    if is_gage_file(project_file):  # gage's settings are `$runs-dir`, `$project-id`, ...
        return {str(k)[1:]: v for k, v in data.items() if str(k).startswith("$")}
    return data


def project_id(start: Path | None = None) -> str | None:
    """The `project-id` of the nearest project file, as written there; None without one."""
    project = find_project_file(start)
    value = read_project_data(project).get("project-id") if project else None
    return str(value) if value else None


def _runs_dir_from_project(project_file: Path, base: Path) -> Path | None:
    data = read_project_data(project_file)
    value = data.get("runs-dir")
    if isinstance(value, str) and value:
        path = Path(os.path.expanduser(value))
        return path if path.is_absolute() else (base / path)
    return None


def in_main_worktree(folder: Path) -> Path:
    """`folder`, or where it sits in the main worktree when it is inside a linked one."""
    top = git.find_top(folder)
    main = git.main_worktree(top) if top is not None else None
    if top is None or main is None:
        return folder
    return main / folder.resolve().relative_to(top)


def resolve_runs_root(
    explicit: str | os.PathLike[str] | None = None, cwd: Path | None = None
) -> Path:
    """First that applies: explicit, TETHER_RUNS, tether.toml runs-dir, project .tether/runs, ~
    (a relative runs-dir and .tether/runs in the main worktree when `cwd` is in a linked one)."""
    if explicit:
        return Path(os.path.expanduser(str(explicit))).absolute()
    env = os.environ.get("TETHER_RUNS")
    if env:
        return Path(os.path.expanduser(env)).absolute()
    project_file = find_project_file(cwd)
    if project_file is not None:
        base = in_main_worktree(project_file.parent)
        configured = _runs_dir_from_project(project_file, base)
        if configured is not None:
            return configured.absolute()
        return base / ".tether" / "runs"
    top = git.find_top(cwd)
    if top is not None:
        return (git.main_worktree(top) or top) / ".tether" / "runs"
    return Path.home() / ".tether" / "runs"
