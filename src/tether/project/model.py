"""Typed records of a project file (tether.toml / tether.yaml / tether.json).

`project.parse` loads and validates a file into these; ops/ runs them. Kept apart so that both
sides share one contract.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class FlagDef:
    """One config flag of an operation: `tether run train lr=0.1`."""

    name: str  # dotted key
    default: Any = None
    description: str | None = None
    source: str | None = None  # the config file it came from, None for the inline table
    choices: list[Any] | None = None  # allowed values, from `{default = .., choices = [..]}`
    # Config from a source file (`config = "train.py"`, `"add.py#x"`): the file, relative to
    # the project root, whose staged copy gets the value written in, and the key there.
    target: str | None = None
    target_key: str | None = None


@dataclass
class DependencyDef:
    """An input staged into the run folder before the operation runs."""

    type: str  # "project-files" | "run-files" | "runs-summary"
    files: list[str] = field(default_factory=list)  # globs (relative to project / upstream run)
    op: str | None = None  # run-files / runs-summary: upstream operation name
    where: str | None = None  # a --where expression selecting the upstream run(s)
    name: str | None = None  # stage name recorded in run.lock (default: op)
    target: str | None = None  # sub-folder of the run folder to stage into (default: ".")
    key_path: str = ""  # e.g. "ops.train.depends[1]", for messages


@dataclass
class OpDef:
    name: str
    exec: str | list[str]  # already picked for this platform; str goes through the shell
    description: str | None = None
    flags: dict[str, FlagDef] = field(default_factory=dict)
    config_files: list[Path] = field(default_factory=list)
    sourcecode: list[str] = field(default_factory=list)  # globs; "-glob" excludes
    depends: list[DependencyDef] = field(default_factory=list)
    output_scalars: bool | list[str] = True  # True: the default patterns; list: custom regexes
    needed: bool = False
    # Why it cannot run on this machine: `exec` has commands for other platforms only (None:
    # it can). The rest of the project stays usable; `tether run` of this op says why not.
    unavailable: str | None = None
    # gage's exec phases other than `run` (stage-sourcecode, stage-dependencies,
    # stage-runtime, finalize-run), in the order they run; `exec` is the `run` phase.
    phases: dict[str, str | list[str]] = field(default_factory=dict)
    default: bool = False  # the op `tether run` runs when given no name
    version: str | None = None  # recorded with each run (an attribute)
    listing_description: str | None = None  # what `tether ops` shows (else `description`)
    output_summary: str | None = None  # gage's `output-summary`: more output-scalars patterns
    progress: str | None = None  # gage's `progress`: a pattern whose `progress` group is a scalar
    key_prefix: str = "ops."  # how messages name its keys: `ops.train.` or gage's `train.`

    def defaults(self) -> dict[str, Any]:
        return {name: flag.default for name, flag in self.flags.items()}


@dataclass
class Project:
    path: Path  # the project file
    project_id: str | None = None
    runs_dir: Path | None = None
    ops: dict[str, OpDef] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)  # config keys recorded redacted
    namespace: str | None = None  # gage's `$namespace`: shown with its ops' names
    dialect: str = "tether"  # "tether" or "gage": the schema the file was written in

    def default_op(self) -> OpDef | None:
        """The op marked `default = true` (gage files), if any."""
        return next((op for op in self.ops.values() if op.default), None)

    @property
    def root(self) -> Path:
        return self.path.parent
