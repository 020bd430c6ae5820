"""The inputs of an operation: its `depends` key, and the check that they form no cycle.

Also the check of every file pattern the project file holds (`sourcecode`, `files`): a
`regex:` pattern must compile (tether.globs owns the dialect)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..globs import has_magic, regex_problem
from .document import Checker, Doc
from .messages import KeyPath, dym, keypath, one_of, parse_keypath
from .model import DependencyDef, Project

DEP_KEYS = ("type", "files", "op", "where", "name", "target")
DEP_TYPES = ("project-files", "run-files", "runs-summary", "dvcfile")
SHORTHAND_KEYS = ("op", "name", "target")
_SHORT_KEY = re.compile(r"([A-Za-z][A-Za-z_-]*)=(.*)\Z", re.S)


class DependsReader(Checker):
    """Dependencies (`depends`) of the operations of a project file."""

    def __init__(self, doc: Doc) -> None:
        super().__init__(doc)
        self.op_names: list[str] = []  # every operation of the file, valid or not

    def globs(self, value: Any, segs: KeyPath, excludes: bool = False) -> list[str]:
        """File patterns as `Checker.globs` takes them, each `regex:` one compiled: one that
        does not is an error naming it."""
        out = super().globs(value, segs, excludes)
        items = value if isinstance(value, list) else [value]
        bad = set()
        for index, item in enumerate(items):
            if not isinstance(item, str):
                continue
            text = item.strip()[1:] if excludes and item.strip().startswith("-") else item
            problem = regex_problem(text)
            if problem is not None:
                where: KeyPath = (*segs, index) if isinstance(value, list) else segs
                self.error(where, f"pattern {text!r}: {problem}")
                bad.add(item)
        return [g for g in out if g not in bad]

    def depends(self, op: str, value: Any, segs: KeyPath) -> list[DependencyDef]:
        items = value if isinstance(value, list) else [value]
        if not isinstance(value, (list, dict, str)):
            self.expected(segs, "a list of dependencies", value)
            return []
        out = []
        names: dict[str, int] = {}
        for index, item in enumerate(items):
            where: KeyPath = (*segs, index) if isinstance(value, list) else segs
            dep = self.dependency(op, item, where)
            if dep is None:
                continue
            stage = dep.name or dep.op  # the stage run.lock records for a run-files input
            if dep.type == "run-files" and stage is not None:
                if stage in names:
                    self.expected(
                        (*where, "name"), f"a stage name not used by depends[{names[stage]}]", stage
                    )
                    continue
                names[stage] = index
            out.append(dep)
        return out

    def dependency(self, op: str, item: Any, segs: KeyPath) -> DependencyDef | None:
        if isinstance(item, str):
            table = self.shorthand(item, segs)
            if table is None:
                return None
        elif isinstance(item, dict):
            table = item
        else:
            self.expected(segs, "a dependency table or a string like 'run-files: op=prepare'", item)
            return None
        if not table:
            self.expected(segs, "a dependency", item)
            return None
        before = len(self.problems)
        for key in table:
            if str(key) not in DEP_KEYS:
                self.unknown_key((*segs, str(key)), DEP_KEYS)
        kind = table.get("type")
        if "type" not in table:
            self.error(segs, f"expected a 'type' ({one_of(DEP_TYPES)}), found none")
        elif kind not in DEP_TYPES:
            hint = dym(kind, DEP_TYPES) if isinstance(kind, str) else ""
            self.expected((*segs, "type"), f"one of {one_of(DEP_TYPES)}", kind, hint=hint)
        dep = DependencyDef(type=kind if isinstance(kind, str) else "", key_path=keypath(segs))
        if "files" in table:
            dep.files = self.globs(table["files"], (*segs, "files"))
        for key in ("op", "where", "name", "target"):
            if key in table:
                text = table[key]
                if not isinstance(text, str) or not text.strip():
                    what = {"op": "an operation name", "where": "a --where expression"}.get(
                        key, "a name" if key == "name" else "a folder"
                    )
                    self.expected((*segs, key), what, text)
                else:
                    setattr(dep, key, text)
        if dep.target is not None:
            target = Path(dep.target)
            if target.is_absolute() or ".." in target.parts or dep.target.startswith(("/", "\\")):
                self.expected((*segs, "target"), "a folder inside the run folder", dep.target)
        if dep.type in ("project-files", "dvcfile"):
            for key in ("op", "where"):
                if key in table:
                    self.error(
                        (*segs, key),
                        f"not used by a {dep.type} dependency (only run-files and "
                        "runs-summary select runs)",
                    )
            if "files" not in table:
                self.error(segs, f"expected 'files' for a {dep.type} dependency, found none")
            if dep.type == "dvcfile":
                for index, name in enumerate(dep.files):
                    if has_magic(name):
                        where: KeyPath = (*segs, "files", index)
                        if isinstance(item, str):
                            where = segs
                        self.expected(
                            where,
                            "the path of data DVC tracks (data.csv) or of its .dvc file",
                            name,
                        )
        elif dep.type in ("run-files", "runs-summary"):
            if dep.type == "run-files" and "op" not in table:
                self.error(segs, "expected 'op', the operation whose runs it reads, found none")
            elif "op" not in table and "where" not in table:
                self.error(
                    segs, "expected 'op' or 'where' to select the upstream runs, found neither"
                )
            if dep.op is not None and dep.op not in self.op_names:
                hint = dym(dep.op, self.op_names)
                self.expected((*segs, "op"), "an operation of this project", dep.op, hint=hint)
            elif dep.op == op and dep.type == "run-files":
                self.error(segs, "an operation cannot depend on its own runs")
        return dep if len(self.problems) == before else None

    def shorthand(self, text: str, segs: KeyPath) -> dict[str, Any] | None:
        """'run-files: op=prepare data.csv' -> {type: run-files, op: prepare, files: [data.csv]}"""
        if not text.strip():
            self.expected(segs, "a dependency", text)
            return None
        kind, colon, rest = text.partition(":")
        if not colon or not kind.strip() or any(c.isspace() for c in kind.strip()):
            self.expected(segs, "'TYPE: ...' like 'run-files: op=prepare'", text)
            return None
        table: dict[str, Any] = {"type": kind.strip()}
        files: list[str] = []
        ok = True
        for word in rest.split():
            m = _SHORT_KEY.match(word)
            if m is None:
                files.append(word)
            elif m.group(1) not in SHORTHAND_KEYS:
                self.unknown_key((*segs, m.group(1)), SHORTHAND_KEYS)
                ok = False
            else:
                table[m.group(1)] = m.group(2)
        if files:
            table["files"] = files
        return table if ok else None

    def check_cycles(self, project: Project) -> None:
        # Only run-files edges: such an op cannot start before an upstream run exists, so a
        # cycle of them can never start. A runs-summary of no runs is an empty summary.
        edges: dict[str, list[tuple[str, str]]] = {}
        for op in project.ops.values():
            edges[op.name] = [
                (dep.op, dep.key_path)
                for dep in op.depends
                if dep.type == "run-files" and dep.op is not None and dep.op != op.name
            ]
        reported: set[frozenset[str]] = set()
        state: dict[str, int] = {}  # 1: on the stack, 2: done
        stack: list[tuple[str, str]] = []  # (op, key path of the edge leaving it)

        def visit(name: str) -> None:
            state[name] = 1
            for upstream, where in edges.get(name, []):
                stack.append((name, where))
                if state.get(upstream) == 1:
                    start = next(i for i, (n, _) in enumerate(stack) if n == upstream)
                    cycle = stack[start:]
                    members = frozenset(n for n, _ in cycle)
                    if members not in reported:
                        reported.add(members)
                        chain = " -> ".join([*(n for n, _ in cycle), upstream])
                        segs = parse_keypath(cycle[0][1])
                        self.error(segs, f"dependency cycle: {chain}")
                elif upstream not in state and upstream in edges:
                    visit(upstream)
                stack.pop()
            state[name] = 2

        for name in edges:
            if name not in state:
                visit(name)
