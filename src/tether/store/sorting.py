"""--sort and --columns: lists of fields, and the ORDER BY terms of a sort.

    -metrics.loss.last,config.lr     (`-`: descending)

Runs without a value for a key sort after those with one, in either direction; numbers sort
before text (descending reverses that); ties go newest first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from .fields import STOP, Field, WhereError, parse_field


# A NamedTuple, not a frozen dataclass: made at a tenth of the cost on every import (start-up).
class SortKey(NamedTuple):
    """One --sort term: the field and its direction."""

    field: Field
    desc: bool


def _field_list(spec: str, what: str, signs: bool) -> list[tuple[Field, bool]]:
    """Comma-separated fields, each with a leading `-` (descending) when `signs`."""
    out: list[tuple[Field, bool]] = []
    pos = 0
    for part in spec.split(","):
        stripped = part.strip()
        start = pos + (len(part) - len(part.lstrip()))
        pos += len(part) + 1
        if not stripped:
            raise WhereError("expected a field, found nothing", spec, start, what)
        desc = signs and stripped.startswith("-")
        name = stripped[1:].lstrip() if signs and stripped[:1] in "+-" else stripped
        at = start + (len(stripped) - len(name))
        if not name:
            raise WhereError("expected a field after the sign", spec, at, what)
        for j, c in enumerate(name):
            if c.isspace() or c in STOP or "\ud800" <= c <= "\udfff":
                raise WhereError(f"expected ',' or the end, found {c!r}", spec, at + j, what)
        field = parse_field(name, spec, at, what)
        if signs and field.kind == "tag":
            raise WhereError("cannot sort by tag (a run has several)", spec, at, what)
        out.append((field, desc))
    return out


def parse_sort(spec: str) -> list[SortKey]:
    """`-metrics.loss.last,config.lr`: comma-separated fields, `-` for descending."""
    return [SortKey(f, desc) for f, desc in _field_list(spec, "sort keys", signs=True)]


def parse_columns(spec: str) -> list[Field]:
    """`config.lr,metrics.loss,host`: the extra columns of a listing."""
    return [f for f, _ in _field_list(spec, "column list", signs=False)]


# The plain listing's order, which RUN numbers count in; and the last word of every --sort:
# ties newest first (run ids are UUIDv7, so their order is their creation order).
NEWEST = "runs.created DESC, runs.id DESC"
TIE = "runs.id DESC"


def order_terms(keys: Sequence[SortKey]) -> tuple[list[str], list[Any]]:
    terms: list[str] = []
    params: list[Any] = []
    for k in keys:
        direction = " DESC" if k.desc else ""
        if k.field.kind == "val":
            sub = "(SELECT coalesce(v.num, v.txt) FROM vals v WHERE v.run = runs.id AND v.key = ?)"
            terms += [f"{sub} IS NULL", sub + direction]
            params += [k.field.key, k.field.key]
        elif k.field.nullable:
            terms += [f"{k.field.column} IS NULL", k.field.column + direction]
        else:
            terms.append(k.field.column + direction)
    return terms, params


def compile_sort(spec: str) -> tuple[str, list[Any]]:
    """An ORDER BY clause (without the words) for --sort, and its parameters.

    Runs without a value for a key sort after those with one, in either direction; numbers sort
    before text (descending reverses that); ties go newest first.
    """
    terms, params = order_terms(parse_sort(spec))
    return ", ".join([*terms, TIE]), params
