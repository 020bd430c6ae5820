"""Loading a project file: find it, parse it, validate it, into the records of `model`.

All problems of a file are collected and raised together as one `ProjectError`; unknown
top-level keys are warnings, kept in `Project.warnings`. The rules are documented in
docs/projects.md.
"""

from __future__ import annotations

from pathlib import Path

from ..workspace import PROJECT_FILES, TETHER_FILES, find_project_file, is_gage_file
from .document import Doc
from .formats import FORMATS, read_text
from .gage import GageValidator
from .messages import ProjectError, display_path
from .model import Project
from .validate import Validator


def parse_project_file(path: Path) -> Project:
    """Load and validate one project file; ProjectError (all problems) if anything is wrong."""
    path = Path(path).absolute()
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ProjectError(f"{display_path(path)}: expected a .toml, .yaml or .json file", path)
    doc = Doc(path, read_text(path), fmt)
    try:
        data = doc.parse()
        # gage's files (gage.toml, ...) have gage's schema: top-level ops, `$` settings
        validator = GageValidator(doc) if is_gage_file(path) else Validator(doc)
        project = validator.project(data)
    except RecursionError:
        raise ProjectError(
            f"{doc.name}: nested too deeply (or a YAML alias refers to itself)", path
        )
    if validator.problems:
        raise ProjectError(validator.problems, path, validator.warnings)
    project.warnings.extend(validator.warnings)
    if path.name in PROJECT_FILES:
        for name in PROJECT_FILES[PROJECT_FILES.index(path.name) + 1 :]:
            if (path.parent / name).is_file():
                project.warnings.append(
                    f"{display_path(path.parent / name)}: ignored, {path.name} comes first"
                )
    return project


def load_project(start: Path | None = None, path: Path | None = None) -> Project:
    """The project of `path`, or of the nearest tether.toml/.yaml/.json from `start` upward."""
    if path is None:
        path = find_project_file(start)
        if path is None:
            here = (start or Path.cwd()).resolve()
            raise ProjectError(
                f"no {', '.join(TETHER_FILES[:-1])} or {TETHER_FILES[-1]} in {here} or a "
                "parent folder; `tether init` writes one"
            )
    return parse_project_file(Path(path))
