"""`tether run train.py lr=0.1`: a Python script run as an operation of its own.

No project file is needed: the op is named after the script, runs `python SCRIPT` in the run
folder with the default source code staged, and its flags are the script's module-level literal
assignments (project/sourcekeys.py), applied to the run's copy of the script. In a project whose
file names no op of that name, the script runs the same way, with the project's settings.
"""

from __future__ import annotations

from pathlib import Path

from ..workspace import find_project_file
from .document import Doc
from .flags import FlagReader
from .messages import ProjectError
from .model import OpDef, Project
from .parse import load_project


def is_script(name: str | None, cwd: Path | None = None) -> bool:
    return bool(name) and str(name).endswith(".py") and ((cwd or Path.cwd()) / str(name)).is_file()


def script_op(script: Path, root: Path, project_file: Path) -> OpDef:
    """The op of one script; ProjectError when the script cannot be read."""
    rel = script.resolve().relative_to(root.resolve()).as_posix()
    reader = FlagReader(Doc(project_file, "", "toml"))
    reader.root = root
    flags, _ = reader.config(rel, (rel, "config"))
    if reader.problems:
        raise ProjectError(reader.problems, script)
    return OpDef(name=rel, exec=["python", rel], flags=flags)


def load_for_run(op: str | None, cwd: Path | None = None) -> Project:
    """The project `tether run OP` runs in: the project file's, or, for a script and no
    project file, a project of that one script (rooted at the current folder)."""
    here = (cwd or Path.cwd()).absolute()
    if not is_script(op, here):
        return load_project(here)
    assert op is not None
    if find_project_file(here) is not None:
        project = load_project(here)
        if op in project.ops:
            return project
        script = (here / op).absolute()
        try:
            inside = script.resolve().is_relative_to(project.root.resolve())
        except OSError:
            inside = False
        if inside:
            project.ops[op] = script_op(script, project.root, project.path)
            return project
    script = (here / op).absolute()
    # the script's folder is the project's: its files are the source code staged
    project = Project(path=script)
    project.ops[op] = script_op(script, script.parent, script)
    project.ops[op].name = op
    return project
