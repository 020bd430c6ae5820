"""Staging: the files an operation finds in its run folder before its command starts.

- Source code: the files its `sourcecode` globs select under the project root (default: Python
  and config-like files), copied, so the run keeps the code it ran. In a git repository the
  candidates are the files git would track (`.gitignore` applies); elsewhere a walk that skips
  hidden folders, virtual environments and the runs root.
- `project-files` dependencies: files of the project (globs relative to its root), linked.
- `run-files` dependencies: files of the latest completed run of an operation (optionally
  filtered by `where`), linked; that run is recorded as an upstream stage.
- `runs-summary` dependencies: a JSON file with the summaries of the selected runs.
- `dvcfile` dependencies: files DVC tracks (`data.csv`, described by `data.csv.dvc`), linked;
  run.lock's `data` records the md5 and path the `.dvc` file's `outs` give (algo `dvc-md5`),
  so tether never reads the data to hash it.

Linked inputs are hashed into run.lock's `data` before the run starts, so `--needed` and
`tether diff` see when they change. When the run ends (`settle`), each link tether made is
replaced by a hard link to the same file (a copy across filesystems): the run folder then holds
its inputs themselves, so an archive or a sync carries them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import git
from ..errors import TetherError
from ..globs import compile_glob, has_magic, is_regex, matches, rebase, split_patterns
from ..lock import DataRecord
from ..project.model import DependencyDef, OpDef, Project
from ..session.replay import Replay, pinned
from ..store import Store
from ..store.layout import ATTRS, LOCK, MANIFEST, MARKER, METRICS, OUTPUT, STATE, SUMMARY
from ..store.records import IndexRow
from ..store.where import compile_where
from ..workspace import PROJECT_FILES
from .dvcfile import DVC_SUFFIX, read_dvc_outs

STAGED_LIST = ".tether-staged"  # what a run had staged: its inputs, not its outputs
BATCH_FILE = "batch.json"
RECORD_NAMES = frozenset(
    {
        LOCK,
        STATE,
        ATTRS,
        OUTPUT,
        METRICS,
        SUMMARY,
        MANIFEST,
        MARKER,
        "source",
        STAGED_LIST,
        BATCH_FILE,
    }
)
DEFAULT_SOURCECODE = [
    "*.py",
    "*.yaml",
    "*.yml",
    "*.toml",
    "*.json",
    "*.cfg",
    "*.ini",
    "*.sh",
    "*.txt",
]
SKIP_DIRS = frozenset(
    {"__pycache__", "node_modules", "site-packages", "venv", "env", "build", "dist"}
)
MAX_SOURCE_FILES = 2000
MAX_SOURCE_BYTES = 8 * 1024 * 1024
DEP_TYPES = ("project-files", "run-files", "runs-summary", "dvcfile")


@dataclass
class StagedPath:
    source: Path  # absolute
    dest: str  # posix path relative to the run folder
    copy: bool  # copy (source code) or symlink (dependencies)
    origin: str  # "sourcecode" or the dependency's key path


@dataclass
class ResolvedDep:
    dep: DependencyDef
    key_path: str
    stage: str | None = None  # run-files: the stage name recorded in run.lock
    upstream: list[IndexRow] = field(default_factory=list)
    paths: list[StagedPath] = field(default_factory=list)
    data: list[str] = field(default_factory=list)  # paths hashed into run.lock
    records: list[DataRecord] = field(default_factory=list)  # dvcfile: digests as recorded
    summary_file: str | None = None  # runs-summary: where the JSON goes
    error: TetherError | None = None


@dataclass
class Staging:
    sources: list[StagedPath] = field(default_factory=list)
    deps: list[ResolvedDep] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def paths(self) -> list[StagedPath]:
        return [*self.sources, *(p for d in self.deps for p in d.paths)]

    @property
    def data_paths(self) -> list[str]:
        return [p for d in self.deps for p in d.data]

    @property
    def data_records(self) -> list[DataRecord]:
        """Data records known without hashing (a `.dvc` file's md5s), for run.lock as given."""
        return [r for d in self.deps for r in d.records]

    @property
    def stage_runs(self) -> dict[str, str]:
        return {d.stage: d.upstream[0].id for d in self.deps if d.stage and d.upstream}

    def errors(self) -> list[TetherError]:
        return [d.error for d in self.deps if d.error is not None]


# -- listing ----------------------------------------------------------------------------------
def _is_venv(folder: Path) -> bool:
    return (folder / "pyvenv.cfg").is_file()


def walk_files(base: Path, fences: Sequence[Path] = ()) -> Iterator[str]:
    """Files below `base` as posix paths relative to it, skipping hidden folders, virtual
    environments, caches and the `fences` (the runs root)."""
    fenced = {f.resolve() for f in fences}
    for folder, dirs, files in os.walk(base):
        here = Path(folder)
        rel = os.path.relpath(folder, base).replace(os.sep, "/")
        prefix = "" if rel == "." else rel + "/"
        kept = []
        for d in sorted(dirs):
            sub = here / d
            if d.startswith(".") or d in SKIP_DIRS or _is_venv(sub):
                continue
            if sub.resolve() in fenced:
                continue
            kept.append(d)
        dirs[:] = kept
        for name in sorted(files):
            yield prefix + name


def _git_files(root: Path) -> list[str] | None:
    """Files under `root` git would track (tracked and untracked-not-ignored), or None."""
    if not git.in_git(root):
        return None
    try:
        out = git.output(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    except git.GitError:
        return None
    names = sorted({n for n in out.split("\0") if n})
    venvs: dict[str, bool] = {}

    def in_venv(rel: str) -> bool:
        parts = rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            folder = "/".join(parts[:i])
            if folder not in venvs:
                venvs[folder] = _is_venv(root / folder)
            if venvs[folder]:
                return True
        return False

    return [n for n in names if not _skipped(n) and not in_venv(n)]


def _skipped(rel: str) -> bool:
    return any(part.startswith(".") or part in SKIP_DIRS for part in rel.split("/")[:-1])


def select_sources(
    root: Path, patterns: Sequence[str], fences: Sequence[Path] = ()
) -> tuple[list[StagedPath], list[str]]:
    """The source files to copy into the run folder, and warnings about what was left out."""
    include, exclude = split_patterns(patterns)
    inc = [compile_glob(p) for p in include or DEFAULT_SOURCECODE]
    exc = [compile_glob(p) for p in exclude]
    listed = _git_files(root)
    fenced = [f.resolve() for f in fences]
    candidates = listed if listed is not None else walk_files(root, fences)
    out: list[StagedPath] = []
    warnings: list[str] = []
    for rel in candidates:
        if not matches(rel, inc) or matches(rel, exc):
            continue
        path = root / rel
        if rel.split("/", 1)[0] in RECORD_NAMES:
            warnings.append(f"sourcecode: {rel} not staged (the name is a run record file)")
            continue
        try:
            st = path.stat()
        except OSError:
            continue  # deleted but still in git's index
        if not path.is_file():
            continue
        if any(f == path.resolve() or f in path.resolve().parents for f in fenced):
            continue
        if st.st_size > MAX_SOURCE_BYTES:
            warnings.append(
                f"sourcecode: {rel} not staged ({st.st_size // 1024 // 1024} MiB; source files "
                f"above {MAX_SOURCE_BYTES // 1024 // 1024} MiB are left out: declare it as a "
                "project-files dependency)"
            )
            continue
        if len(out) >= MAX_SOURCE_FILES:
            warnings.append(
                f"sourcecode: stopped at {MAX_SOURCE_FILES} files; narrow `sourcecode` globs"
            )
            break
        out.append(StagedPath(path, rel, True, "sourcecode"))
    for pattern in include:
        glob = compile_glob(pattern)
        if not any(glob.selects(p.dest) for p in out):
            warnings.append(f"sourcecode: {pattern!r} matches no file under {root}")
    return out, warnings


def snapshot_patterns(
    root: Path, patterns: Sequence[str], project_file: Path | None = None
) -> tuple[list[str], list[str]]:
    """`sourcecode` globs (relative to the project root) as snapshot include/exclude globs
    (relative to the repository's top, which may be a parent of the project root).

    Globs that narrow the snapshot also take the project file (`project_file`, default the
    one in `root`): it defines the operation, and `tether reproduce` runs it from the snapshot.
    """
    include, exclude = split_patterns(patterns)
    if include:
        project_file = project_file or next(
            (root / n for n in PROJECT_FILES if (root / n).is_file()), None
        )
        if project_file is not None and project_file.parent.resolve() == root.resolve():
            include = [*include, "/" + project_file.name]
    top = git.toplevel(root) if include or exclude else None
    if top is None or top.resolve() == root.resolve():
        return include, exclude
    rel = root.resolve().relative_to(top.resolve()).as_posix()
    return [rebase(p, rel) for p in include], [rebase(p, rel) for p in exclude]


# -- dependencies -----------------------------------------------------------------------------
def _files_under(base: Path, pattern: str, fences: Sequence[Path] = ()) -> list[str]:
    """Paths relative to `base` a dependency glob names: a literal path as is, else the files
    it matches (anchored at `base`)."""
    if not is_regex(pattern):
        pattern = pattern.strip().lstrip("/")
    if not has_magic(pattern):
        target = base / pattern
        return [Path(pattern).as_posix()] if target.exists() or target.is_symlink() else []
    # Walk only below the literal folders the pattern starts with.
    parts = pattern.split("/")
    fixed: list[str] = []
    for part in parts[:-1]:
        if has_magic(part):
            break
        fixed.append(part)
    start = base.joinpath(*fixed) if fixed else base
    if not start.is_dir():
        return []
    glob = compile_glob(pattern, anchored=True)
    prefix = "/".join(fixed)
    found = []
    for rel in walk_files(start, fences):
        full = f"{prefix}/{rel}" if prefix else rel
        if glob.selects(full):
            found.append(full)
    return found


def _select_runs(
    store: Store, op: str | None, where: str | None, key_path: str, limit: int | None
) -> list[IndexRow]:
    """Completed runs of `op` matching `where`, newest first."""
    if not store.root.is_dir():
        if where:
            _compile_where(where, key_path)
        return []
    clauses = ["runs.status = 'completed'"]
    params: list[Any] = []
    if op:
        clauses.append("runs.name = ?")
        params.append(op)
    if where:
        sql, more = _compile_where(where, key_path)
        clauses.append(f"({sql})")
        params += more
    store.list(limit=1)  # rebuilds a missing index from the run folders first
    return store.index.rows(where_sql=" AND ".join(clauses), params=params, limit=limit)


def _compile_where(where: str, key_path: str) -> tuple[str, list[Any]]:
    try:
        return compile_where(where)
    except TetherError as exc:
        raise TetherError(f"{key_path}.where: {exc.message}", exc.hint)


def _upstream_entries(run_dir: Path) -> list[str]:
    """What a run produced: its top-level entries without tether's records, hidden files and
    the inputs it had staged itself (its source code and dependencies)."""
    staged: set[str] = set()
    with contextlib.suppress(OSError):
        staged = {
            line.split("/", 1)[0]
            for line in (run_dir / STAGED_LIST).read_text(encoding="utf-8").splitlines()
            if line
        }
    return sorted(
        e.name
        for e in os.scandir(run_dir)
        if e.name not in RECORD_NAMES and not e.name.startswith(".") and e.name not in staged
    )


def _target(dep: DependencyDef, rel: str) -> str:
    target = (dep.target or ".").strip().strip("/")
    joined = rel if target in ("", ".") else f"{target}/{rel}"
    return Path(joined).as_posix()


def _check_target(dep: DependencyDef, key_path: str) -> None:
    target = Path(dep.target or ".")
    if target.is_absolute() or ".." in target.parts:
        raise TetherError(
            f"{key_path}.target: {dep.target!r} must be a folder inside the run folder"
        )


def resolve_dep(
    project: Project,
    dep: DependencyDef,
    index: int,
    store: Store,
    op: OpDef,
    replay: Replay | None = None,
) -> ResolvedDep:
    """One dependency, resolved now; `replay` (under `tether reproduce`) makes it take the
    upstream runs the reproduced run took, not the latest ones."""
    key_path = dep.key_path or f"ops.{op.name}.depends[{index}]"
    out = ResolvedDep(dep, key_path)
    try:
        _check_target(dep, key_path)
        if dep.type == "project-files":
            _resolve_project_files(project, dep, out, store)
        elif dep.type == "run-files":
            _resolve_run_files(dep, out, store, replay)
        elif dep.type == "dvcfile":
            _resolve_dvcfile(project, dep, out)
        elif dep.type == "runs-summary":
            name = dep.name or "runs-summary"
            out.summary_file = _target(dep, name if name.endswith(".json") else name + ".json")
            listed = replay.summary_runs(out.summary_file) if replay else None
            if listed is not None:
                out.upstream = _pinned_rows(store, listed, key_path)
            else:
                out.upstream = _select_runs(store, dep.op, dep.where, key_path, None)
        else:
            raise TetherError(
                f"{key_path}.type: unknown dependency type {dep.type!r}",
                "expected one of: " + ", ".join(DEP_TYPES),
            )
    except TetherError as exc:
        out.error = exc
    return out


def _resolve_project_files(
    project: Project, dep: DependencyDef, out: ResolvedDep, store: Store
) -> None:
    root = project.root
    if not dep.files:
        raise TetherError(f"{out.key_path}.files: project-files needs at least one path or glob")
    for pattern in dep.files:
        rels = _files_under(root, pattern, [store.root])
        if not rels:
            what = "matches no file" if has_magic(pattern) else "does not exist"
            raise TetherError(f"{out.key_path}: project file {pattern!r} {what} in {root}")
        for rel in rels:
            if ".." in Path(rel).parts:
                raise TetherError(f"{out.key_path}: {pattern!r} leads outside the project")
            out.paths.append(StagedPath(root / rel, _target(dep, rel), False, out.key_path))
            out.data.append(rel)


def _resolve_dvcfile(project: Project, dep: DependencyDef, out: ResolvedDep) -> None:
    """`dvcfile: data.csv` (or `data.csv.dvc`): the outs of the .dvc file, linked, with the md5
    and size DVC recorded for them as run.lock data records."""
    root = project.root
    if not dep.files:
        raise TetherError(f"{out.key_path}.files: dvcfile needs a path, such as data.csv")
    for name in dep.files:
        rel = Path(name.strip().lstrip("/")).as_posix()
        dvc_rel = rel if rel.endswith(DVC_SUFFIX) else rel + DVC_SUFFIX
        outs = read_dvc_outs(root, dvc_rel, out.key_path)
        if not rel.endswith(DVC_SUFFIX):
            outs = [o for o in outs if o.path == rel]
            if not outs:
                raise TetherError(
                    f"{dvc_rel}: its outs do not list {rel}",
                    f"name the .dvc file itself ({dvc_rel}) to take all its outs",
                )
        for record in outs:
            source = root / record.path
            if not (source.exists() or source.is_symlink()):
                raise TetherError(
                    f"{out.key_path}: {record.path} (tracked by {dvc_rel}) is not in {root}",
                    f"fetch it first: dvc pull {dvc_rel}",
                )
            out.paths.append(StagedPath(source, _target(dep, record.path), False, out.key_path))
            out.records.append(record)


def _pinned_rows(store: Store, ids: Sequence[str], key_path: str) -> list[IndexRow]:
    """The runs `ids`, in that order, each still there and completed (`tether reproduce`)."""
    if not ids:
        return []
    store.list(limit=1)  # rebuilds a missing index from the run folders first
    marks = ",".join("?" * len(ids))
    found = {r.id: r for r in store.index.rows(where_sql=f"runs.id IN ({marks})", params=ids)}
    rows = []
    for run_id in ids:
        row = found.get(run_id)
        if row is None or row.status != "completed":
            state = "gone" if row is None else row.status
            raise TetherError(
                f"{key_path}: upstream run {run_id[:13]} of the reproduced run is {state}",
                "a reproduction takes the upstream runs the recorded run took",
            )
        rows.append(row)
    return rows


def _resolve_run_files(
    dep: DependencyDef, out: ResolvedDep, store: Store, replay: Replay | None = None
) -> None:
    if not dep.op:
        raise TetherError(f"{out.key_path}.op: run-files needs the op whose runs it reads")
    recorded = replay.stage_run(dep.name or dep.op) if replay else None
    if recorded is not None:
        rows = _pinned_rows(store, [recorded], out.key_path)
    else:
        rows = _select_runs(store, dep.op, dep.where, out.key_path, 1)
    if not rows:
        where = f" matching {dep.where!r}" if dep.where else ""
        raise TetherError(
            f"{out.key_path}: no completed run of op {dep.op!r}{where} "
            f"(run it first: tether run {dep.op})"
        )
    upstream = rows[0]
    out.upstream = [upstream]
    out.stage = dep.name or dep.op
    run_dir = Path(upstream.dir)
    if dep.files:
        rels: list[str] = []
        for pattern in dep.files:
            found = [
                r for r in _files_under(run_dir, pattern) if r.split("/", 1)[0] not in RECORD_NAMES
            ]
            if not found:
                raise TetherError(
                    f"{out.key_path}: {pattern!r} not found in run {upstream.id[:13]} "
                    f"({upstream.name})",
                    f"its files: {', '.join(_upstream_entries(run_dir)) or 'none'}",
                )
            rels += [r for r in found if r not in rels]
    else:
        rels = _upstream_entries(run_dir)
        if not rels:
            raise TetherError(
                f"{out.key_path}: run {upstream.id[:13]} ({upstream.name}) produced no files"
            )
    for rel in rels:
        source = run_dir / rel
        out.paths.append(StagedPath(source, _target(dep, rel), False, out.key_path))
        out.data.append(str(source))


def plan_staging(project: Project, op: OpDef, store: Store) -> Staging:
    """What `op` gets staged, resolved now (dependency errors are kept, not raised)."""
    sources, warnings = select_sources(project.root, op.sourcecode, [store.root])
    staging = Staging(sources=sources, warnings=warnings)
    replay = pinned(op.name)  # under `tether reproduce`: the recorded run's upstream runs
    for i, dep in enumerate(op.depends):
        staging.deps.append(resolve_dep(project, dep, i, store, op, replay))
    _check_conflicts(staging)
    return staging


def _check_conflicts(staging: Staging) -> None:
    """Two inputs for one place: a dependency wins over source code with the same file;
    anything else is an error of the later dependency."""
    taken: dict[str, StagedPath] = {}
    dep_dests = {p.dest for d in staging.deps for p in d.paths}
    staging.sources = [p for p in staging.sources if p.dest not in dep_dests]
    for dep in staging.deps:
        if dep.summary_file:
            dep_dests.add(dep.summary_file)
    for path in [*staging.sources, *(p for d in staging.deps for p in d.paths)]:
        if path.dest.split("/", 1)[0] in RECORD_NAMES:
            _fail(staging, path, f"{path.dest} would replace a run record file")
            continue
        other = taken.get(path.dest)
        if other is not None and other.source != path.source:
            _fail(staging, path, f"{path.dest} is staged twice ({other.origin} and {path.origin})")
            continue
        taken[path.dest] = path
    # A linked folder must not have other inputs inside it (they would be written through
    # the link into the folder it points to).
    links = {p.dest for p in taken.values() if not p.copy and p.source.is_dir()}
    staging.sources = [
        p for p in staging.sources if not any(p.dest.startswith(d + "/") for d in links)
    ]
    for dep in staging.deps:
        for path in dep.paths:
            inside = [d for d in links if path.dest.startswith(d + "/")]
            if inside:
                _fail(staging, path, f"{path.dest} lies inside the linked folder {inside[0]}")


def _fail(staging: Staging, path: StagedPath, message: str) -> None:
    for dep in staging.deps:
        if dep.key_path == path.origin and dep.error is None:
            dep.error = TetherError(f"{dep.key_path}: {message}")
            return
    staging.warnings.append(f"sourcecode: {message}")


# -- staging ----------------------------------------------------------------------------------
def stage(staging: Staging, run_dir: Path, store: Store) -> None:
    """Copy the sources and link the dependencies into `run_dir`; write runs summaries."""
    done: list[str] = []
    for path in staging.paths:
        dest = run_dir / path.dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists() or dest.is_symlink():
            continue
        try:
            if path.copy:
                shutil.copy2(path.source, dest)
            else:
                os.symlink(path.source, dest, target_is_directory=path.source.is_dir())
        except OSError as exc:
            raise TetherError(f"{path.origin}: cannot stage {path.dest} ({exc.strerror})")
        done.append(path.dest)
    for dep in staging.deps:
        if dep.summary_file:
            dest = run_dir / dep.summary_file
            dest.parent.mkdir(parents=True, exist_ok=True)
            summaries = [_summary(store, row) for row in dep.upstream]
            dest.write_text(json.dumps(summaries, indent=2, default=str) + "\n", encoding="utf-8")
            done.append(dep.summary_file)
    if done:
        (run_dir / STAGED_LIST).write_text("".join(d + "\n" for d in done), encoding="utf-8")


def _summary(store: Store, row: IndexRow) -> dict[str, Any]:
    try:
        record = store.load(row.id)
    except TetherError:
        return {"id": row.id, "name": row.name, "status": row.status, "missing": True}
    return {
        "id": record.id,
        "name": record.name,
        "status": record.status,
        "label": record.attrs.label,
        "tags": record.attrs.tags,
        "started": record.state.started,
        "stopped": record.state.stopped,
        "dir": str(record.dir),
        "config": record.lock.config,
        "metrics": record.metrics(),
    }
