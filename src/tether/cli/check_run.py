"""`tether check --run RUN`: re-verify a finished run and say what drifted since it ended.

Four things are compared with what the run recorded:
- its files against its manifest.json (modified, missing, extra), contents re-hashed through
  the data hasher (tether.session.manifest.compare);
- the data digests of its inputs against run.lock (tether.reproduce.verify_data);
- its snapshot refs (refs/tether/snapshots/<id>) present in each repository it recorded and
  pointing at the recorded commit;
- its lock digest (the run's identity) against the manifest's, and each upstream stage's lock
  digest against the one this run recorded.
One line per problem; exit 1 when something drifted, 2 for bad input, 0 otherwise.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import git
from ..errors import TetherError
from ..store import RunRecord, Store
from ..store.state import BUSY


@dataclass
class Problem:
    kind: str  # modified, missing, extra, data, snapshot, lock, stage, manifest
    subject: str
    detail: str

    def line(self) -> str:
        return f"{self.kind}: {self.subject}: {self.detail}"


@dataclass
class RunCheck:
    run: str
    name: str
    problems: list[Problem] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "name": self.name,
            "ok": not self.problems,
            "problems": [dataclasses.asdict(p) for p in self.problems],
            "notes": [dataclasses.asdict(p) for p in self.notes],
        }


def check_run(store: Store, spec: str, *, cache: bool = True) -> RunCheck:
    record = store.resolve_one(spec)
    status = record.status
    if status in BUSY:
        raise TetherError(
            f"run {record.id[:13]} ({record.name}) is {status}",
            "check --run verifies a finished run; wait for it to end",
        )
    result = RunCheck(record.id, record.name)
    _files(record, result, cache)
    _data(record, result)
    _snapshots(record, result)
    _stages(store, record, result)
    return result


def _files(record: RunRecord, result: RunCheck, cache: bool) -> None:
    from ..session.manifest import compare
    from ..store.manifest import lock_digests, read_manifest

    try:
        manifest = read_manifest(record.dir)
    except TetherError as exc:
        result.problems.append(Problem("manifest", "manifest.json", exc.message))
        return
    if manifest is None:
        result.problems.append(
            Problem(
                "manifest",
                "manifest.json",
                "missing (the run was killed before its end, or recorded by an older tether)",
            )
        )
        return
    for drift in compare(record.dir, manifest, cache=cache):
        target = result.notes if drift.kind in ("pending", "unhashed") else result.problems
        target.append(Problem(drift.kind, drift.path, drift.detail))
    _, identity = lock_digests(record.dir)
    if manifest.lock_digest and identity and identity != manifest.lock_digest:
        result.problems.append(
            Problem(
                "lock",
                "run.lock",
                f"the run's identity changed (lock digest {manifest.lock_digest[:12]} -> "
                f"{identity[:12]}): its config, data or sources were edited",
            )
        )


def _data(record: RunRecord, result: RunCheck) -> None:
    from ..reproduce import verify_data

    pending = [d for d in record.lock.data if d.status == "pending"]
    for entry in pending:
        result.notes.append(Problem("data", entry.path, "digest still pending (background hash)"))
    done = [d for d in record.lock.data if d.status != "pending"]
    if not done:
        return
    lock = dataclasses.replace(record.lock, data=done)
    try:
        changed = verify_data(dataclasses.replace(record, lock=lock))
    except TetherError as exc:
        result.problems.append(Problem("data", "inputs", exc.message))
        return
    for line in changed:
        path, _, detail = line.partition(": ")
        result.problems.append(Problem("data", path, detail))


def _snapshots(record: RunRecord, result: RunCheck) -> None:
    ref = git.SNAPSHOT_REF + record.id
    seen: set[str] = set()
    for src in record.lock.sources:
        if not src.commit or not src.root or src.root in seen:
            continue
        seen.add(src.root)
        if not Path(src.root).is_dir():
            result.problems.append(Problem("snapshot", src.root, "the repository is gone"))
            continue
        try:
            proc = git.run(src.root, "rev-parse", "--verify", "--quiet", ref, check=False)
            if proc.returncode != 0:
                result.problems.append(Problem("snapshot", src.root, f"{ref} is missing"))
                continue
            commit = proc.stdout.strip()
            if commit != src.commit:
                result.problems.append(
                    Problem(
                        "snapshot",
                        src.root,
                        f"{ref} points at {commit[:12]}, the run recorded {src.commit[:12]}",
                    )
                )
        except git.GitError as exc:
            result.problems.append(Problem("snapshot", src.root, f"git failed ({exc.message})"))


def _stages(store: Store, record: RunRecord, result: RunCheck) -> None:
    for stage in record.lock.stages:
        if not stage.lock_digest:
            continue
        try:
            upstream = store.load(stage.run)
        except TetherError:
            result.problems.append(
                Problem("stage", stage.name, f"upstream run {stage.run[:13]} is not found")
            )
            continue
        now = upstream.lock.digest()
        if now != stage.lock_digest:
            result.problems.append(
                Problem(
                    "stage",
                    stage.name,
                    f"upstream run {stage.run[:13]} changed since (lock digest "
                    f"{stage.lock_digest[:12]} -> {now[:12]})",
                )
            )


def report_run(result: RunCheck, as_json: bool) -> int:
    import click

    if as_json:
        import json

        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        for problem in result.problems:
            click.echo(problem.line())
        for note in result.notes:
            click.echo(f"note: {note.line()}")
        head = f"run {result.run[:13]} ({result.name})"
        n = len(result.problems)
        if n:
            click.echo(f"{head}: {n} problem{'s' if n > 1 else ''} found", err=True)
        else:
            click.echo(f"{head}: files, data, snapshot refs and lock digest match")
    return 1 if result.problems else 0
