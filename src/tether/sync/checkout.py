"""`tether checkout RUN [--branch NAME]`: a branch of a run's snapshot commit in the project's
repository, and one per upstream stage (`NAME--<stage>`) whose snapshot is there too, so the
code of every stage that fed the run is reachable (naga's "git pull of past stages"). The
working tree is left alone: `git switch NAME` goes there."""

from __future__ import annotations

import re

from .. import git
from ..errors import TetherError
from ..store import RunRecord, Store
from . import bundles


def _commit(repo: object, record: RunRecord) -> str | None:
    from pathlib import Path  # noqa: PLC0415

    ref = bundles.has_ref(Path(str(repo)), record.id)
    if ref:
        return ref
    for src in record.lock.sources:
        if (
            src.commit
            and src.superproject is None
            and bundles.present(Path(str(repo)), [src.commit])
        ):
            return src.commit
    return None


def default_branch(record: RunRecord) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", record.name or "run").strip("-.") or "run"
    return f"tether/{name}-{record.id[:8]}"


def checkout_run(store: Store, record: RunRecord, branch: str | None) -> list[tuple[str, str]]:
    """Make the branches; [(branch, commit)], the run's first."""
    repo = bundles.local_repo()
    if repo is None:
        raise TetherError("no git repository here", "run `tether checkout` inside the project")
    commit = _commit(repo, record)
    if commit is None:
        raise TetherError(
            f"run {record.id[:13]} has no snapshot commit in {repo}",
            "`tether pull REMOTE` brings the snapshot bundles of pulled runs",
        )
    name = branch or default_branch(record)
    if git.run(repo, "check-ref-format", "--branch", name, check=False).returncode != 0:
        raise TetherError(f"{name!r} is not a valid branch name", "choose another --branch")
    made = []
    for what, _rec, at in [(name, record, commit), *_stages(store, repo, record, name)]:
        proc = git.run(repo, "branch", what, at, check=False)
        if proc.returncode != 0:
            raise TetherError(
                f"git branch {what} failed: {proc.stderr.strip()}",
                "choose another --branch, or delete the old one",
            )
        made.append((what, at))
    return made


def _stages(
    store: Store, repo: object, record: RunRecord, name: str
) -> list[tuple[str, RunRecord, str]]:
    out = []
    for stage in record.lock.stages:
        try:
            upstream = store.load(stage.run)
        except TetherError:
            continue
        commit = _commit(repo, upstream)
        if commit is not None:
            safe = re.sub(r"[^A-Za-z0-9._-]+", "-", stage.name).strip("-.") or "stage"
            out.append((f"{name}--{safe}", upstream, commit))
    return out
