"""What a remote holds, as run rows: its entries put in an index in memory, so RUNS specs,
`--where` and the listing's JSON work on a remote exactly as on the local store."""

from __future__ import annotations

from pathlib import Path

from ..errors import RunNotFound
from ..store.index import Index
from ..store.records import IndexRow
from ..store.state import LIVE
from .entries import Entry


def remote_index(entries: dict[str, Entry]) -> Index:
    index = Index(Path(":memory:"))
    index.rebuild(e.record() for e in entries.values())
    return index


def select(
    entries: dict[str, Entry], specs: tuple[str, ...] | list[str], where: str | None
) -> list[Entry]:
    """The entries RUNS (id or name prefixes) and `--where` pick; all of them without either."""
    if not specs and not where:
        return sorted(entries.values(), key=lambda e: e.run)
    index = remote_index(entries)
    ids: set[str] | None = None
    if where:
        from ..store.select import select_rows  # noqa: PLC0415 (the query language)

        ids = {r.id for r in select_rows(index, where, None, None)}
    if specs:
        picked: set[str] = set()
        for spec in specs:
            found = [rid for rid, _ in index.ids_with_prefix(spec.lower())]
            if not found:
                found = [r.id for r in index.rows() if r.name == spec]
            if not found:
                raise RunNotFound(
                    f"no run matches {spec!r} on the remote", "see `tether remote runs`"
                )
            picked.update(found)
        ids = picked if ids is None else ids & picked
    return [entries[i] for i in sorted(ids or ())]


def rows(entries: dict[str, Entry], where: str | None = None) -> list[IndexRow]:
    from ..store.select import select_rows  # noqa: PLC0415 (the query language)

    return select_rows(remote_index(entries), where, None, None)


def remote_status(entry: Entry) -> str:
    """A run that was live when it was pushed is `running (remote)`: its process is elsewhere."""
    return f"{entry.status} (remote)" if entry.status in LIVE else entry.status
