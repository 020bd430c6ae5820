"""Running queries over the index: the runs matching --where, in --sort order, and their values.

`where` compiles the condition and `sorting` the order; this module picks the query plan
(`_driven` walks an index when a sort on a maybe-missing key wants only the first few runs).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from ..ids import short_ids
from .fields import Field, suggest
from .records import IndexRow
from .sorting import NEWEST, TIE, SortKey, order_terms, parse_sort
from .where import PRESENT, compile_where

# Queries with a limit up to this size use the index-driven plan for sorting on a key.
_DRIVEN_LIMIT = 5000
_CHUNK = 500


def select_ids(
    conn: sqlite3.Connection,
    where: str | None = None,
    sort: str | None = None,
    limit: int | None = None,
) -> list[str]:
    """Ids of the runs matching `where`, in `sort` order (newest first by default)."""
    where_sql, where_params = compile_where(where) if where is not None else ("", [])
    keys = parse_sort(sort) if sort else []
    if limit is not None and limit <= 0:
        return []
    first = keys[0].field if keys else None
    if (
        first is not None
        and (first.kind == "val" or first.nullable)
        and limit is not None
        and limit <= _DRIVEN_LIMIT
    ):
        return _driven(conn, where_sql, where_params, keys, limit)
    terms, order_params = order_terms(keys)
    sql = "SELECT runs.id FROM runs"
    if where_sql:
        sql += f" WHERE {where_sql}"
    sql += " ORDER BY " + ", ".join([*terms, TIE] if keys else [NEWEST])
    params = [*where_params, *order_params]
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return [r[0] for r in conn.execute(sql, params)]


def _driven(
    conn: sqlite3.Connection,
    where_sql: str,
    where_params: list[Any],
    keys: list[SortKey],
    limit: int,
) -> list[str]:
    """Sort on a key that may be missing by walking an index instead of sorting every run.

    A plain ORDER BY puts missing values last with a `x IS NULL` term, which no index can
    serve: then every matching run is looked up and sorted, however few are wanted. Instead,
    one query per group, each only while rows are still wanted: for a key of `vals`, the runs
    whose value is a number (walking the (key, num) index, so the first `limit` matches end
    the walk), then those whose value is text (descending: text first), then the runs without
    it; for a column that may be empty (started, label, ...), the runs with a value, then the
    rest.
    """
    first, rest = keys[0], keys[1:]
    rest_terms, rest_params = order_terms(rest)
    direction = " DESC" if first.desc else ""
    extra = f" AND ({where_sql})" if where_sql else ""
    queries: list[tuple[str, list[Any]]] = []
    if first.field.kind == "val":
        # With no other key, (num, run) is the index's own order: no sorting at all.
        tie = ", ".join([*rest_terms, TIE]) if rest else "s.run DESC"
        groups = [
            ("s.num IS NOT NULL", f"s.num{direction}"),
            ("s.num IS NULL AND s.txt IS NOT NULL", f"s.txt{direction}"),
        ]
        if first.desc:
            groups.reverse()
        for cond, order in groups:
            sql = (
                "SELECT runs.id FROM vals s CROSS JOIN runs ON runs.id = s.run "
                f"WHERE s.key = ? AND {cond}{extra} ORDER BY {order}, {tie} LIMIT ?"
            )
            queries.append((sql, [first.field.key, *where_params, *rest_params]))
        missing = (
            f"NOT EXISTS (SELECT 1 FROM vals v WHERE v.run = runs.id AND v.key = ? AND {PRESENT})"
        )
        missing_params = [first.field.key]
    else:
        col = first.field.column
        sql = (
            f"SELECT runs.id FROM runs WHERE {col} IS NOT NULL{extra} "
            f"ORDER BY {', '.join([col + direction, *rest_terms, TIE])} LIMIT ?"
        )
        queries.append((sql, [*where_params, *rest_params]))
        missing, missing_params = f"{col} IS NULL", []
    sql = (
        f"SELECT runs.id FROM runs WHERE {missing}{extra} "
        f"ORDER BY {', '.join([*rest_terms, TIE])} LIMIT ?"
    )
    queries.append((sql, [*missing_params, *where_params, *rest_params]))
    out: list[str] = []
    for sql, params in queries:
        out += [r[0] for r in conn.execute(sql, [*params, limit - len(out)])]
        if len(out) >= limit:
            break
    return out


def _chunks(items: Sequence[str], size: int = _CHUNK) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def select_rows(
    index: Any,
    where: str | None = None,
    sort: str | None = None,
    limit: int | None = None,
) -> list[IndexRow]:
    """IndexRows (with tags and last metrics) of the matching runs, in order."""
    ids = select_ids(index._connect(), where, sort, limit)
    found: dict[str, IndexRow] = {}
    for chunk in _chunks(ids):
        marks = ", ".join("?" * len(chunk))
        for row in index.rows(where_sql=f"runs.id IN ({marks})", params=list(chunk)):
            found[row.id] = row
    return [found[i] for i in ids if i in found]


def count(index: Any, where: str | None = None) -> int:
    """How many runs match `where` (all runs without one)."""
    if where is None:
        return int(index.count())
    sql, params = compile_where(where)
    row = index._connect().execute(f"SELECT count(*) FROM runs WHERE {sql}", params).fetchone()
    return int(row[0])


def values_of(index: Any, ids: Sequence[str], keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    """{run id: {vals key: number or text}} for the given runs and keys."""
    out: dict[str, dict[str, Any]] = {i: {} for i in ids}
    if not ids or not keys:
        return out
    conn = index._connect()
    key_marks = ", ".join("?" * len(keys))
    for chunk in _chunks(ids):
        marks = ", ".join("?" * len(chunk))
        for run, key, num, txt in conn.execute(
            f"SELECT run, key, num, txt FROM vals WHERE run IN ({marks}) AND key IN ({key_marks})",
            [*chunk, *keys],
        ):
            if num is not None and txt in ("true", "false"):
                out[run][key] = txt == "true"  # indexed booleans carry both columns
            else:
                out[run][key] = num if num is not None else txt
    return out


def short_ids_of(index: Any, ids: Sequence[str], minimum: int = 8) -> dict[str, str]:
    """The short id of each of `ids` among all runs of the index, from its sorted neighbours.

    The same prefixes as `tether.ids.short_ids(all ids)`, without reading every id: each id only
    needs comparing with the ids just before and after it.
    """
    if len(ids) > 2000:
        every = index.ids()
        shorts = short_ids(every, minimum)
        return {i: shorts.get(i, i[:13]) for i in ids}
    conn = index._connect()
    out = {}
    for rid in ids:
        near = [rid]
        for sql in (
            "SELECT id FROM runs WHERE id < ? ORDER BY id DESC LIMIT 1",
            "SELECT id FROM runs WHERE id > ? ORDER BY id LIMIT 1",
        ):
            row = conn.execute(sql, (rid,)).fetchone()
            if row is not None:
                near.append(row[0])
        out[rid] = short_ids(near, minimum)[rid]
    return out


def known_keys(index: Any) -> list[str]:
    """Every key of `vals`, in order: one indexed step per distinct key (a skip scan of the
    (key, num) index), not a read of every value."""
    conn = index._connect()
    out: list[str] = []
    row = conn.execute("SELECT min(key) FROM vals").fetchone()
    while row is not None and row[0] is not None:
        out.append(row[0])
        row = conn.execute("SELECT min(key) FROM vals WHERE key > ?", (row[0],)).fetchone()
    return out


def unknown_fields(index: Any, fields: Sequence[Field]) -> list[tuple[Field, str | None]]:
    """The `vals` fields (config., flags., metrics., data., source.commit) no run of the index
    has, each with the nearest name that some run does have (or None). Nothing when the index
    has no runs: then every key is unknown and none is a typo."""
    conn = index._connect()
    missing = []
    for field in dict.fromkeys(f for f in fields if f.kind == "val"):
        if conn.execute("SELECT 1 FROM vals WHERE key = ? LIMIT 1", (field.key,)).fetchone():
            continue
        missing.append(field)
    if not missing or conn.execute("SELECT 1 FROM runs LIMIT 1").fetchone() is None:
        return []
    keys = known_keys(index)
    return [(field, suggest(field, keys)) for field in missing]
