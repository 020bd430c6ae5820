"""The Store: create run folders, read them back, keep the index in step, resolve RUN specs.

On a local disk the index is `<runs root>/index.db`. On a shared filesystem (tether.mounts) it
is a cache on this host's disk that every write also announces in the runs root's change
journal and every read first brings up to date from it (store/cache.py, store/journal.py).
"""

from __future__ import annotations

import builtins
import json
import os
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from ..clock import now_iso
from ..errors import AmbiguousRun, RunNotFound, StoreError
from ..ids import is_run_id, new_id, short_ids
from ..lock import RunLock, read_lock, write_lock
from ..mounts import is_shared
from ..workspace import resolve_runs_root
from .attrs import add_event, read_attributes
from .cache import cache_path, catch_up, rebuild
from .index import Index
from .journal import Journal
from .layout import INDEX, LOCK, SUMMARY
from .records import Attributes, IndexRow, RunRecord
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
    def journal(self) -> Journal | None:
        """The change journal of a shared runs root (None on a local disk: no journal)."""
        return Journal(self.root) if self.shared else None

    def open_index(self) -> Index:
        """A new connection to the index (SQLite connections stay in their thread)."""
        return Index(self.index_path, journal=self.journal)

    @property
    def index(self) -> Index:
        if self._index is None:
            self.ensure_root()
            path = self.index_path
            self._index_was_missing = not path.exists()
            index = Index(path, journal=self.journal)
            try:
                index.probe()  # a damaged file fails here (cheap: no count of 100k rows)
                if index.was_reset:
                    self._index_was_missing = True  # an older schema was dropped: rebuild
            except sqlite3.DatabaseError:
                # A damaged cache: keep it aside for inspection and rebuild from the folders.
                index.close()
                for suffix in ("", "-wal", "-shm"):
                    damaged = Path(f"{path}{suffix}")
                    if damaged.exists():
                        os.replace(damaged, f"{path}.damaged{suffix}")
                index = Index(path, journal=self.journal)
                self._index_was_missing = True
            self._index = index
        return self._index

    def _readable_index(self) -> Index:
        """The index for reading; rebuilt from the folders first if its file was missing."""
        index = self.index
        if self._index_was_missing:
            self._index_was_missing = False
            self.reindex()
        elif index.journal is not None:
            try:
                catch_up(index, index.journal, self._current, self.scan)
            except OSError as exc:
                raise StoreError(
                    f"the change journal of {self.root} cannot be read ({exc})",
                    "`tether runs reindex` rebuilds the index from the run folders",
                )
        return index

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
        write_lock(run_dir, lock)
        # The creator's pid: a pending run whose creator died shows `unknown`, not pending.
        pid = os.getpid()
        state = RunState(
            status="pending", pid=pid, host=hostname(), proc_start=proc_start_time(pid)
        )
        write_state(run_dir, state)
        record = RunRecord(lock.id, run_dir, lock, state, Attributes(), {})
        self.index.upsert(record, kind="created")
        return record

    def new_lock(self, name: str, **fields: object) -> RunLock:

        return RunLock(id=new_id(), name=name, created=now_iso(), **fields)  # type: ignore[arg-type]

    # -- updates ----------------------------------------------------------------------------
    def set_state(self, record: RunRecord, state: RunState) -> None:
        write_state(record.dir, state)
        record.state = state
        self.index.upsert(record, kind="state")

    def add_attr(self, record: RunRecord, kind: str, value: object) -> None:
        add_event(record.dir, kind, value)
        record.attrs = read_attributes(record.dir)
        self.index.upsert(record, kind="attrs")

    def refresh(self, record: RunRecord, *, lock: bool = True) -> RunRecord:
        """Re-read a run's files and bring its index row up to date (`lock=False` keeps the
        run.lock already in memory: it is written once, so only a background hash changes it)."""
        fresh = self.load_dir(record.dir, lock=None if lock else record.lock)
        self.index.upsert(fresh, kind="refresh")
        return fresh

    # -- reading ----------------------------------------------------------------------------
    def load_dir(self, run_dir: Path, lock: RunLock | None = None) -> RunRecord:
        lock = lock or read_lock(run_dir)
        summary: dict[str, object] = {}
        try:
            with open(run_dir / SUMMARY, encoding="utf-8") as fh:
                summary = json.load(fh)
        except (OSError, ValueError):
            pass
        return RunRecord(
            id=lock.id,
            dir=run_dir,
            lock=lock,
            state=read_state(run_dir),
            attrs=read_attributes(run_dir),
            summary=summary,
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
        self.skipped = []
        index = self.index
        if index.journal is not None:
            return rebuild(index, index.journal, self.scan)
        return index.rebuild(self.scan())

    def list(self, limit: int | None = None) -> builtins.list[IndexRow]:
        if not self.root.is_dir():
            self._check_creatable()
            return []  # listing an empty place creates nothing
        return self._readable_index().rows(limit=limit)

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
        return select_rows(self._readable_index(), where, sort, limit)

    # -- RUN specs --------------------------------------------------------------------------
    def resolve(self, spec: str) -> builtins.list[IndexRow]:
        """RUN: an index from the listing (1 = newest), a slice `1:5`, or an id or name prefix."""
        spec = spec.strip()
        self._readable_index()
        if not spec:
            raise RunNotFound("empty run reference", "give an index, a slice or an id prefix")
        m = re.fullmatch(r"([1-9][0-9]*)?:([1-9][0-9]*)?", spec)
        if m:
            start = int(m.group(1) or 1)
            stop = int(m.group(2)) if m.group(2) else None
            rows = self.index.rows(limit=stop)
            picked = rows[start - 1 : stop]
            if not picked:
                raise RunNotFound(f"no runs in slice {spec} ({len(rows)} runs in {self.root})")
            return picked
        if re.fullmatch(r"[1-9][0-9]*", spec):
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
        raise RunNotFound(f"no run matches {spec!r} in {self.root}", "see `tether runs`")

    def resolve_one(self, spec: str) -> RunRecord:
        rows = self.resolve(spec)
        if len(rows) > 1:
            raise AmbiguousRun(f"{spec!r} selects {len(rows)} runs; this command takes one")
        return self.load(rows[0].id)


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
