"""A run's code against the project's HEAD now: each git snapshot of the run compared with the
commit its repository's HEAD names, by the same comparison as `tether diff` (tether.diffing)."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from .. import git
from ..diffing import diff_sources, locate_repo, search_roots
from ..store.records import RunRecord

MAX_PATCH = 1 << 21  # characters of patch one answer holds at most


def _head(repo: Path) -> str | None:
    proc = git.run(repo, "rev-parse", "--verify", "--quiet", "HEAD^{commit}", check=False)
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def head_diff(record: RunRecord) -> dict[str, Any]:
    """`{"sources": [...]}`: per source entry of the run, its snapshot commit, the HEAD it was
    compared with, and the change (`same`, `changed` with stat and patch, or `unavailable` /
    `unrecorded` with a message)."""
    roots = search_roots(Path(record.dir))
    out = []
    for source in record.lock.sources:
        entry: dict[str, Any] = {"path": source.path, "commit": source.commit, "head": None}
        if not source.commit:
            what = "a source copy" if source.manifest else "no snapshot"
            entry.update(change="unrecorded", message=f"the run recorded {what}, not a commit")
            out.append(entry)
            continue
        if not git.available():
            entry.update(change="unavailable", message="git is not installed")
            out.append(entry)
            continue
        repo = locate_repo(source.path, roots)
        if repo is None and source.root and Path(source.root).is_dir():
            repo = locate_repo(source.root, roots)
        head = _head(repo) if repo is not None else None
        if repo is None or head is None:
            where = f"{source.path} (recorded at {source.root})" if source.root else source.path
            entry.update(change="unavailable", message=f"no git repository with a HEAD at {where}")
            out.append(entry)
            continue
        now = replace(source, commit=head, tree=None, head=head)
        (change,) = diff_sources([source], [now], roots=[repo, *roots], patch=True)
        found = asdict(change)
        patch = found.get("patch") or ""
        entry.update(
            head=head,
            repo=str(repo),
            change=change.change,
            message=change.message,
            stat=change.stat,
            files=found.get("files", []),
            patch=patch[:MAX_PATCH],
            truncated=len(patch) > MAX_PATCH,
        )
        out.append(entry)
    return {"run": record.id, "sources": out}
