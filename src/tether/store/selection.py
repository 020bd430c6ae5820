"""RUNS arguments and `--where` together: the runs a command works on, picked the way `tether
runs` lists them.

Without `--where` or `--sort`, RUNS resolve as everywhere (`Store.resolve`: 1 = newest, a slice
`1:4`, an id or name prefix). With them, numbers and slices count the filtered listing, as the
numbers `tether runs --where ...` prints do, and ids or names must be runs of that listing; with
no RUNS at all, the whole listing is taken.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from ..errors import RunNotFound
from .records import IndexRow
from .store import Store

_NUMBER = re.compile(r"[1-9][0-9]{0,17}")
_SLICE = re.compile(r"([1-9][0-9]{0,17})?:([1-9][0-9]{0,17})?")


def split_specs(specs: Iterable[str]) -> list[str]:
    """RUN arguments, each possibly comma-separated, as single specs."""
    return [part.strip() for spec in specs for part in spec.split(",") if part.strip()]


def select_runs(
    store: Store,
    specs: Sequence[str] = (),
    *,
    where: str | None = None,
    sort: str | None = None,
) -> list[IndexRow]:
    """The runs that RUN `specs` name (each may be a comma-separated list), without repeats,
    among those matching `where` in `sort` order. Raises RunNotFound (exit 2) when nothing is
    given or a spec names no run."""
    parts = split_specs(specs)
    if where is None and not sort:
        if not parts:
            raise RunNotFound("no runs given", "give indexes, slices, or id or name prefixes")
        return _unique(row for spec in parts for row in store.resolve(spec))
    listing = store.query(where=where, sort=sort)
    if not parts:
        if not listing:
            what = f"match {where!r}" if where is not None else "are"
            raise RunNotFound(f"no runs {what} in {store.root}", "see `tether runs`")
        return listing
    return _unique(row for spec in parts for row in _in_listing(store, listing, spec, where))


def _in_listing(
    store: Store, listing: list[IndexRow], spec: str, where: str | None
) -> list[IndexRow]:
    what = f"the {len(listing)} runs matching {where!r}" if where else "the sorted listing"
    slice_match = _SLICE.fullmatch(spec)
    if slice_match:
        start = int(slice_match.group(1) or 1)
        stop = int(slice_match.group(2)) if slice_match.group(2) else None
        picked = listing[start - 1 : stop]
        if not picked:
            raise RunNotFound(f"no runs in slice {spec} of {what}", "see `tether runs --where`")
        return picked
    if _NUMBER.fullmatch(spec):
        n = int(spec)
        if n > len(listing):
            raise RunNotFound(f"no run number {n} among {what}", "see `tether runs --where`")
        return [listing[n - 1]]
    ids = {row.id for row in listing}
    rows = [row for row in store.resolve(spec) if row.id in ids]
    if not rows:
        raise RunNotFound(f"run {spec!r} is not among {what}", "drop --where, or name another")
    return rows


def _unique(rows: Iterable[IndexRow]) -> list[IndexRow]:
    seen: set[str] = set()
    out = []
    for row in rows:
        if row.id not in seen:
            seen.add(row.id)
            out.append(row)
    return out
