"""Source snapshots: commit the working tree as it is into refs/tether/snapshots/<run-id>.

A temporary index (GIT_INDEX_FILE, seeded from a copy of the user's index so git's stat cache
still saves re-reading unchanged files) and `git commit-tree` leave the user's index, branch,
stash and working tree untouched. Outside git, the selected files are copied into the run's
`source/` folder with a manifest of their digests.

Submodules are snapshotted too, each its own source entry (`superproject` names the entry of the
repository holding it): a submodule whose files changed gets a snapshot commit of its own, and
the superproject's snapshot points its gitlink at that commit, so the superproject's tree (and
its `dirty`) says when a submodule's checked-out commit or content differs from HEAD.

Untracked files above a size limit (`max_file_bytes`) are left out of the snapshot with a
warning naming the file and the pattern that would exclude it, and listed in the entry's
`skipped`: hashing them would copy them into the user's `.git` for good. Tracked files are
always taken, since leaving one out would record its HEAD version as if it were the run's.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .. import git
from ..fsio import atomic_write_json
from ..git import SNAPSHOT_REF, GitError
from ..globs import Glob, compile_glob, matches
from ..lock import SourceRecord

log = logging.getLogger("tether.snapshot")

_IDENT = {
    "GIT_AUTHOR_NAME": "tether",
    "GIT_AUTHOR_EMAIL": "tether@localhost",
    "GIT_COMMITTER_NAME": "tether",
    "GIT_COMMITTER_EMAIL": "tether@localhost",
}
# Without git there is no .gitignore to go by: copy source-like files, skip the usual bulk.
DEFAULT_COPY_INCLUDE = ["*.py", "*.yaml", "*.yml", "*.toml", "*.json", "*.cfg", "*.sh", "*.txt"]
DEFAULT_COPY_EXCLUDE = [
    ".*/**",
    "**/.*/**",
    "**/__pycache__/**",
    "**/node_modules/**",
    "**/site-packages/**",
    "**/venv/**",
]
COPY_MAX_FILES = 5000
COPY_MAX_FILE_BYTES = 8 * 1024 * 1024
# Untracked files above this are left out of a git snapshot (GitHub warns from 50 MB on).
DEFAULT_MAX_FILE_BYTES = 50 * 1000 * 1000
GITLINK = "160000"  # the index mode of a submodule entry


_HINT = "install git, or pass snapshot=False"


def _git(
    repo: Path, *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> str:
    return git.output(repo, *args, env=env, input=stdin, hint=_HINT)


def _repo_state(repo: Path) -> tuple[Path, Path, str | None, str | None, str | None]:
    """Top folder, index file, HEAD commit and tree, branch: one `git rev-parse` when the repo
    has commits (each git process costs about a millisecond on the run's start-up path)."""
    if not git.available():
        raise GitError("git is not installed", _HINT)
    where = repo if repo.is_dir() else repo.parent
    proc = git.run(
        where,
        "rev-parse",
        "--show-toplevel",
        "--git-path",
        "index",
        "HEAD",
        "HEAD^{tree}",
        "--abbrev-ref",
        "HEAD",
        check=False,
        hint=_HINT,
    )
    lines = proc.stdout.splitlines()
    head: str | None
    head_tree: str | None
    if proc.returncode == 0 and len(lines) == 5:
        top = Path(lines[0])
        branch = None if lines[4] == "HEAD" else lines[4]
        head, head_tree = lines[2], lines[3]
    else:
        found = git.toplevel(where)
        if found is None:
            raise GitError(
                f"{repo} is not inside a git repository", "run `git init`, or snapshot=False"
            )
        top = found
        # A repository with no commits yet: no HEAD, every file is new.
        lines = [str(top), _git(top, "rev-parse", "--git-path", "index").strip()]
        head = head_tree = None
        try:
            branch = _git(top, "symbolic-ref", "--short", "-q", "HEAD").strip() or None
        except GitError:
            branch = None
    index_file = Path(lines[1])
    return (
        top,
        index_file if index_file.is_absolute() else top / index_file,
        head,
        head_tree,
        branch,
    )


def _specs(globs: Sequence[Glob], *, exclude: bool = False) -> list[str]:
    return [spec for g in globs for spec in g.pathspecs(exclude=exclude)]


def _ls(top: Path, env: dict[str, str], *specs: str) -> list[str]:
    out = _git(top, "ls-files", "-z", "--cached", "--", *specs, env=env)
    return [p for p in out.split("\0") if p]


def snapshot_repo(
    repo: Path,
    run_id: str,
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    project_root: Path | None = None,
    publish: bool = True,
    max_file_bytes: int | None = DEFAULT_MAX_FILE_BYTES,
    submodules: list[SourceRecord] | None = None,
    superproject: str | None = None,
) -> SourceRecord:
    """Commit the working tree of `repo`: tracked changes and untracked files not ignored by
    .gitignore, narrowed to `include` globs and without `exclude` globs. With publish=False the
    commit is made but not referenced yet (see `publish_snapshot`).

    Untracked files larger than `max_file_bytes` (None or 0: no limit) are left out, with a
    warning. The entries of the checked-out submodules, snapshotted the same way (recursively),
    are appended to `submodules` when given; without it they are snapshotted and dropped."""
    top, index_path, head, head_tree, branch = _repo_state(repo)
    inc = [compile_glob(p) for p in include]
    exc = [compile_glob(p) for p in exclude]
    with tempfile.TemporaryDirectory(prefix="tether-index-") as tmp:
        temp_index = Path(tmp) / "index"
        if index_path.exists():
            # copy2 keeps the mtime: git compares it with file mtimes to spot "racily clean"
            # entries, and a fresh mtime would make it trust stale stat data.
            shutil.copy2(index_path, temp_index)
        env = {"GIT_INDEX_FILE": str(temp_index)}
        # Exclusions go into the pathspec, so git never opens the files behind them.
        excluded = _specs(exc, exclude=True)
        big = _big_untracked(top, env, excluded, max_file_bytes) if max_file_bytes else []
        for rel, size in big:
            log.warning(
                "snapshot of %s: left out %s (%s, above the %s limit for untracked files); "
                "add /%s to .gitignore or exclude=[%r] to the snapshot, or raise "
                "max-file-size under [snapshot] in tether.toml",
                top,
                rel,
                format_size(size),
                format_size(max_file_bytes or 0),
                rel,
                rel,
            )
        skipped = [f":(exclude,literal){rel}" for rel, _ in big]
        _git(top, "add", "-A", "--", ".", *excluded, *skipped, env=env)
        drop: list[str] = []
        if _specs(exc):
            drop += _ls(top, env, *_specs(exc))
        # `regex:` patterns have no pathspec: git's listing is narrowed by matching it here.
        listed = _ls(top, env) if any(g.regex for g in (*inc, *exc)) else []
        drop += [p for p in listed if any(g.regex and g.selects(p) for g in exc)]
        if include:
            for g in inc:
                if g.regex:
                    if not any(g.selects(p) for p in listed):
                        log.warning(
                            "snapshot include pattern %r matches no file in %s", g.pattern, top
                        )
                elif not g.pathspecs() or not _ls(top, env, *g.pathspecs()):
                    log.warning("snapshot include pattern %r matches no file in %s", g.pattern, top)
            if any(g.regex for g in inc):
                drop += [p for p in listed if not matches(p, inc)]
            else:
                drop += _ls(top, env, ".", *_specs(inc, exclude=True))
        if drop:
            _git(
                top,
                "update-index",
                "-z",
                "--force-remove",
                "--stdin",
                env=env,
                stdin="\0".join(sorted(set(drop))) + "\0",
            )
        found: list[SourceRecord] = []
        if (top / ".gitmodules").exists():
            here = _relative(top, project_root)
            links = _submodule_snapshots(
                top,
                env,
                run_id,
                exclude=[p for p in exclude if _anywhere(p)],
                project_root=project_root,
                publish=publish,
                max_file_bytes=max_file_bytes,
                found=found,
                superproject=here,
            )
            if links:
                # A submodule with changes of its own: the gitlink names its snapshot commit.
                _git(
                    top,
                    "update-index",
                    "--index-info",
                    env=env,
                    stdin="".join(f"{GITLINK} {commit}\t{rel}\n" for rel, commit in links),
                )
        tree = _git(top, "write-tree", env=env).strip()
    parents = ["-p", head] if head else []
    commit = _git(
        top,
        "commit-tree",
        tree,
        *parents,
        "-m",
        f"tether snapshot of run {run_id}",
        env=_IDENT,
    ).strip()
    if publish:
        _git(top, "update-ref", SNAPSHOT_REF + run_id, commit)
    dirty = head is None or head_tree != tree
    if submodules is not None:
        submodules += found
    return SourceRecord(
        path=_relative(top, project_root),
        root=str(top),
        commit=commit,
        tree=tree,
        head=head,
        branch=branch,
        dirty=dirty,
        include=list(include),
        exclude=list(exclude),
        skipped=[rel for rel, _ in big],
        superproject=superproject,
    )


def _big_untracked(
    top: Path, env: dict[str, str], excluded: list[str], limit: int | None
) -> list[tuple[str, int]]:
    """Untracked, not ignored files above `limit` bytes: (path relative to `top`, size)."""
    if not limit:
        return []
    out = _git(
        top, "ls-files", "-z", "--others", "--exclude-standard", "--", ".", *excluded, env=env
    )
    big = []
    for rel in out.split("\0"):
        if not rel:
            continue
        try:
            st = os.lstat(top / rel)
        except OSError:
            continue  # gone since git listed it: git add will not see it either
        if stat.S_ISREG(st.st_mode) and st.st_size > limit:
            big.append((rel, st.st_size))
    return big


def _submodule_snapshots(
    top: Path,
    env: dict[str, str],
    run_id: str,
    *,
    exclude: list[str],
    project_root: Path | None,
    publish: bool,
    max_file_bytes: int | None,
    found: list[SourceRecord],
    superproject: str,
) -> list[tuple[str, str]]:
    """Snapshot each checked-out submodule left in the snapshot's index (recursively, into
    `found`); the (path, snapshot commit) of those whose files differ from their HEAD."""
    staged = _git(top, "ls-files", "-z", "--stage", env=env)
    links: list[tuple[str, str]] = []
    for entry in staged.split("\0"):
        meta, _, rel = entry.partition("\t")
        if not meta.startswith(GITLINK + " "):
            continue
        folder = top / rel
        if not (folder / ".git").exists():
            continue  # not checked out: the gitlink alone says which commit it is
        nested: list[SourceRecord] = []
        record = snapshot_repo(
            folder,
            run_id,
            exclude=exclude,
            project_root=project_root,
            publish=publish,
            max_file_bytes=max_file_bytes,
            submodules=nested,
            superproject=superproject,
        )
        found += [record, *nested]
        if record.dirty and record.commit:
            links.append((rel, record.commit))
    return links


def _anywhere(pattern: str) -> bool:
    """A pattern that matches at any depth (no `/` but a trailing one): it applies inside a
    submodule too, where the superproject's paths mean nothing."""
    return "/" not in pattern.rstrip("/") or pattern.startswith("**/")


_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}


def parse_size(value: object) -> int | None:
    """A size like 50MB, 1.5GiB, 200kB or a number of bytes; None when it is not one.
    0 means no limit (the caller decides what it means)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if not isinstance(value, str):
        return None
    text = value.strip().replace(" ", "").replace("_", "")
    number = text.rstrip("bBkKmMgGtTiI")
    unit = text[len(number) :].lower()
    if unit not in _UNITS or not number:
        return None
    try:
        amount = float(number)
    except ValueError:
        return None
    if amount < 0 or amount != amount or amount == float("inf"):
        return None
    return int(amount * _UNITS[unit])


def format_size(n: int) -> str:
    """Bytes for people, in the units `parse_size` reads: 209.7 MB, 50 MB, 812 B."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            break
        size /= 1000
    if unit == "B":
        return f"{n} B"
    return f"{size:.1f}".removesuffix(".0") + f" {unit}"


def publish_snapshot(record: SourceRecord, run_id: str) -> None:
    """Point refs/tether/snapshots/<run-id> at a snapshot commit, keeping it from git gc."""
    if record.commit and record.root:
        _git(Path(record.root), "update-ref", SNAPSHOT_REF + run_id, record.commit)


def _relative(path: Path, base: Path | None) -> str:
    if base is None:
        return str(path)
    try:
        return os.path.relpath(path, base)
    except ValueError:
        return str(path)


def copy_sources(
    base: Path,
    dest: Path,
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    project_root: Path | None = None,
    skip_dirs: Sequence[Path] = (),
) -> SourceRecord:
    """Outside git: copy the selected files under `base` into `dest` with a digest manifest.
    `skip_dirs` (the runs root) are never entered, so runs do not copy each other."""
    import blake3

    patterns = [compile_glob(p) for p in list(include) or DEFAULT_COPY_INCLUDE]
    skip = [compile_glob(p) for p in (*DEFAULT_COPY_EXCLUDE, *exclude)]

    manifest: dict[str, dict[str, object]] = {}
    fenced = {dest.resolve(), *(Path(d).resolve() for d in skip_dirs)}
    full = False
    for folder, dirs, files in os.walk(base):
        here = Path(folder).resolve()
        if full or here in fenced or any(f in here.parents for f in fenced):
            dirs[:] = []
            continue
        rel_dir = os.path.relpath(folder, base).replace(os.sep, "/")
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirs[:] = sorted(d for d in dirs if not any(g.covers_dir(rel_dir + d) for g in skip))
        for name in sorted(files):
            rel = rel_dir + name
            if not matches(rel, patterns) or matches(rel, skip):
                continue
            src = here / name
            if not src.is_file() or src.stat().st_size > COPY_MAX_FILE_BYTES:
                continue
            if len(manifest) >= COPY_MAX_FILES:
                log.warning(
                    "source copy stopped at %d files; narrow it with include=", COPY_MAX_FILES
                )
                break
            data = src.read_bytes()
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            manifest[rel] = {"blake3": blake3.blake3(data).hexdigest(), "bytes": len(data)}
    for g in patterns[: len(include)]:
        if not any(g.selects(rel) for rel in manifest):
            log.warning("snapshot include pattern %r matches no file in %s", g.pattern, base)
    dest.mkdir(parents=True, exist_ok=True)
    atomic_write_json(dest / "MANIFEST.json", manifest)
    lines = "".join(f"{k}\t{v['blake3']}\t{v['bytes']}\n" for k, v in sorted(manifest.items()))
    return SourceRecord(
        path=_relative(base, project_root),
        root=str(base.absolute()),
        manifest=blake3.blake3(lines.encode()).hexdigest(),
        include=list(include),
        exclude=list(exclude),
        dirty=False,
    )
