"""Validation of a project file's data: its top level and its operations.

The checks of an operation's flags (`config`) and inputs (`depends`) are `FlagReader`'s and
`DependsReader`'s; `Validator` combines them with the rest.
"""

from __future__ import annotations

import os
import re
import sys
import uuid
from pathlib import Path
from typing import Any

from .depends import DependsReader
from .flags import FlagReader
from .messages import KeyPath, dym, found, one_of
from .model import OpDef, Project

# snapshot: capture.snapshot reads it; secrets: capture.secrets (keys recorded redacted)
# runs: `tether runs`; remotes: `tether remote` (tether.sync.remotes)
TOP_KEYS = ("project-id", "runs-dir", "snapshot", "secrets", "ops", "runs", "remotes")
OP_KEYS = ("exec", "description", "config", "sourcecode", "depends", "output-scalars", "needed")
PLATFORMS = ("linux", "darwin", "windows")

# Words people write for a platform, mapped to the key tether expects.
_PLATFORM_ALIASES = {
    "mac": "darwin",
    "macos": "darwin",
    "macosx": "darwin",
    "osx": "darwin",
    "win": "windows",
    "win32": "windows",
    "win64": "windows",
}
_OP_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
# `{name}` in an exec command: a flag to fill in (not `${VAR}`, not `{{`, not `{a,b}`).
# The same tokens `tether run` fills (ops/exec.py): `{{` and `}}` are literal braces, `${VAR}`
# is the shell's, and only `{key}` with a key-like name is a placeholder (not `{print $1}`).
_PLACEHOLDER = re.compile(r"\{\{|\}\}|(?<!\$)\{([^{}\s]*)\}")
_PLACEHOLDER_KEY = re.compile(r"[A-Za-z_][\w.-]*")
_BUILTIN_PLACEHOLDERS = ("save_dir",)


def current_platform() -> str:
    """The key of `exec` tables for this machine: linux, darwin or windows."""
    if sys.platform.startswith("linux"):
        return "linux"
    if sys.platform in ("win32", "cygwin", "msys"):
        return "windows"
    return sys.platform


class Validator(FlagReader, DependsReader):
    """Turns the data of a project file into a `Project`, collecting every problem on the way."""

    op_keys: tuple[str, ...] = OP_KEYS

    def op_segs(self, name: str) -> KeyPath:
        """Where an operation's table is: `ops.NAME` (gage files: `NAME`)."""
        return ("ops", name)

    def project(self, data: Any) -> Project:
        project = Project(path=self.doc.path)
        if data is None:  # an empty YAML file
            data = {}
        if not isinstance(data, dict):
            self.expected((), "a table of project keys at the top", data)
            return project
        for key in data:
            if str(key) not in TOP_KEYS:
                word = str(key)
                self.warn(
                    (word,),
                    f"unknown top-level key, ignored; expected one of {one_of(TOP_KEYS)}"
                    f"{dym(word, TOP_KEYS)}",
                )
        if "project-id" in data:
            project.project_id = self.project_id(data["project-id"])
        if "runs-dir" in data:
            value = data["runs-dir"]
            if isinstance(value, str) and value.strip():
                path = Path(os.path.expanduser(value))
                project.runs_dir = path if path.is_absolute() else self.root / path
            else:
                self.expected(("runs-dir",), "a folder path", value)
        if "secrets" in data:
            project.secrets = self.secret_keys(data["secrets"])
        ops = data.get("ops", {})
        if not isinstance(ops, dict):
            self.expected(("ops",), "a table of operations", ops)
            ops = {}
        self.op_names = [str(name) for name in ops]
        for name, value in ops.items():
            op = self.op(str(name), value)
            if op is not None:
                project.ops[op.name] = op
        self.check_cycles(project)
        return project

    def secret_keys(self, value: Any) -> list[str]:
        """`secrets = ["api_key", "db.token"]`: config keys recorded redacted."""
        if isinstance(value, list) and all(
            isinstance(k, str) and k.strip() and not any(c.isspace() for c in k.strip())
            for k in value
        ):
            return [k.strip() for k in value]
        self.expected(("secrets",), 'a list of config key names, such as ["api_key"]', value)
        return []

    def project_id(self, value: Any) -> str | None:
        if isinstance(value, str):
            try:
                return str(uuid.UUID(value.strip()))
            except ValueError:
                pass
        self.expected(("project-id",), "a UUID (`tether init` writes one)", value)
        return None

    # operations
    def op(self, name: str, value: Any) -> OpDef | None:
        segs: KeyPath = self.op_segs(name)
        if not _OP_NAME.match(name):
            self.expected(segs, "an operation name of letters, digits, '_', '-' and '.'", name)
            return None
        if isinstance(value, (str, list)):  # `train = "python train.py"`: a command alone
            value = {"exec": value}
        elif not isinstance(value, dict):
            self.expected(segs, "a table of operation keys or a command", value)
            return None
        before = len(self.problems)
        for key in value:
            if str(key) not in self.op_keys:
                self.unknown_key((*segs, str(key)), self.op_keys)
        command: str | list[str] | None = None
        unavailable: str | None = None
        if "exec" in value:
            command, unavailable = self.exec_(value["exec"], (*segs, "exec"))
        else:
            self.error(segs, "expected an 'exec' command, found none")
        op = OpDef(name=name, exec=command if command is not None else "", unavailable=unavailable)
        if "description" in value:
            op.description = self.string(value["description"], (*segs, "description"))
        if "config" in value:
            op.flags, op.config_files = self.config(value["config"], (*segs, "config"))
        if "sourcecode" in value:
            op.sourcecode = self.globs(value["sourcecode"], (*segs, "sourcecode"), excludes=True)
        if "depends" in value:
            op.depends = self.depends(name, value["depends"], (*segs, "depends"))
        if "output-scalars" in value:
            op.output_scalars = self.output_scalars(
                value["output-scalars"], (*segs, "output-scalars")
            )
        if "needed" in value:
            needed = value["needed"]
            if isinstance(needed, bool):
                op.needed = needed
            else:
                self.expected((*segs, "needed"), "true or false", needed)
        if len(self.problems) == before:
            self.check_placeholders(op, (*segs, "exec"))
        return op

    def exec_(self, value: Any, segs: KeyPath) -> tuple[str | list[str] | None, str | None]:
        """(the command for this platform, why there is none): a table of platforms without
        this one makes the op unavailable here, not the project file invalid."""
        if not isinstance(value, dict):
            return self.command(value, segs), None
        platform = current_platform()
        picked: str | list[str] | None = None
        for key, command in value.items():
            word = str(key)
            if word not in PLATFORMS:
                self.error(
                    (*segs, word),
                    f"unknown platform; expected one of {one_of(PLATFORMS)}"
                    f"{dym(word, PLATFORMS, _PLATFORM_ALIASES)}",
                )
                continue
            if isinstance(command, dict):
                self.expected((*segs, word), "a string or a list of strings", command)
                continue
            checked = self.command(command, (*segs, word))
            if word == platform:
                picked = checked
        if platform in value:
            return picked, None
        present = [str(k) for k in value if str(k) in PLATFORMS]
        if not present:  # no command for any platform: a mistake, not a choice
            self.error(segs, f"expected a command for {platform}, found {found(value)}")
            return None, None
        return None, f"no command for {platform} (exec has only {', '.join(present)})"

    def command(self, value: Any, segs: KeyPath) -> str | list[str] | None:
        if isinstance(value, str):
            if not value.strip():
                self.expected(segs, "a command", value)
                return None
            return value
        if isinstance(value, list):
            if not value:
                self.expected(segs, "a command", value)
                return None
            ok = True
            for index, item in enumerate(value):
                if not isinstance(item, str):
                    self.expected((*segs, index), "a string", item)
                    ok = False
            if ok and not value[0].strip():
                self.expected((*segs, 0), "a program", value[0])
                ok = False
            return list(value) if ok else None
        self.expected(
            segs,
            f"a command: a string, a list of strings or a table of platforms ({one_of(PLATFORMS)})",
            value,
        )
        return None

    def check_placeholders(self, op: OpDef, segs: KeyPath) -> None:
        words = [op.exec] if isinstance(op.exec, str) else op.exec
        names = [*op.flags, *_BUILTIN_PLACEHOLDERS]
        for word in words:
            for m in _PLACEHOLDER.finditer(word):
                key = m.group(1)
                if key is None or not _PLACEHOLDER_KEY.fullmatch(key) or key in names:
                    continue
                if any(name.startswith(key + ".") for name in op.flags):
                    continue  # {model}: the table of the flags model.*
                self.warn(segs, f"{{{key}}} names no flag of {op.name}{dym(key, names)}")

    # output scalars
    def output_scalars(self, value: Any, segs: KeyPath) -> bool | list[str]:
        if isinstance(value, bool):
            return value
        items: list[tuple[Any, KeyPath]]
        if isinstance(value, str):
            items = [(value, segs)]
        elif isinstance(value, list):
            items = [(v, (*segs, i)) for i, v in enumerate(value)]
        else:
            self.expected(segs, "true, false or a list of patterns", value)
            return True
        out = []
        for item, where in items:
            if not isinstance(item, str) or not item:
                self.expected(where, "a regular expression", item)
                continue
            # \key and \value stand for the default key and number patterns (ops/scalars.py).
            source = item.replace(r"\key", "(?P<key>k)").replace(r"\value", "(?P<value>0)")
            try:
                pattern = re.compile(source)
            except (re.error, OverflowError, RecursionError, ValueError) as exc:
                self.error(where, f"expected a regular expression, found {found(item)} ({exc})")
                continue
            groups = set(pattern.groupindex)
            if ("key" in groups) != ("value" in groups) or not groups:
                self.expected(
                    where,
                    "a pattern with named groups (?P<key>...) and (?P<value>...), or (?P<NAME>...)",
                    item,
                )
                continue
            out.append(item)
        return out
