"""gage's project files (gage.toml, gage.yaml, gage.json) read onto tether's model.

gage's schema differs from tether's in three ways, mapped here:
- operations are top-level tables (`[train]`), project settings `$`-prefixed keys
  (`$runs-dir`, `$namespace`, `$project-id`);
- every `config` string selects keys of a source file (`hello.py`, `add.py#x`, `#y`,
  `conf.json#**`), and `[[train.config]]` tables add `prefix`, `strip-prefix`, `description`;
  a run gets the values written into its staged copy of the file (ops/sourceconfig.py);
- `exec` may be a table of phases run in order: stage-sourcecode, stage-dependencies,
  stage-runtime, run, finalize-run (`finalize` is read as finalize-run).

Operation keys tether has no use for yet are refused with a message naming them; nothing is
silently dropped. docs/coming-from-gage.md lists what maps to what.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from .messages import KeyPath, dym, one_of
from .model import OpDef, Project
from .validate import Validator

PROJECT_SETTINGS = ("$runs-dir", "$namespace", "$project-id", "$schema")
GAGE_OP_KEYS = (
    "exec",
    "description",
    "config",
    "sourcecode",
    "depends",
    "default",
    "version",
    "listing-description",
    "output-summary",
    "progress",
    "output-scalars",
    "needed",
)
# In the order gage runs them (the run's config is applied after stage-sourcecode); `run` is
# the op's command (OpDef.exec).
PHASES = (
    "stage-sourcecode",
    "stage-runtime",
    "stage-dependencies",
    "resolve-dependencies",
    "run",
    "finalize-run",
)
PHASE_ALIASES = {"finalize": "finalize-run"}
NO_COMMAND = ":"  # phases without a `run`: the shell's no-op runs in its place
_NAMESPACE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")


class GageValidator(Validator):
    """A gage file's data -> a `Project`, with tether's file:line messages."""

    all_strings_select = True
    op_keys = GAGE_OP_KEYS

    def op_segs(self, name: str) -> KeyPath:
        return (name,)

    def project(self, data: Any) -> Project:
        project = Project(path=self.doc.path, dialect="gage")
        if data is None:
            data = {}
        if not isinstance(data, dict):
            self.expected((), "a table of operations and $-settings at the top", data)
            return project
        ops = {str(k): v for k, v in data.items() if not str(k).startswith("$")}
        for key in data:
            word = str(key)
            if word.startswith("$") and word not in PROJECT_SETTINGS:
                self.error(
                    (word,),
                    f"unknown project setting; expected one of {one_of(PROJECT_SETTINGS)}"
                    f"{dym(word, PROJECT_SETTINGS)}",
                )
        if "$project-id" in data:
            project.project_id = self.gage_project_id(data["$project-id"])
        if "$runs-dir" in data:
            value = data["$runs-dir"]
            if isinstance(value, str) and value.strip():
                path = Path(os.path.expanduser(value))
                project.runs_dir = path if path.is_absolute() else self.root / path
            else:
                self.expected(("$runs-dir",), "a folder path", value)
        if "$namespace" in data:
            value = data["$namespace"]
            if isinstance(value, str) and _NAMESPACE.match(value):
                project.namespace = value
            else:
                self.expected(("$namespace",), "a name of letters, digits, '_', '-', '.'", value)
        self.op_names = list(ops)
        for name, value in ops.items():
            op = self.gage_op(name, value)
            if op is not None:
                project.ops[op.name] = op
        defaults = [op.name for op in project.ops.values() if op.default]
        if len(defaults) > 1:
            self.error((defaults[1], "default"), f"{defaults[0]} is the default already")
        self.check_cycles(project)
        return project

    def gage_project_id(self, value: Any) -> str | None:
        if isinstance(value, str) and value.strip():
            return value.strip()
        self.expected(("$project-id",), "a project id (a UUID)", value)
        return None

    def gage_op(self, name: str, value: Any) -> OpDef | None:
        segs = self.op_segs(name)
        if not isinstance(value, dict):
            self.expected(segs, "a table of operation keys", value)
            return None
        table = dict(value)
        if "sourcecode" in table and isinstance(table["sourcecode"], bool):
            # gage: true = the default selection, false = no source code at all
            table["sourcecode"] = [] if table["sourcecode"] else ["-**"]
            if not table["sourcecode"]:
                del table["sourcecode"]
        if "exec" not in table:
            table["exec"] = NO_COMMAND  # gage allows an op without one; it runs nothing
        elif table["exec"] == "" or table["exec"] == []:
            table["exec"] = NO_COMMAND
        self._phases: dict[str, str | list[str]] = {}
        op = self.op(name, table)
        if op is None:
            return None
        op.key_prefix = ""
        op.phases = self._phases
        if "default" in table:
            if isinstance(table["default"], bool):
                op.default = table["default"]
            else:
                self.expected((*segs, "default"), "true or false", table["default"])
        if "version" in table:
            version = table["version"]
            if isinstance(version, (int, str)) and not isinstance(version, bool):
                op.version = str(version)
            else:
                self.expected((*segs, "version"), "a version number or string", version)
        for key, attr in (
            ("listing-description", "listing_description"),
            ("output-summary", "output_summary"),
            ("progress", "progress"),
        ):
            if key in table:
                text = self.string(table[key], (*segs, key))
                if text is not None and key != "listing-description":
                    try:
                        re.compile(text)
                    except re.error as exc:
                        self.error((*segs, key), f"expected a regular expression ({exc})")
                        continue
                setattr(op, attr, text)
        return op

    def exec_(self, value: Any, segs: KeyPath) -> tuple[str | list[str] | None, str | None]:
        """A command, or gage's table of phases (the `run` phase is the op's command)."""
        if not isinstance(value, dict):
            return self.command(value, segs), None
        run: str | list[str] | None = NO_COMMAND
        for key, command in value.items():
            word = PHASE_ALIASES.get(str(key), str(key))
            if word not in PHASES:
                self.error(
                    (*segs, str(key)),
                    f"unknown exec phase; expected one of {one_of(PHASES)}{dym(str(key), PHASES)}",
                )
                continue
            if command == "" or command == []:
                continue  # an empty phase: nothing to run
            checked = self.command(command, (*segs, str(key)))
            if checked is None:
                continue
            if word == "run":
                run = checked
            else:
                self._phases[word] = checked
        order = {p: i for i, p in enumerate(PHASES)}
        self._phases = dict(sorted(self._phases.items(), key=lambda kv: order[kv[0]]))
        return run, None
