"""Taking the source snapshot of a run, possibly started early in a background thread."""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .. import git
from ..errors import ConfigError, TetherError
from ..git import GitError
from ..ids import new_id
from ..lock import SourceRecord
from ..workspace import find_project_file, read_project_data
from . import source
from .source import DEFAULT_MAX_FILE_BYTES, parse_size, publish_snapshot

SIZE_HINT = 'write a size like "50MB", "2GiB" or 0 for no limit'


@dataclass
class SnapshotOptions:
    """Which source a run snapshots: `include`/`exclude` patterns (tether.globs), `repos`, and
    `max_file_size`, above which untracked files are left out of a git snapshot (a size like
    "50MB", or bytes; 0: no limit; None: `[snapshot] max-file-size` of the project file, else
    50 MB)."""

    enabled: bool = True
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    repos: list[str] = field(default_factory=list)  # empty: the repo of the working folder
    max_file_size: str | int | None = None


def max_file_bytes(opts: SnapshotOptions, project: Path | None) -> int:
    """The size limit for untracked files: the option, the project file's, or the default."""
    if opts.max_file_size is not None:
        size = parse_size(opts.max_file_size)
        if size is None:
            raise ConfigError(
                f"snapshot: max_file_size={opts.max_file_size!r} is not a size", SIZE_HINT
            )
        return size
    if project is None:
        return DEFAULT_MAX_FILE_BYTES
    table = read_project_data(project).get("snapshot")
    if table is None:
        return DEFAULT_MAX_FILE_BYTES
    if not isinstance(table, dict):
        raise ConfigError(
            f"{project}: snapshot = {table!r} is not a table",
            'write it as [snapshot] with max-file-size = "50MB" under it',
        )
    value = table.get("max-file-size")
    if value is None:
        return DEFAULT_MAX_FILE_BYTES
    size = parse_size(value)
    if size is None:
        raise ConfigError(f"{project}: snapshot.max-file-size = {value!r} is not a size", SIZE_HINT)
    return size


__all__ = ["EarlySnapshot", "SnapshotOptions", "publish_snapshot", "take_snapshot"]


def take_snapshot(
    run_id: str, opts: SnapshotOptions, run_dir: Path, store_root: Path
) -> list[SourceRecord]:

    project = find_project_file()
    root = project.parent if project else None
    limit = max_file_bytes(opts, project)
    out: list[SourceRecord] = []
    for repo in opts.repos or ["."]:
        path = Path(repo).expanduser().absolute()
        if not path.exists():
            raise TetherError(f"snapshot: repository path {repo} does not exist")
        if git.in_git(path):
            submodules: list[SourceRecord] = []
            out.append(
                source.snapshot_repo(
                    path,
                    run_id,
                    include=opts.include,
                    exclude=opts.exclude,
                    project_root=root,
                    publish=False,
                    max_file_bytes=limit,
                    submodules=submodules,
                )
            )
            # Each repository once, even when `repos=` also names a submodule.
            roots = {s.root for s in out}
            out += [s for s in submodules if s.root not in roots]
        elif opts.repos:
            raise GitError(f"snapshot: {repo} is not inside a git repository")
        else:
            base = root or _script_dir() or Path.cwd()
            out.append(
                source.copy_sources(
                    base,
                    run_dir / "source",
                    include=opts.include,
                    exclude=opts.exclude,
                    project_root=root,
                    skip_dirs=[store_root],
                )
            )
    return out


def _script_dir() -> Path | None:
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    return Path(path).resolve().parent if path else None


class EarlySnapshot:
    """A git snapshot computed in a thread while the run is still being set up.

    Only for repositories in git (a source copy needs the run folder); the commit is made but
    not referenced until the run exists (`publish_snapshot`), so a run that never starts
    (--help, a config error) leaves nothing but an unreachable object for git gc.
    """

    def __init__(self, opts: SnapshotOptions) -> None:
        self.opts = opts
        self.run_id = new_id()
        self._result: list[SourceRecord] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="tether-snapshot", daemon=True)

    @classmethod
    def start(cls, opts: SnapshotOptions) -> EarlySnapshot | None:
        if not opts.enabled:
            return None
        if not all(git.in_git(Path(r).expanduser().absolute()) for r in opts.repos or ["."]):
            return None
        early = cls(opts)
        early._thread.start()
        return early

    def _work(self) -> None:
        try:
            # No run folder or store is needed for git snapshots.
            self._result = take_snapshot(self.run_id, self.opts, Path("."), Path("."))
        except BaseException as exc:
            self._error = exc

    def usable(self, opts: SnapshotOptions) -> bool:
        return opts == self.opts

    def result(self) -> list[SourceRecord]:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result
