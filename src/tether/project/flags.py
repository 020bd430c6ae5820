"""The flags of an operation: its `config` key (inline tables, flag specs, config files)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..globs import has_magic
from .document import Checker, Doc
from .formats import CONFIG_SUFFIXES, FORMATS, read_text
from .messages import KeyPath, ProjectError, found
from .model import FlagDef
from .sourcekeys import (
    Selection,
    SourceError,
    SourceKey,
    key_regex,
    kind_of,
    parse_selection,
    read_keys,
)

FLAG_SPEC_KEYS = ("default", "description", "choices")
# `[[ops.train.config]]` / gage's `[[train.config]]`: keys of source files, named and described
SELECTION_KEYS = ("keys", "prefix", "strip-prefix", "description")


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


def is_selection_table(entry: Any) -> bool:
    """`{keys = "train.py#lr", prefix = ...}`: a selection, not a table of flags."""
    return (
        isinstance(entry, dict)
        and "keys" in entry
        and isinstance(entry["keys"], (str, list))
        and all(str(k) in SELECTION_KEYS for k in entry)
    )


class FlagReader(Checker):
    """The `config` of an operation: inline flag tables, flag specs and config files."""

    # gage files: every config string selects keys of a source file whose staged copy the
    # flags rewrite. tether files: only a .py file or a `#` selection does; a plain .yaml,
    # .json or .toml config file gives defaults the script reads from its run.
    all_strings_select = False

    def is_selection(self, entry: str) -> bool:
        text = entry.strip()
        return (
            self.all_strings_select
            or "#" in text
            or text.startswith("-")
            or kind_of(text) == "python"
        )

    def config(self, value: Any, segs: KeyPath) -> tuple[dict[str, FlagDef], list[Path]]:
        flags: dict[str, FlagDef] = {}
        files: list[Path] = []
        self._previous_file: str | None = None
        entries: list[tuple[Any, KeyPath]]
        if isinstance(value, list):
            entries = [(item, (*segs, index)) for index, item in enumerate(value)]
        elif isinstance(value, (dict, str)):
            entries = [(value, segs)]
        else:
            self.expected(segs, "a table of flags, a config file or a list of them", value)
            return flags, files
        for entry, where in entries:
            if is_selection_table(entry):
                self.selection_table(entry, where, flags)
                continue
            if isinstance(entry, str) and self.is_selection(entry):
                self.select(entry, where, flags)
                continue
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

    # -- config from source files -------------------------------------------------------------
    def selection_table(
        self, table: dict[Any, Any], segs: KeyPath, flags: dict[str, FlagDef]
    ) -> None:
        prefix = table.get("prefix", "")
        strip = table.get("strip-prefix", "")
        description = table.get("description")
        ok = True
        for key, val in (("prefix", prefix), ("strip-prefix", strip)):
            if not isinstance(val, str):
                self.expected((*segs, key), "a string", val)
                ok = False
        if description is not None and not isinstance(description, str):
            self.expected((*segs, "description"), "a string", description)
            ok = False
        keys = table["keys"]
        items = (
            [(keys, (*segs, "keys"))]
            if isinstance(keys, str)
            else [(k, (*segs, "keys", i)) for i, k in enumerate(keys)]
        )
        if not items:
            self.expected((*segs, "keys"), "a 'FILE#KEY' selection or a list of them", keys)
            return
        if not ok:
            return
        for item, where in items:
            if not isinstance(item, str):
                self.expected(where, "a 'FILE#KEY' selection", item)
                continue
            self.select(item, where, flags, str(prefix), str(strip), description)

    def select(
        self,
        entry: str,
        segs: KeyPath,
        flags: dict[str, FlagDef],
        prefix: str = "",
        strip: str = "",
        description: str | None = None,
    ) -> None:
        """One selection entry: add (or, with `-`, drop) the flags of the keys it selects."""
        sel = parse_selection(entry, self._previous_file)
        if isinstance(sel, str):
            self.error(segs, f"{sel}, found {found(entry)}")
            return
        self._previous_file = sel.file
        files = self.selected_files(sel, segs)
        if files is None:
            return
        matched = False
        regex = key_regex(sel.pattern)
        for rel, keys in files:
            for key in keys.values():
                if not regex.match(key.name):
                    continue
                matched = True
                name = key.name[len(strip) :] if strip and key.name.startswith(strip) else key.name
                name = prefix + name
                if sel.exclude:
                    for other in [
                        n for n, f in flags.items() if f.target == rel and f.target_key == key.name
                    ]:
                        del flags[other]
                    continue
                flag = FlagDef(
                    name=name,
                    default=key.value,
                    description=description or key.description,
                    source=rel,
                    target=rel,
                    target_key=key.name,
                )
                self.merge_flags(flags, {name: flag}, segs)
        if not matched and not sel.exclude and not has_magic(sel.pattern):
            shown = ", ".join(sorted(k for _, keys in files for k in keys)[:8]) or "none"
            self.error(segs, f"no key {sel.pattern!r} in {sel.file} (its keys: {shown})")

    def selected_files(
        self, sel: Selection, segs: KeyPath
    ) -> list[tuple[str, dict[str, SourceKey]]] | None:
        root = self.root
        if has_magic(sel.file):
            names = sorted(
                p.relative_to(root).as_posix()
                for p in root.glob(sel.file)
                if p.is_file() and kind_of(p) is not None
            )
            if not names and not sel.exclude:
                self.error(segs, f"{sel.file!r} matches no .py, .json, .yaml or .toml file")
                return None
        else:
            names = [Path(sel.file).as_posix()]
        out = []
        for rel in names:
            path = root / rel
            if Path(rel).is_absolute() or ".." in Path(rel).parts:
                self.expected(segs, "a file inside the project folder", rel)
                return None
            if kind_of(path) is None:
                self.expected(segs, "a .py, .json, .yaml, .yml or .toml file", rel)
                return None
            if not path.is_file():
                self.expected(segs, "an existing file", rel)
                return None
            try:
                keys = read_keys(path, read_text(path))
            except ProjectError as exc:
                self.problems.extend(exc.problems)
                return None
            except SourceError as exc:
                self.error(segs, f"{rel}{exc}")
                return None
            except RecursionError:
                self.error(segs, f"{rel}: nested too deeply")
                return None
            out.append((rel, keys))
        return out
