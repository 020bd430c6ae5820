"""The Store: create run folders, read them back, keep the index in step, resolve RUN specs.

On a local disk the index is `<runs root>/index.db`; on a shared filesystem (tether.mounts) it
is a cache on this host's disk. Either way every writer announces a change in the runs root's
change journal before it writes the run's records, and every read first brings the index up to
date from it (store/cache.py, store/journal.py): a writer killed between its records and the
index leaves no lag.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import re
import sqlite3
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from ..clock import now_iso
from ..errors import AmbiguousRun, RunNotFound, StoreError, disk_full, is_disk_full
from ..ids import is_run_id, new_id, short_ids
from ..lock import RunLock, read_lock, write_lock
from ..mounts import is_shared
from ..workspace import resolve_runs_root
from .attrs import add_event, read_attributes
from .cache import cache_path, catch_up, rebuild
from .index import Index
from .index_health import diagnose, is_damage, set_aside, trouble
from .journal import Journal
from .layout import INDEX, LOCK, SUMMARY
from .records import Attributes, IndexRow, RunRecord
from .safety import protected, write_marker
from .state import RunState, hostname, proc_start_time, read_state, write_state


class Store:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._index: Index | None = None
        self._index_was_missing = False
        self._shared: bool | None = None
        self._index_path: Path | None = None
        self.skipped: builtins.list[str] = []  # run folders reindex could not read, and why

    # -- places -----------------------------------------------------------------------------
    @property
    def shared(self) -> bool:
        """Whether the runs root is on a network filesystem (several hosts may write it)."""
        if self._shared is None:
            self._shared = is_shared(self.root)
        return self._shared

    @property
    def index_path(self) -> Path:
        """`<root>/index.db`; on a shared filesystem a cache on this host's disk."""
        if self._index_path is None:
            self._index_path = cache_path(self.root) if self.shared else self.root / INDEX
        return self._index_path

    @property
    def journal(self) -> Journal:
        """The change journal of the runs root (`<root>/.journal`, on any disk)."""
        return Journal(self.root)

    def open_index(self) -> Index:
        """A new connection to the index (SQLite connections stay in their thread)."""
        return Index(self.index_path, journal=self.journal)

    @property
    def index(self) -> Index:
        """The index, healed first when its file is missing, empty, damaged or lists no run
        while run folders exist (rebuilt from the folders into a new file renamed into place).
        Trouble that is no damage (locked, disk full, cannot open) is one line and leaves the
        file alone; a read-only runs root gets an index in memory, with a notice."""
        if self._index is None:
            path = self.index_path
            if not self.shared and self.root.is_dir() and not os.access(self.root, os.W_OK):
                self._index = self._memory_index()
                return self._index
            self.ensure_root()
            # "unavailable" (busy, say, while another process makes the file) proves nothing:
            # opening it for real below tells, and trouble there is one line.
            state, detail = diagnose(path)
            index = Index(path, journal=self.journal)
            heal = state in ("missing", "empty", "incomplete", "damaged")
            if state == "ok" and detail == "no rows" and self.has_run_folder():
                heal = True  # a schema-only file (a rebuild killed midway in older tethers)
            if not heal:
                try:
                    index.probe()  # cheap: no count of 100k rows
                    self._index_was_missing = index.was_reset  # an older schema was dropped
                except sqlite3.DatabaseError as exc:
                    index.close()
                    if not is_damage(exc):
                        raise StoreError(trouble(path, exc), _REINDEX) from None
                    heal = True
            if heal:
                self._heal(index, damaged=state == "damaged")
            self._index = index
        return self._index

    def close_index(self) -> None:
        """Close this process's connection to the index, if one is open."""
        if self._index is not None:
            self._index.close()

    def _heal(self, index: Index, *, damaged: bool) -> None:
        """Rebuild the index from the folders. A damaged file is set aside (kept as
        index.db.damaged) and a new file built beside it, then renamed into place; a missing,
        empty or schema-only one is filled in one transaction, under SQLite's write lock, so
        concurrent creators lose no row. Killed midway, either leaves what was there."""
        index.close()
        if damaged:
            set_aside(index.path)
        self.skipped = []
        try:
            if index.journal is not None:
                rebuild(index, index.journal, self.scan, heal=damaged)
            elif damaged:
                index.rebuild_file(self.scan())
            else:
                index.rebuild(self.scan())
        except sqlite3.DatabaseError as exc:
            if damaged or not is_damage(exc):
                raise StoreError(trouble(index.path, exc), _REINDEX) from None
            self._heal(index, damaged=True)  # it would not hold a transaction after all
        except OSError as exc:
            raise StoreError(trouble(index.path, exc.strerror or str(exc)), _REINDEX) from None

    def _memory_index(self) -> Index:
        index = Index(Path(":memory:"))
        index.rebuild(self.scan())
        print(
            f"tether: notice: runs root {self.root} is read-only: listing from the run folders "
            "(index in memory)",
            file=sys.stderr,
        )
        return index

    def has_run_folder(self) -> bool:
        try:
            with os.scandir(self.root) as entries:
                return any(
                    is_run_id(e.name) and os.path.isfile(os.path.join(e.path, LOCK))
                    for e in entries
                )
        except OSError:
            return False

    def _guard(self, action: Callable[[], _T]) -> _T:
        """Run an index action; damage found midway (a bad page past the header) heals the
        file and runs it again; other trouble is one line."""
        try:
            return action()
        except sqlite3.DatabaseError as exc:
            index = self._index
            if index is None or not is_damage(exc) or str(index.path) == ":memory:":
                raise StoreError(trouble(self.index_path, exc), _REINDEX) from None
            self._heal(index, damaged=True)
        try:
            return action()
        except sqlite3.DatabaseError as exc:
            raise StoreError(trouble(self.index_path, exc), _REINDEX) from None

    def _upsert(self, record: RunRecord, kind: str, announced: bool) -> None:
        """Index a run; `announced`: `_intend` announced the change before its records."""
        self._guard(lambda: self.index.upsert(record, kind=kind, announced=announced))

    def _readable_index(self) -> Index:
        """The index for reading, brought up to date from the change journal first (rebuilt
        from the folders if an older schema was reset). An index that cannot be written now
        (read-only file, locked past the busy timeout) is read as it is, with a notice."""
        index = self.index
        if self._index_was_missing:
            self._index_was_missing = False
            self.reindex()
        elif index.journal is not None:
            try:
                catch_up(index, index.journal, self._current, self.scan, self._current_part)
            except OSError as exc:
                raise StoreError(
                    f"the change journal of {self.root} cannot be read ({exc})",
                    "`tether runs reindex` rebuilds the index from the run folders",
                )
            except sqlite3.DatabaseError as exc:
                if is_damage(exc):
                    raise  # healed by _guard
                print(
                    f"tether: notice: {trouble(index.path, exc)}: listing without the latest "
                    "changes",
                    file=sys.stderr,
                )
        return index

    def _intend(self, run_id: str, kind: str) -> bool:
        """Announce in the change journal that run `run_id` is about to change (before its
        records are written): a writer killed before its upsert leaves no lag. False: not
        announced (a full disk), so the upsert announces it after."""
        try:
            self.index.intend(run_id, kind)
        except OSError as exc:
            where = self.journal.dir
            if is_disk_full(exc):
                # The records come first: a failing run's final state may still fit (its
                # reserve was freed for it), and the index row after it announces it.
                return False
            raise StoreError(
                f"the change journal {where} cannot be written ({exc.strerror or exc})",
                "set TETHER_RUNS or --runs-dir to a writable folder",
            ) from None
        return True

    def _current(self, run_id: str) -> RunRecord | None:
        """A run as its folder is now; None where a scan would not list it (gone, no run.lock,
        an unreadable one)."""
        path = self.root / run_id
        if not is_run_id(run_id) or not (path / LOCK).is_file():
            return None
        try:
            return self.load_dir(path.resolve() if path.is_symlink() else path)
        except StoreError:
            return None

    def _current_part(self, run_id: str) -> tuple[RunState, Attributes, dict[str, object]] | None:
        """A run's state, attributes and summary as its folder is now (run.lock not read);
        None where a scan would not list it."""
        path = self.root / run_id
        if not is_run_id(run_id) or not (path / LOCK).is_file():
            return None
        # The one reader of run files, given a stand-in for the run.lock it does not read.
        part = self.load_dir(
            path.resolve() if path.is_symlink() else path,
            lock=RunLock(id=run_id, name="", created=""),
        )
        return part.state, part.attrs, part.summary

    def ensure_root(self) -> None:
        try:
            if not self.root.is_dir():
                self.root.mkdir(parents=True, exist_ok=True)
                # Runs live beside the code (<project>/.tether/runs): keep them out of git, and
                # so out of every later run's source snapshot.
                (self.root / ".gitignore").write_text("# made by tether: runs are not code\n*\n")
        except OSError as exc:
            raise StoreError(
                f"runs root {self.root} cannot be created ({exc.strerror})",
                "set TETHER_RUNS or --runs-dir to a writable folder",
            )
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StoreError(
                f"runs root {self.root} is not writable",
                "set TETHER_RUNS or --runs-dir to a writable folder",
            )

    def _check_creatable(self) -> None:
        """The root does not exist: fail now if it never could (a file in the way)."""
        for folder in (self.root, *self.root.parents):
            if folder.exists():
                if not folder.is_dir():
                    raise StoreError(
                        f"runs root {self.root} cannot be created ({folder} is not a folder)",
                        "set TETHER_RUNS or --runs-dir to a writable folder",
                    )
                return

    def run_dir(self, run_id: str) -> Path:
        return self.root / run_id

    # -- creation ---------------------------------------------------------------------------
    def create(self, lock: RunLock, *, run_dir: Path | None = None) -> RunRecord:
        """Make the run folder, write run.lock and a pending state.json, and index the run.

        With `run_dir` (a config's explicit save_dir) the folder lives there and the runs root
        holds a symlink to it, so listing and reindexing see every run in one place.
        """
        self.ensure_root()
        link = self.root / lock.id
        announced = self._intend(lock.id, "created")
        if run_dir is None:
            run_dir = link
            # It may exist already: capture (a source copy) can write into it before the lock.
            try:
                run_dir.mkdir(exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"run folder {run_dir} cannot be created ({exc.strerror})",
                    "set TETHER_RUNS or --runs-dir to a writable folder",
                )
        else:
            run_dir = Path(run_dir).absolute()
            refused = protected(run_dir, self.root)
            if refused is not None:
                raise StoreError(
                    f"save_dir {run_dir} is refused: it is {refused}",
                    "give save_dir a new or empty folder, or leave it out (tether makes one)",
                )
            if (run_dir / LOCK).exists():
                other = read_lock(run_dir)
                raise StoreError(
                    f"save_dir {run_dir} already holds run {other.id}",
                    "choose another save_dir (or delete that run first)",
                )
            try:
                run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"save_dir {run_dir} cannot be created ({exc.strerror})")
            os.symlink(run_dir, link, target_is_directory=True)
        write_marker(run_dir, lock.id)  # purge deletes only a folder marked as this run's
        write_lock(run_dir, lock)
        # The creator's pid: a pending run whose creator died shows `unknown`, not pending.
        pid = os.getpid()
        state = RunState(
            status="pending", pid=pid, host=hostname(), proc_start=proc_start_time(pid)
        )
        write_state(run_dir, state)
        record = RunRecord(lock.id, run_dir, lock, state, Attributes(), {})
        self._upsert(record, "created", announced)
        return record

    def new_lock(self, name: str, **fields: object) -> RunLock:

        return RunLock(id=new_id(), name=name, created=now_iso(), **fields)  # type: ignore[arg-type]

    # -- updates ----------------------------------------------------------------------------
    def set_state(self, record: RunRecord, state: RunState) -> None:
        announced = self._intend(record.id, "state")
        write_state(record.dir, state)
        record.state = state
        self._upsert(record, "state", announced)

    def add_attr(self, record: RunRecord, kind: str, value: object) -> None:
        announced = self._intend(record.id, "attrs")
        try:
            add_event(record.dir, kind, value)
        except OSError as exc:
            if is_disk_full(exc):
                raise StoreError(disk_full(record.dir)) from None
            raise StoreError(f"run folder {record.dir} cannot be written ({exc.strerror})")
        record.attrs = read_attributes(record.dir)
        self._upsert(record, "attrs", announced)

    @contextlib.contextmanager
    def changing(self, record: RunRecord, kind: str = "update") -> Iterator[RunRecord]:
        """Change a run's records inside the block, then index it: the change is announced in
        the journal first, so a writer killed inside the block leaves no lag in the listing.
        The block updates `record` in place (its summary, lock, ...)."""
        announced = self._intend(record.id, kind)
        yield record
        self._upsert(record, kind, announced)

    def refresh(self, record: RunRecord, *, lock: bool = True) -> RunRecord:
        """Re-read a run's files and bring its index row up to date (`lock=False` keeps the
        run.lock already in memory: it is written once, so only a background hash changes it)."""
        announced = self._intend(record.id, "refresh")  # before the read: changes made before
        fresh = self.load_dir(record.dir, lock=None if lock else record.lock)
        self._upsert(fresh, "refresh", announced)
        return fresh

    # -- reading ----------------------------------------------------------------------------
    def load_dir(self, run_dir: Path, lock: RunLock | None = None) -> RunRecord:
        lock = lock or read_lock(run_dir)
        return RunRecord(
            id=lock.id,
            dir=run_dir,
            lock=lock,
            state=read_state(run_dir),
            attrs=read_attributes(run_dir),
            summary=_read_summary(run_dir),
        )

    def load(self, run_id: str) -> RunRecord:
        path = self.run_dir(run_id)
        if not (path / LOCK).exists():
            raise RunNotFound(f"run {run_id} not found in {self.root}")
        return self.load_dir(path.resolve() if path.is_symlink() else path)

    def scan(self) -> Iterator[RunRecord]:
        """Every run folder under the root, read from its files (the truth)."""
        if not self.root.is_dir():
            return
        for entry in sorted(os.scandir(self.root), key=lambda e: e.name):
            if not is_run_id(entry.name):
                continue
            path = Path(entry.path)
            if not (path / LOCK).is_file():
                continue  # created but killed before run.lock landed: nothing to list
            try:
                yield self.load_dir(path.resolve() if entry.is_symlink() else path)
            except StoreError as exc:
                self.skipped.append(str(exc))

    def reindex(self) -> int:
        """Rebuild the index from the run folders, in one transaction (killed midway: the old
        rows stay); a damaged file (PRAGMA quick_check first) is set aside and rebuilt as a
        new file."""
        index = self.index
        if str(index.path) != ":memory:" and diagnose(index.path, thorough=True)[0] == "damaged":
            self._heal(index, damaged=True)
            return index.count()

        def again() -> int:
            self.skipped = []
            index = self.index
            if index.journal is not None:
                return rebuild(index, index.journal, self.scan)
            return index.rebuild(self.scan())  # the in-memory index of a read-only root

        return self._guard(again)

    def list(self, limit: int | None = None) -> builtins.list[IndexRow]:
        if not self.root.is_dir():
            self._check_creatable()
            return []  # listing an empty place creates nothing
        return self._guard(lambda: self._readable_index().rows(limit=limit))

    def query(
        self, where: str | None = None, sort: str | None = None, limit: int | None = None
    ) -> builtins.list[IndexRow]:
        """Runs matching a --where expression, in --sort order (newest first by default).

        Raises WhereError (a TetherError) for an expression or sort key it cannot compile.
        """
        # The query language (lexer, parser, sort keys: ~5 ms of imports) loads only for
        # queries: a run that is being created or listed plainly never pays for it.
        from .select import select_rows  # noqa: PLC0415
        from .sorting import parse_sort  # noqa: PLC0415
        from .where import compile_where  # noqa: PLC0415

        if not self.root.is_dir():
            # Nothing to list, but a mistake in the expression is still worth reporting.
            if where is not None:
                compile_where(where)
            if sort:
                parse_sort(sort)
            self._check_creatable()
            return []
        return self._guard(lambda: select_rows(self._readable_index(), where, sort, limit))

    # -- RUN specs --------------------------------------------------------------------------
    def resolve(self, spec: str) -> builtins.list[IndexRow]:
        """RUN: an index from the listing (1 = newest), a slice `1:5`, or an id or name prefix.
        A damaged page met midway (past the checks of opening) heals the index and answers."""
        return self._guard(lambda: self._resolve(spec.strip()))

    def _resolve(self, spec: str) -> builtins.list[IndexRow]:
        self._readable_index()
        if not spec:
            raise RunNotFound("empty run reference", "give an index, a slice or an id prefix")
        m = re.fullmatch(r"([1-9][0-9]*)?:([1-9][0-9]*)?", spec)
        if m and any(len(g or "") > _MAX_RUN_DIGITS for g in m.groups()):
            raise RunNotFound(
                f"slice {spec[:40]!r} is out of range",
                f"its ends must have at most {_MAX_RUN_DIGITS} digits",
            )
        if m:
            start = int(m.group(1) or 1)
            stop = int(m.group(2)) if m.group(2) else None
            rows = self.index.rows(limit=stop)
            picked = rows[start - 1 : stop]
            if not picked:
                raise RunNotFound(f"no runs in slice {spec} ({len(rows)} runs in {self.root})")
            return picked
        # A longer number is no index (SQLite holds 64 bits): it can only be an id prefix.
        if re.fullmatch(r"[1-9][0-9]*", spec) and len(spec) <= _MAX_RUN_DIGITS:
            n = int(spec)
            rows = self.index.rows(limit=n)
            if len(rows) < n:
                raise RunNotFound(
                    f"no run number {n}: {len(rows)} runs in {self.root}",
                    "see `tether runs`",
                )
            return [rows[n - 1]]
        by_id = self.index.ids_with_prefix(spec.lower())
        if len(by_id) == 1:
            return self.index.rows(where_sql="runs.id = ?", params=[by_id[0][0]])
        if len(by_id) > 1:
            raise _ambiguous(spec, by_id)
        by_name = self.index.rows(where_sql="runs.name LIKE ? ESCAPE '\\'", params=[_like(spec)])
        names = {r.name for r in by_name}
        if len(names) == 1 or any(r.name == spec for r in by_name):
            # A name picks the newest run of that name, as `git` picks the newest ref.
            exact = [r for r in by_name if r.name == spec] or by_name
            return [exact[0]]
        if by_name:
            raise _ambiguous(spec, [(r.id, r.name) for r in by_name])
        shown = spec if len(spec) <= 80 else f"{spec[:40]}... ({len(spec)} characters)"
        raise RunNotFound(f"no run matches {shown!r} in {self.root}", "see `tether runs`")

    def resolve_one(self, spec: str) -> RunRecord:
        rows = self.resolve(spec)
        if len(rows) > 1:
            raise AmbiguousRun(f"{spec!r} selects {len(rows)} runs; this command takes one")
        return self.load(rows[0].id)


_T = TypeVar("_T")
_REINDEX = "`tether runs reindex` rebuilds the index from the run folders"
_MAX_RUN_DIGITS = 18  # the longest run index or slice end that fits SQLite's 64-bit integers


def _read_summary(run_dir: Path) -> dict[str, object]:
    try:
        with open(run_dir / SUMMARY, encoding="utf-8") as fh:
            summary = json.load(fh)
    except (OSError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}


def _like(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _ambiguous(spec: str, matches: builtins.list[tuple[str, str]]) -> AmbiguousRun:

    # Prefixes long enough to tell the candidates apart (runs of one millisecond share 13 chars).
    shorts = short_ids([rid for rid, _ in matches], minimum=len(spec) + 1)
    shown = ", ".join(f"{shorts[rid]} ({name})" for rid, name in matches[:5])
    more = f" and {len(matches) - 5} more" if len(matches) > 5 else ""
    return AmbiguousRun(
        f"{spec!r} matches {len(matches)} runs: {shown}{more}", "use a longer prefix"
    )


def open_store(runs_dir: str | os.PathLike[str] | None = None) -> Store:
    return Store(resolve_runs_root(runs_dir))
