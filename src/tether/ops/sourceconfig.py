"""Config from source files, applied: the run's staged copy of `hello.py` gets `name = "Mike"`.

A flag whose `FlagDef.target` names a source file (`config = "hello.py"`, `"add.py#x"`) is
applied by rewriting the copy staged in the run folder, in place: only the source span of the
value changes (project/sourcekeys.py), so comments and layout stay, and the script needs no
change to read its flags. The project's own file is never touched. A value equal to the file's
own is left as written.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import TetherError
from ..fsio import atomic_write_text
from ..project.model import OpDef
from ..project.sourcekeys import SourceError, kind_of, read_keys, rewrite


def targets(op: OpDef, values: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """file -> {key in the file: value}, for the flags of `values` that live in source files."""
    out: dict[str, dict[str, Any]] = {}
    for name, value in values.items():
        flag = op.flags.get(name)
        if flag is None or flag.target is None or flag.target_key is None:
            continue
        out.setdefault(flag.target, {})[flag.target_key] = value
    return out


def apply_to_staged(
    op: OpDef, values: Mapping[str, Any], run_dir: Path, project_root: Path
) -> list[str]:
    """Write `values` (every flag of the trial) into the run's copies of their source files;
    the files rewritten. A file the sourcecode rules left out is copied in first."""
    changed = []
    for rel, wanted in targets(op, values).items():
        dest = run_dir / rel
        if not dest.is_file():
            source = project_root / rel
            if not source.is_file():
                raise TetherError(f"config: {rel} is not in the project folder any more")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest)
        text = dest.read_text(encoding="utf-8")
        kind = kind_of(dest)
        assert kind is not None
        try:
            keys = read_keys(dest, text)
        except (SourceError, ValueError) as exc:
            raise TetherError(f"config: the staged {rel} cannot be read ({exc})") from None
        missing = [k for k in wanted if k not in keys]
        if missing:
            raise TetherError(f"config: {rel} has no key {missing[0]!r} any more")
        # 1 and 1.0, 1 and True are equal but not the same literal
        edits = {
            k: v
            for k, v in wanted.items()
            if keys[k].value != v or type(keys[k].value) is not type(v)
        }
        if not edits:
            continue
        try:
            new = rewrite(text, kind, keys, edits)
        except ValueError as exc:
            raise TetherError(f"config: {rel}: {exc}") from None
        atomic_write_text(dest, new)
        changed.append(rel)
    return changed
