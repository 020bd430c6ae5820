"""Compare two runs: config, code, data, upstream stages and environment.

`diff_runs(old, new)` returns a `RunDiff` made of plain dataclasses (`ConfigChange`,
`SourceChange`, `DataChange`, `StageChange`, and tether.capture.environment's `EnvChange` and
`PackageChange`), so scripts can use it without the CLI;
`tether diff` only renders it. Code is compared with git between the two snapshot commits
(`refs/tether/snapshots/<run-id>` in the repository the source entry names), or by the
manifests of the source copies a run made outside git.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import git
from .capture.environment import EnvChange, PackageChange, diff_environment
from .lock import DataRecord, SourceRecord, StageRecord
from .store.records import RunRecord
from .store.values import flatten
from .workspace import find_project_file

if TYPE_CHECKING:
    import subprocess

# Config keys that differ between any two runs without saying anything about their inputs
# (`save_dir` is filled with each run's own folder); `RunLock.identity()` leaves them out too.
IGNORED_CONFIG_KEYS = ("save_dir",)

MANIFEST = "MANIFEST.json"
PATCH_MAX_FILE_BYTES = 1024 * 1024


@dataclass
class ConfigChange:
    """One flattened (dotted) config key that differs."""

    key: str
    change: str  # added | removed | changed
    old: Any = None
    new: Any = None


@dataclass
class FileChange:
    """One file that differs between two snapshots (git's letters: A, M, D, R, C, T)."""

    path: str
    status: str
    old_path: str | None = None


@dataclass
class SourceChange:
    """One source entry (a repository or a source copy), matched between the runs by path.

    `change` is one of:
      same          no difference
      changed       the code differs (`files`, `stat`, and `patch` when asked for)
      added         only the new run tracked this path
      removed       only the old run tracked this path
      unavailable   cannot tell: the repository or a snapshot commit is gone (`message`)
      incomparable  one run has a git snapshot, the other a source copy
      unrecorded    neither run recorded a snapshot of it
    """

    path: str
    change: str
    kind: str  # git | copy | none
    old_commit: str | None = None
    new_commit: str | None = None
    old_manifest: str | None = None
    new_manifest: str | None = None
    repo: str | None = None
    message: str | None = None
    stat: str = ""
    files: list[FileChange] = field(default_factory=list)
    patch: str | None = None

    @property
    def differs(self) -> bool:
        return self.change != "same"


@dataclass
class DataChange:
    """One tracked data path whose digest differs (or cannot be compared yet)."""

    path: str
    change: str  # added | removed | changed | pending
    key: str | None = None
    old_digest: str | None = None
    new_digest: str | None = None
    old_status: str | None = None
    new_status: str | None = None


@dataclass
class StageChange:
    """One upstream stage (by name) that points at a different run, or only exists on one side."""

    name: str
    change: str  # added | removed | changed
    old_run: str | None = None
    new_run: str | None = None
    old_lock_digest: str | None = None
    new_lock_digest: str | None = None

    @property
    def same_inputs(self) -> bool:
        """Different upstream runs that were made from the same inputs (equal lock digests)."""
        return (
            self.change == "changed"
            and self.old_lock_digest is not None
            and self.old_lock_digest == self.new_lock_digest
        )


@dataclass
class RunSide:
    id: str
    name: str
    status: str
    dir: str


@dataclass
class RunDiff:
    old: RunSide
    new: RunSide
    config: list[ConfigChange] = field(default_factory=list)
    sources: list[SourceChange] = field(default_factory=list)
    data: list[DataChange] = field(default_factory=list)
    stages: list[StageChange] = field(default_factory=list)
    env: list[EnvChange] = field(default_factory=list)  # Python, platform, GPU stack, container
    packages: list[PackageChange] = field(default_factory=list)

    @property
    def code(self) -> list[SourceChange]:
        """Source entries that are not the same (including those that could not be compared)."""
        return [s for s in self.sources if s.differs]

    @property
    def identical(self) -> bool:
        return not (
            self.config or self.code or self.data or self.stages or self.env or self.packages
        )

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for src, raw in zip(self.sources, out["sources"], strict=True):
            raw["differs"] = src.differs
        for st, raw in zip(self.stages, out["stages"], strict=True):
            raw["same_inputs"] = st.same_inputs
        out["identical"] = self.identical
        return out


# -- config -----------------------------------------------------------------------------------
def _same_value(a: Any, b: Any) -> bool:
    # 1 == True in Python, but not in a config: a flag is not a count.
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def diff_config(
    old: dict[str, Any], new: dict[str, Any], ignore: Iterable[str] = IGNORED_CONFIG_KEYS
) -> list[ConfigChange]:
    """Added, removed and changed keys of two configs, flattened to dotted keys (lists whole)."""
    skip = set(ignore)
    a = {k: v for k, v in flatten(old).items() if k not in skip}
    b = {k: v for k, v in flatten(new).items() if k not in skip}
    out: list[ConfigChange] = []
    for key, value in a.items():
        if key not in b:
            out.append(ConfigChange(key, "removed", old=value))
        elif not _same_value(value, b[key]):
            out.append(ConfigChange(key, "changed", old=value, new=b[key]))
    for key, value in b.items():
        if key not in a:
            out.append(ConfigChange(key, "added", new=value))
    return out


# -- data -------------------------------------------------------------------------------------
def diff_data(old: Sequence[DataRecord], new: Sequence[DataRecord]) -> list[DataChange]:
    """Per tracked path: digest added, removed, changed, or not comparable while still hashing."""
    a = {d.path: d for d in old}
    b = {d.path: d for d in new}
    out: list[DataChange] = []
    for path in [*a, *(p for p in b if p not in a)]:
        x, y = a.get(path), b.get(path)
        either = y or x
        change = DataChange(
            path,
            "changed",
            key=either.key if either else None,
            old_digest=x.digest if x else None,
            new_digest=y.digest if y else None,
            old_status=x.status if x else None,
            new_status=y.status if y else None,
        )
        if x is None:
            change.change = "added"
        elif y is None:
            change.change = "removed"
        elif x.status != "done" or y.status != "done":
            change.change = "pending"
        elif x.digest == y.digest and x.algo == y.algo:
            continue
        out.append(change)
    return out


# -- stages -----------------------------------------------------------------------------------
def diff_stages(old: Sequence[StageRecord], new: Sequence[StageRecord]) -> list[StageChange]:
    """Upstream stages (matched by name) that point at another run or exist on one side only."""
    a = {s.name: s for s in old}
    b = {s.name: s for s in new}
    out: list[StageChange] = []
    for name in [*a, *(n for n in b if n not in a)]:
        x, y = a.get(name), b.get(name)
        if x is not None and y is not None and x.run == y.run:
            continue
        change = "added" if x is None else "removed" if y is None else "changed"
        out.append(
            StageChange(
                name,
                change,
                old_run=x.run if x else None,
                new_run=y.run if y else None,
                old_lock_digest=x.lock_digest if x else None,
                new_lock_digest=y.lock_digest if y else None,
            )
        )
    return out


# -- code -------------------------------------------------------------------------------------
def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # Text shown to people: an undecodable byte becomes U+FFFD, not a surrogate.
    return git.run(repo, *args, check=False, errors="replace")


def _is_repo(path: Path) -> bool:
    if not path.is_dir():
        return False
    proc = _git(path, "rev-parse", "--git-dir")
    return proc.returncode == 0


def _has_commit(repo: Path, sha: str) -> bool:
    return _git(repo, "cat-file", "-e", f"{sha}^{{commit}}").returncode == 0


def search_roots(*run_dirs: Path, cwd: Path | None = None) -> list[Path]:
    """Folders a relative source path may be relative to, most likely first: the project root
    around the current folder, the project root around each run folder, then git top levels."""
    here = (cwd or Path.cwd()).absolute()
    roots: list[Path] = []
    for start in (here, *run_dirs):
        project = find_project_file(start)
        if project is not None:
            roots.append(project.parent)
    for start in (here, *run_dirs):
        top = git.find_top(start)
        if top is not None:
            roots.append(top)
    roots.append(here)
    return list(dict.fromkeys(roots))


def locate_repo(path: str, roots: Sequence[Path]) -> Path | None:
    """The git repository a source entry's `path` names (absolute, or relative to a root)."""
    p = Path(path).expanduser()
    candidates = [p] if p.is_absolute() else [(r / p) for r in roots]
    for candidate in candidates:
        if _is_repo(candidate):
            return candidate.resolve()
    return None


def _parse_name_status(out: str) -> list[FileChange]:
    parts = out.split("\0")
    files: list[FileChange] = []
    i = 0
    while i < len(parts) and parts[i]:
        status = parts[i]
        if status[:1] in ("R", "C") and i + 2 < len(parts):
            files.append(FileChange(parts[i + 2], status[:1], old_path=parts[i + 1]))
            i += 3
        elif i + 1 < len(parts):
            files.append(FileChange(parts[i + 1], status[:1]))
            i += 2
        else:
            break
    return files


def git_patch(repo: Path, old: str, new: str, *, color: bool = False) -> str:
    """The full `git diff OLD NEW` in `repo`."""
    proc = _git(
        repo, "diff", "--no-ext-diff", f"--color={'always' if color else 'never'}", old, new
    )
    return proc.stdout


def _compare_git(
    change: SourceChange,
    roots: Sequence[Path],
    *,
    patch: bool,
    color: bool,
    recorded: Sequence[str | None] = (),
) -> None:
    old, new = change.old_commit, change.new_commit
    assert old is not None and new is not None
    if not git.available():
        change.change, change.message = "unavailable", "git is not installed"
        return
    # The path as recorded (relative to the project), else where the repository was then.
    repo = locate_repo(change.path, roots) or next(
        (Path(r).resolve() for r in recorded if r and _is_repo(Path(r))), None
    )
    if repo is None:
        where = change.path if Path(change.path).is_absolute() else f"{change.path} (looked in "
        if not Path(change.path).is_absolute():
            where += ", ".join(str(r) for r in roots) + ")"
        change.change = "unavailable"
        change.message = f"repository {where} not found"
        return
    change.repo = str(repo)
    gone = [sha for sha in (old, new) if not _has_commit(repo, sha)]
    if gone:
        change.change = "unavailable"
        shas = " and ".join(sha[:12] for sha in dict.fromkeys(gone))
        one = len(set(gone)) == 1
        change.message = (
            f"snapshot commit{'' if one else 's'} {shas} {'is' if one else 'are'} not in {repo}"
            " (ref deleted and garbage-collected, or not pulled)"
        )
        return
    names = _git(repo, "diff", "--no-ext-diff", "--name-status", "-z", old, new)
    if names.returncode != 0:
        change.change, change.message = "unavailable", f"git diff failed: {names.stderr.strip()}"
        return
    change.files = _parse_name_status(names.stdout)
    if not change.files:
        change.change = "same"
        return
    change.change = "changed"
    colour = f"--color={'always' if color else 'never'}"
    change.stat = _git(repo, "diff", "--no-ext-diff", "--stat", colour, old, new).stdout.rstrip()
    if patch:
        change.patch = git_patch(repo, old, new, color=color)


def _read_manifest(run_dir: Path) -> dict[str, Any] | None:
    try:
        with open(run_dir / "source" / MANIFEST, encoding="utf-8") as fh:
            raw = json.load(fh)
    except (OSError, ValueError):
        return None
    return raw if isinstance(raw, dict) else None


def _read_text(path: Path) -> list[str] | None:
    try:
        if path.stat().st_size > PATCH_MAX_FILE_BYTES:
            return None
        return path.read_text(encoding="utf-8").splitlines(keepends=True)
    except (OSError, UnicodeDecodeError):
        return None


def _compare_copies(
    change: SourceChange, old_dir: Path | None, new_dir: Path | None, *, patch: bool
) -> None:
    if change.old_manifest == change.new_manifest:
        change.change = "same"
        return
    change.change = "changed"
    a = _read_manifest(old_dir) if old_dir else None
    b = _read_manifest(new_dir) if new_dir else None
    if a is None or b is None:
        change.message = "source copies differ (a source/MANIFEST.json is missing: no file list)"
        return
    for rel in sorted(set(a) | set(b)):
        if rel not in a:
            change.files.append(FileChange(rel, "A"))
        elif rel not in b:
            change.files.append(FileChange(rel, "D"))
        elif (a[rel] or {}).get("blake3") != (b[rel] or {}).get("blake3"):
            change.files.append(FileChange(rel, "M"))
    if not patch:
        return
    assert old_dir is not None and new_dir is not None
    chunks: list[str] = []
    for f in change.files:
        x = [] if f.status == "A" else _read_text(old_dir / "source" / f.path)
        y = [] if f.status == "D" else _read_text(new_dir / "source" / f.path)
        if x is None or y is None:
            chunks.append(f"Binary or large file {f.path} differs\n")
            continue
        for line in difflib.unified_diff(x, y, f"a/{f.path}", f"b/{f.path}"):
            chunks.append(
                line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
            )
    change.patch = "".join(chunks)


def diff_sources(
    old: Sequence[SourceRecord],
    new: Sequence[SourceRecord],
    *,
    roots: Sequence[Path] = (),
    old_dir: Path | None = None,
    new_dir: Path | None = None,
    patch: bool = False,
    color: bool = False,
) -> list[SourceChange]:
    """Compare the source entries of two runs, matched by path.

    Git snapshots with equal trees are the same without asking git; otherwise git compares the
    two snapshot commits in the repository found at the entry's path (see `search_roots`).
    Source copies compare by manifest digest, and by file when both run folders are given.
    """
    a = {s.path: s for s in old}
    b = {s.path: s for s in new}
    out: list[SourceChange] = []
    for path in [*a, *(p for p in b if p not in a)]:
        x, y = a.get(path), b.get(path)
        if x is None or y is None:
            only = x or y
            assert only is not None
            out.append(
                SourceChange(
                    path,
                    "added" if x is None else "removed",
                    "git" if only.commit else "copy" if only.manifest else "none",
                    old_commit=x.commit if x else None,
                    new_commit=y.commit if y else None,
                    old_manifest=x.manifest if x else None,
                    new_manifest=y.manifest if y else None,
                )
            )
            continue
        change = SourceChange(
            path,
            "same",
            "none",
            old_commit=x.commit,
            new_commit=y.commit,
            old_manifest=x.manifest,
            new_manifest=y.manifest,
        )
        if x.commit and y.commit:
            change.kind = "git"
            same_tree = x.tree is not None and x.tree == y.tree
            if x.commit != y.commit and not same_tree:
                _compare_git(change, roots, patch=patch, color=color, recorded=(x.root, y.root))
        elif x.manifest and y.manifest:
            change.kind = "copy"
            _compare_copies(change, old_dir, new_dir, patch=patch)
        elif (x.commit or x.manifest) and (y.commit or y.manifest):
            change.kind = "git" if x.commit else "copy"
            change.change = "incomparable"
            change.message = (
                "one run has a git snapshot, the other a source copy: they cannot be compared"
            )
        elif x.commit or x.manifest or y.commit or y.manifest:
            change.kind = "git" if (x.commit or y.commit) else "copy"
            change.change = "unrecorded"
            change.message = "only one run recorded a snapshot"
        else:
            change.change = "unrecorded"
            change.message = "neither run recorded a snapshot"
        out.append(change)
    return out


# -- runs -------------------------------------------------------------------------------------
def _side(record: RunRecord) -> RunSide:
    return RunSide(record.id, record.name, record.status, str(record.dir))


def diff_runs(
    old: RunRecord,
    new: RunRecord,
    *,
    code: bool = True,
    patch: bool = False,
    color: bool = False,
    roots: Sequence[Path] | None = None,
) -> RunDiff:
    """Everything that differs between two runs, `old` first (as in `git diff OLD NEW`).

    The environment counts what the run ran with (Python, platform, packages, the GPU stack and
    container image), not where (host, user, folder, job).

    `code=False` skips the source comparison; `patch=True` adds the full diff text of changed
    code (`color=True` for git's colours); `roots` overrides where relative repository paths
    are looked up (default: `search_roots` of the current folder and both run folders).
    """
    result = RunDiff(
        _side(old),
        _side(new),
        config=diff_config(old.lock.config, new.lock.config),
        data=diff_data(old.lock.data, new.lock.data),
        stages=diff_stages(old.lock.stages, new.lock.stages),
    )
    result.env, result.packages = diff_environment(old.lock.env, new.lock.env)
    if code:
        result.sources = diff_sources(
            old.lock.sources,
            new.lock.sources,
            roots=search_roots(old.dir, new.dir) if roots is None else roots,
            old_dir=old.dir,
            new_dir=new.dir,
            patch=patch,
            color=color,
        )
    return result
