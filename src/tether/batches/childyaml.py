"""One `key: value` line of a child's run.lock for a scalar (an id, a time, a seed, a path),
the same text PyYAML renders, without a round trip through its dumper (~15 us a call): a batch
of short tasks spends most of its time on each child's records, not on the tasks."""

from __future__ import annotations

import itertools
import re
from typing import Any

_counter = itertools.count()


# -- run.lock lines ---------------------------------------------------------------------------
# A string of these characters, not starting with `.` or `-`, is rendered as it is (plain) when
# YAML would read it back as a string, else in single quotes (`'123'`, `'true'`, a time).
_PLAIN = re.compile(r"[A-Za-z0-9_/][A-Za-z0-9_./-]{0,199}")
_QUOTABLE = re.compile(r"[A-Za-z0-9_/][A-Za-z0-9_./:+-]{0,199}")
_resolver: Any = None
_STR_TAG = "tag:yaml.org,2002:str"


def _reads_as_str(text: str) -> bool:
    global _resolver
    if _resolver is None:
        import yaml  # heavy: PyYAML, loaded with the first child's run.lock anyway

        _resolver = (yaml.resolver.Resolver(), yaml.ScalarNode)
    resolver, node = _resolver
    return bool(resolver.resolve(node, text, (True, False)) == _STR_TAG)


def yaml_scalar(value: Any) -> str | None:
    """`value` as PyYAML's safe dumper writes it in block style, for the scalars that are cheap
    to get right (ints, bools, floats without an exponent, strings of path-like characters);
    None for anything else (the caller renders it with PyYAML)."""
    kind = type(value)
    if kind is str:
        if _PLAIN.fullmatch(value) and _reads_as_str(value):
            return value
        if _QUOTABLE.fullmatch(value) and not _reads_as_str(value):
            return f"'{value}'"
        return None
    if kind is int:
        return str(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is float:
        text = repr(value)
        # PyYAML writes repr's text unless it has an exponent (`1e-05` -> `1.0e-05`), or is
        # nan or inf (`.nan`, `.inf`).
        return text if "e" not in text and "n" not in text else None
    if value is None:
        return "null"
    return None


def yaml_line(key: str, value: Any, indent: str = "") -> str | None:
    """`<indent><key>: <value>\\n` as PyYAML writes a block mapping's entry; None when `key` or
    `value` is not one `yaml_scalar` renders."""
    if type(key) is not str or not _PLAIN.fullmatch(key) or not _reads_as_str(key):
        return None
    text = yaml_scalar(value)
    return None if text is None else f"{indent}{key}: {text}\n"
