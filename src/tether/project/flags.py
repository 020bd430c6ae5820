"""The flags of an operation: its `config` key (inline tables, flag specs, config files)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .document import Checker, Doc
from .formats import CONFIG_SUFFIXES, FORMATS, read_text
from .messages import KeyPath, ProjectError
from .model import FlagDef

FLAG_SPEC_KEYS = ("default", "description", "choices")


def _is_plain(value: Any) -> bool:
    """A value a flag may hold: JSON's kinds (string, number, boolean, null, list, table)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return True
    if isinstance(value, list):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


def _first_unplain(value: Any) -> Any:
    if isinstance(value, list):
        for v in value:
            if not _is_plain(v):
                return _first_unplain(v)
    if isinstance(value, dict):
        for v in value.values():
            if not _is_plain(v):
                return _first_unplain(v)
    return value


_VALUE_KINDS = "a string, number, true/false, null, list or table"


class FlagReader(Checker):
    """The `config` of an operation: inline flag tables, flag specs and config files."""

    def config(self, value: Any, segs: KeyPath) -> tuple[dict[str, FlagDef], list[Path]]:
        flags: dict[str, FlagDef] = {}
        files: list[Path] = []
        entries: list[tuple[Any, KeyPath]]
        if isinstance(value, list):
            entries = [(item, (*segs, index)) for index, item in enumerate(value)]
        elif isinstance(value, (dict, str)):
            entries = [(value, segs)]
        else:
            self.expected(segs, "a table of flags, a config file or a list of them", value)
            return flags, files
        for entry, where in entries:
            if isinstance(entry, dict):
                new = self.inline_flags(entry, where, "")
            elif isinstance(entry, str):
                loaded = self.config_file(entry, where)
                if loaded is None:
                    continue
                path, new = loaded
                files.append(path)
            else:
                self.expected(where, "a table of flags or a config file", entry)
                continue
            self.merge_flags(flags, new, where)
        return flags, files

    def merge_flags(
        self, flags: dict[str, FlagDef], new: dict[str, FlagDef], segs: KeyPath
    ) -> None:
        for name, flag in new.items():
            clash = next(
                (
                    other
                    for other in flags
                    if other != name
                    and (other.startswith(name + ".") or name.startswith(other + "."))
                ),
                None,
            )
            if clash is not None:
                inner, outer = (name, clash) if name.startswith(clash + ".") else (clash, name)
                self.error(
                    segs,
                    f"flag {inner!r} conflicts with flag {outer!r}: a flag cannot also hold "
                    "other flags",
                )
                continue
            flags[name] = flag  # a later entry sets the default again

    def inline_flags(self, table: dict[Any, Any], segs: KeyPath, prefix: str) -> dict[str, FlagDef]:
        out: dict[str, FlagDef] = {}
        for key, value in table.items():
            word = str(key)
            here = (*segs, word)
            if not word:
                self.error(here, "expected a flag name, found an empty key")
                continue
            name = f"{prefix}.{word}" if prefix else word
            if isinstance(value, dict) and value and all(str(k) in FLAG_SPEC_KEYS for k in value):
                flag = self.flag_spec(name, value, here)
                if flag is not None:
                    out[name] = flag
            elif isinstance(value, dict) and value:
                out.update(self.inline_flags(value, here, name))
            elif _is_plain(value):
                out[name] = FlagDef(name=name, default=value)
            else:
                self.expected(here, _VALUE_KINDS, _first_unplain(value))
        return out

    def flag_spec(self, name: str, spec: dict[Any, Any], segs: KeyPath) -> FlagDef | None:
        flag = FlagDef(name=name)
        ok = True
        if "default" in spec:
            default = spec["default"]
            if isinstance(default, dict) or not _is_plain(default):
                self.expected(
                    (*segs, "default"),
                    "a string, number, true/false, null or list",
                    _first_unplain(default) if not isinstance(default, dict) else default,
                )
                ok = False
            else:
                flag.default = default
        if "description" in spec:
            flag.description = self.string(spec["description"], (*segs, "description"))
            ok = ok and flag.description is not None
        if "choices" in spec:
            choices = spec["choices"]
            if not isinstance(choices, list) or not choices:
                self.expected((*segs, "choices"), "a list of values", choices)
                ok = False
            elif not all(_is_plain(c) and not isinstance(c, (dict, list)) for c in choices):
                bad = next(c for c in choices if not _is_plain(c) or isinstance(c, (dict, list)))
                self.expected((*segs, "choices"), "a list of strings, numbers or true/false", bad)
                ok = False
            else:
                flag.choices = list(choices)
                if "default" in spec and flag.default is not None and flag.default not in choices:
                    shown = ", ".join(json.dumps(c) for c in choices)
                    self.expected((*segs, "default"), f"one of {shown}", flag.default)
                    ok = False
        return flag if ok else None

    def config_file(self, name: str, segs: KeyPath) -> tuple[Path, dict[str, FlagDef]] | None:
        if not name.strip():
            self.expected(segs, "a config file", name)
            return None
        path = Path(os.path.expanduser(name))
        if not path.is_absolute():
            path = self.root / path
        if path.suffix.lower() not in CONFIG_SUFFIXES:
            self.expected(segs, "a .yaml, .yml, .json or .toml config file", name)
            return None
        if not path.is_file():
            self.expected(segs, "an existing config file", name)
            return None
        try:
            doc = Doc(path, read_text(path), FORMATS[path.suffix.lower()])
            data = doc.parse()
        except ProjectError as exc:
            self.problems.extend(exc.problems)
            return None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            self.expected((), "a table of config keys at the top", data, doc)
            return None
        flags: dict[str, FlagDef] = {}
        self.file_flags(data, (), "", name, doc, flags)
        return path, flags

    def file_flags(
        self,
        table: dict[Any, Any],
        segs: KeyPath,
        prefix: str,
        source: str,
        doc: Doc,
        out: dict[str, FlagDef],
    ) -> None:
        # Keys of a config file are plain config: no flag-spec tables here (see the docs).
        for key, value in table.items():
            word = str(key)
            here = (*segs, word)
            name = f"{prefix}.{word}" if prefix else word
            if not word:
                self.error(here, "expected a flag name, found an empty key", doc)
            elif isinstance(value, dict) and value:
                self.file_flags(value, here, name, source, doc, out)
            elif _is_plain(value):
                out[name] = FlagDef(name=name, default=value, source=source)
            else:
                self.expected(here, _VALUE_KINDS, _first_unplain(value), doc)
