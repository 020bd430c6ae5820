"""Source snapshots: commit the working tree as it is into refs/tether/snapshots/<run-id>.

A temporary index (GIT_INDEX_FILE, seeded from a copy of the user's index so git's stat cache
still saves re-reading unchanged files) and `git commit-tree` leave the user's index, branch,
stash and working tree untouched. Outside git, the selected files are copied into the run's
`source/` folder with a manifest of their digests.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ..errors import TetherError
from ..lock import SourceRecord

log = logging.getLogger("tether.snapshot")

REF_PREFIX = "refs/tether/snapshots/"
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


class GitError(TetherError):
    pass


def _git(
    repo: Path,
    *args: str,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
) -> str:
    try:
        proc = subprocess.run(
            ["git", "-C", str(repo), *args],
            capture_output=True,
            text=True,
            env=env,
            input=stdin,
            check=False,
        )
    except FileNotFoundError:
        raise GitError("git is not installed", "install git, or pass snapshot=False")
    if proc.returncode != 0:
        raise GitError(f"git {' '.join(args[:2])} in {repo} failed: {proc.stderr.strip()}")
    return proc.stdout


def git_top(path: Path) -> Path | None:
    if shutil.which("git") is None:
        return None
    try:
        out = _git(path if path.is_dir() else path.parent, "rev-parse", "--show-toplevel")
    except GitError:
        return None
    return Path(out.strip())


def _repo_state(repo: Path) -> tuple[Path, Path, str | None, str | None, str | None]:
    """Top folder, index file, HEAD commit and tree, branch: one `git rev-parse` when the repo
    has commits (each git process costs about a millisecond on the run's start-up path)."""
    if shutil.which("git") is None:
        raise GitError("git is not installed", "install git, or pass snapshot=False")
    where = repo if repo.is_dir() else repo.parent
    proc = subprocess.run(
        [
            "git",
            "-C",
            str(where),
            "rev-parse",
            "--show-toplevel",
            "--git-path",
            "index",
            "HEAD",
            "HEAD^{tree}",
            "--abbrev-ref",
            "HEAD",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = proc.stdout.splitlines()
    head: str | None
    head_tree: str | None
    if proc.returncode == 0 and len(lines) == 5:
        top = Path(lines[0])
        branch = None if lines[4] == "HEAD" else lines[4]
        head, head_tree = lines[2], lines[3]
    else:
        found = git_top(where)
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


def _pathspec(pattern: str) -> str:
    """A gitignore-like glob as a git pathspec: a pattern without '/' matches at any depth."""
    pattern = pattern.strip()
    anchored = pattern.startswith("/")
    pattern = pattern.lstrip("/")
    if pattern.endswith("/"):
        pattern += "**"
    if not anchored and "/" not in pattern.rstrip("*").rstrip("/"):
        pattern = "**/" + pattern
    return f":(glob){pattern}"


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
) -> SourceRecord:
    """Commit the working tree of `repo`: tracked changes and untracked files not ignored by
    .gitignore, narrowed to `include` globs and without `exclude` globs. With publish=False the
    commit is made but not referenced yet (see `publish_snapshot`)."""
    top, index_path, head, head_tree, branch = _repo_state(repo)
    excludes = [_pathspec(p).replace(":(glob)", ":(exclude,glob)") for p in exclude]
    with tempfile.TemporaryDirectory(prefix="tether-index-") as tmp:
        temp_index = Path(tmp) / "index"
        if index_path.exists():
            # copy2 keeps the mtime: git compares it with file mtimes to spot "racily clean"
            # entries, and a fresh mtime would make it trust stale stat data.
            shutil.copy2(index_path, temp_index)
        env = dict(os.environ, GIT_INDEX_FILE=str(temp_index))
        env.pop("GIT_DIR", None)
        # Exclusions go into the pathspec, so git never opens the files behind them.
        _git(top, "add", "-A", "--", ".", *excludes, env=env)
        drop: list[str] = []
        if exclude:
            drop += _ls(top, env, *(_pathspec(p) for p in exclude))
        if include:
            includes = [_pathspec(p) for p in include]
            for pattern, spec in zip(include, includes, strict=True):
                if not _ls(top, env, spec):
                    log.warning("snapshot include pattern %r matches no file in %s", pattern, top)
            drop += _ls(top, env, ".", *(s.replace(":(glob)", ":(exclude,glob)") for s in includes))
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
        tree = _git(top, "write-tree", env=env).strip()
    parents = ["-p", head] if head else []
    commit = _git(
        top,
        "commit-tree",
        tree,
        *parents,
        "-m",
        f"tether snapshot of run {run_id}",
        env=dict(os.environ, **_IDENT),
    ).strip()
    if publish:
        _git(top, "update-ref", REF_PREFIX + run_id, commit)
    dirty = head is None or head_tree != tree
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
    )


def publish_snapshot(record: SourceRecord, run_id: str) -> None:
    """Point refs/tether/snapshots/<run-id> at a snapshot commit, keeping it from git gc."""
    if record.commit and record.root:
        _git(Path(record.root), "update-ref", REF_PREFIX + run_id, record.commit)


def in_git(path: Path) -> bool:
    """Inside a git work tree? A walk up for `.git`, cheaper than a git process."""
    if shutil.which("git") is None:
        return False
    here = path.resolve()
    ceilings = [Path(p) for p in os.environ.get("GIT_CEILING_DIRECTORIES", "").split(":") if p]
    for folder in (here, *here.parents):
        if (folder / ".git").exists():
            return True
        if folder in ceilings:
            return False
    return False


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
    import fnmatch

    import blake3

    from ..fsio import atomic_write_json

    patterns = list(include) or DEFAULT_COPY_INCLUDE
    skip = [*DEFAULT_COPY_EXCLUDE, *exclude]

    def matches(rel: str, globs: Sequence[str]) -> bool:
        name = rel.rsplit("/", 1)[-1]
        for g in globs:
            g = g.lstrip("/")
            if fnmatch.fnmatchcase(rel, g) or ("/" not in g and fnmatch.fnmatchcase(name, g)):
                return True
            if g.startswith("**/") and fnmatch.fnmatchcase(rel, g[3:]):
                return True
        return False

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
        dirs[:] = sorted(d for d in dirs if not matches(f"{rel_dir}{d}/x", skip))
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
    for pattern in include:
        if not any(matches(rel, [pattern]) for rel in manifest):
            log.warning("snapshot include pattern %r matches no file in %s", pattern, base)
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
