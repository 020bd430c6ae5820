"""`tether reproduce`: re-run a recorded run from its run.lock alone and compare the results.

The snapshot commit is checked out into a temporary git worktree (the user's checkout is left
alone) and the recorded command runs there, in the worktree's copy of the recorded working
folder: the project's layout as it was (an operation finds its project file there, and its
`sourcecode` files where they were). The recorded config goes through TETHER_REPRODUCE_CONFIG
(so argv overrides cannot drift from it) and the recorded run through TETHER_REPRODUCE
(tether.session.replay): the new run takes the same upstream runs and data, records its paths as
the project's rather than the temporary worktree's, and names the run it reproduces
(`reproduces` in run.lock), so it can be compared and reproduced in turn. Data digests are
verified before the run; after it, the metrics, the lock digests and the environments
(packages, Python, GPU stack, container) are compared.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from . import git
from .capture.datahash.hashing import hash_data
from .capture.environment import EnvChange, PackageChange, diff_environment
from .capture.secrets import policy
from .capture.unredact import declared_for, recover, terminal_prompt
from .context import RUN_DIR_ENV, RUN_ID_ENV, RUNS_ENV
from .errors import TetherError
from .lock import RunLock, SourceRecord, dump_yaml
from .session.replay import REPRODUCE_ENV, Replay, write_replay
from .store import RunRecord, Store
from .workspace import find_project_file

CONFIG_ENV = "TETHER_REPRODUCE_CONFIG"  # read by tether.config.cli: the recorded config
RUN_ID_FILE_ENV = "TETHER_RUN_ID_FILE"  # written by tether.session.lifecycle: the new run's id


@dataclass
class MetricComparison:
    key: str
    old: float | None
    new: float | None

    def same(self, rel_tol: float) -> bool:
        if self.old is None or self.new is None:
            return self.old is self.new
        return (
            math.isclose(self.old, self.new, rel_tol=rel_tol, abs_tol=0.0) or self.old == self.new
        )


@dataclass
class Reproduction:
    original: str
    new: str | None
    exit_code: int
    metrics: list[MetricComparison] = field(default_factory=list)
    same_inputs: bool = False
    environment: list[EnvChange] = field(default_factory=list)  # facts that differ
    packages: list[PackageChange] = field(default_factory=list)  # distributions that differ
    warnings: list[str] = field(default_factory=list)

    def identical(self, rel_tol: float = 0.0) -> bool:
        return self.exit_code == 0 and all(m.same(rel_tol) for m in self.metrics)


def _git(repo: Path, *args: str) -> str:
    return git.output(repo, *args).strip()


def _repo_of(source: SourceRecord, record: RunRecord) -> Path:
    """Where the snapshot commit lives: try the recorded path from here, the project root and the
    run's working folder, and take the first that has the commit."""
    candidates = []
    path = Path(source.path)
    project = find_project_file()
    if path.is_absolute():
        candidates.append(path)
    else:
        for base in (
            project.parent if project else None,
            Path(record.lock.env.get("cwd", ".")),
            Path.cwd(),
        ):
            if base is not None:
                candidates.append(base / path)
    if source.root:
        candidates.append(Path(source.root))
    cwd = record.lock.env.get("cwd")
    if cwd:
        candidates.append(Path(cwd))
    candidates += [project.parent] if project else []
    candidates.append(Path.cwd())
    for candidate in candidates:
        if not candidate.exists():
            continue
        try:
            top = Path(_git(candidate, "rev-parse", "--show-toplevel"))
            _git(top, "cat-file", "-e", f"{source.commit}^{{commit}}")
            return top
        except TetherError:
            continue
    raise TetherError(
        f"snapshot commit {str(source.commit)[:12]} of run {record.id[:13]} is not in any "
        "repository found from here",
        "run from the project, or fetch refs/tether/snapshots/* (tether pull)",
    )


def verify_data(record: RunRecord) -> list[str]:
    """Data inputs whose digest differs from the record (empty when all match)."""

    base = Path(record.lock.env.get("cwd") or ".")
    changed = []
    for entry in record.lock.data:
        path = Path(entry.path)
        full = path if path.is_absolute() else base / path
        if entry.status != "done" or entry.digest is None:
            changed.append(f"{entry.path}: digest was never recorded (status {entry.status})")
            continue
        if not full.exists():
            changed.append(f"{entry.path}: missing")
            continue
        if entry.algo == "dvc-md5":  # a .dvc file's md5 (ops/staging.py: dvcfile inputs)
            if entry.digest.endswith(".dir") or not full.is_file():
                continue  # DVC's digest of a folder is of its own listing: `dvc status` checks it
            with open(full, "rb") as fh:
                now = hashlib.file_digest(fh, "md5").hexdigest()
        else:
            now = hash_data([str(full)])[0].digest
        if now != entry.digest:
            changed.append(f"{entry.path}: digest {entry.digest[:12]} -> {now[:12]}")
    return changed


@contextlib.contextmanager
def worktree(repo: Path, commit: str, at: Path | None = None) -> Iterator[Path]:
    """`commit` checked out in a temporary worktree of `repo` (or at `at`, an empty folder:
    a submodule's place in its superproject's worktree)."""
    with tempfile.TemporaryDirectory(prefix="tether-reproduce-") as tmp:
        tree = at or Path(tmp) / "src"
        _git(repo, "worktree", "add", "--detach", "-q", str(tree), commit)
        try:
            yield tree
        finally:
            with contextlib.suppress(git.GitError):
                git.run(repo, "worktree", "remove", "--force", str(tree), check=False)
                git.run(repo, "worktree", "prune", check=False)


def _submodules(
    stack: contextlib.ExitStack, record: RunRecord, top: SourceRecord, tree: Path
) -> list[str]:
    """Check each submodule snapshot of `top` out at its place in `tree` (a worktree of the
    submodule's own repository, parents before children); a warning for each that cannot be."""
    warnings: list[str] = []
    base = Path(top.root or top.path)
    subs = [s for s in record.lock.sources if s.superproject is not None and s.commit and s.root]
    for sub in sorted(subs, key=lambda s: len(Path(str(s.root)).parts)):
        try:
            rel = Path(str(sub.root)).relative_to(base)
        except ValueError:
            continue  # a submodule of another repository of the run: not checked out
        try:
            stack.enter_context(worktree(_repo_of(sub, record), str(sub.commit), at=tree / rel))
        except TetherError as exc:
            warnings.append(f"submodule {rel.as_posix()} is not in the re-run: {exc}")
    return warnings


def _skipped(lock: RunLock) -> list[str]:
    """What the snapshots left out (untracked files above the size limit), one line a source."""
    return [
        f"the snapshot of {s.path} left out {', '.join(s.skipped)} (untracked, above the size "
        "limit): the re-run does not have them"
        for s in lock.sources
        if s.skipped
    ]


def _map(path_text: str, top: Path, tree: Path) -> str:
    """A recorded absolute path inside the recorded repo, moved into the worktree."""
    path = Path(os.path.normpath(path_text))
    if not path.is_absolute():
        return path_text
    try:
        rel = path.relative_to(os.path.normpath(top))
    except ValueError:
        return path_text
    return str(tree / rel)


def _link_data(record: RunRecord, cwd: Path) -> None:
    """Relative data paths outside the snapshot (ignored or excluded) are linked into the
    worktree so the code finds them where it did."""
    base = Path(record.lock.env.get("cwd") or ".")
    for entry in record.lock.data:
        if Path(entry.path).is_absolute():
            continue
        target = cwd / entry.path
        if target.exists() or target.is_symlink():
            continue
        original = (base / entry.path).resolve()
        if original.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(original, target_is_directory=original.is_dir())


def _is_op_run(lock: RunLock) -> bool:
    return lock.command[:2] == ["tether", "run"]


def _project_file(lock: RunLock, recorded_top: Path, tree: Path, cwd: Path) -> str | None:
    """An operation run recorded before its snapshot kept the project file: put the project's
    file as it is now where it was, and say so (None when the snapshot has it)."""
    found = find_project_file(cwd)
    if found is not None and found.is_relative_to(tree):
        return None
    current = find_project_file(Path(lock.env.get("cwd") or "."))
    if current is None:
        raise TetherError(
            f"run {lock.id[:13]} is an operation, and neither its snapshot nor "
            f"{lock.env.get('cwd')} has a project file",
            "reproduce it from the project it was run in",
        )
    target = Path(_map(str(current), recorded_top, tree))
    if not target.is_relative_to(tree):
        target = cwd / current.name
    shutil.copy2(current, target)
    return (
        f"the snapshot of run {lock.id[:13]} has no {current.name} (recorded before snapshots "
        f"kept it): using {current} as it is now"
    )


def _child_env(store: Store, config_file: Path, id_file: Path, replay_file: Path) -> dict[str, str]:
    env = dict(os.environ)
    # The re-run is a run of its own: it attaches to nothing and skips nothing.
    for key in (RUN_DIR_ENV, RUN_ID_ENV, "TETHER_NEEDED"):
        env.pop(key, None)
    env.update(
        {
            CONFIG_ENV: str(config_file),
            RUN_ID_FILE_ENV: str(id_file),
            RUNS_ENV: str(store.root),
            REPRODUCE_ENV: str(replay_file),
        }
    )
    return env


def reproduce(
    store: Store, record: RunRecord, *, force: bool = False, stream: bool = True
) -> Reproduction:
    lock = record.lock
    if not lock.command:
        raise TetherError(f"run {record.id[:13]} recorded no command to re-run")
    problems = verify_data(record)
    if problems and not force:
        raise TetherError(
            f"data of run {record.id[:13]} changed: " + "; ".join(problems),
            "restore the data, or pass --force to reproduce anyway",
        )
    warnings: list[str] = []
    # Secrets were recorded redacted: their values come from TETHER_SECRET_<KEY> or a prompt
    # (before anything is checked out), and the re-run redacts the same keys again.
    recovered = recover([lock.config, lock.flags], record.id[:13], terminal_prompt())
    warnings += recovered.warnings
    git_sources = [s for s in lock.sources if s.commit]
    replay = Replay(run=record.id, name=lock.name, dir=str(record.dir))
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tether-repro-")))
        recorded_cwd = Path(lock.env.get("cwd") or os.getcwd())
        command = list(lock.command)
        cwd = recorded_cwd
        if git_sources:
            src = git_sources[0]
            top = _repo_of(src, record)
            tree = stack.enter_context(worktree(top, str(src.commit)))
            warnings += _submodules(stack, record, src, tree) + _skipped(lock)
            recorded_top = Path(src.root or (src.path if Path(src.path).is_absolute() else top))
            command = [command[0], *(_map(a, recorded_top, tree) for a in command[1:])]
            cwd = Path(_map(str(recorded_cwd), recorded_top, tree))
            if cwd.is_relative_to(tree):
                cwd.mkdir(parents=True, exist_ok=True)
                _link_data(record, cwd)
                if _is_op_run(lock):
                    note = _project_file(lock, recorded_top, tree, cwd)
                    warnings += [note] if note else []
            replay.worktree, replay.root = str(tree), str(recorded_top)
        command = [str(recovered.reveal(word)) for word in command]
        config = recovered.reveal(dict(lock.config))
        config["save_dir"] = "???"
        secret_env = policy(declared_for([lock.config, lock.flags])).env()
        config_file = tmp / "config.yaml"
        config_file.write_text(dump_yaml(config))
        replay_file = tmp / "reproduce.json"
        write_replay(replay_file, replay)
        id_file = tmp / "run-id"
        executable = lock.env.get("executable")
        python = executable if executable and Path(executable).exists() else sys.executable
        if command[0].startswith("python"):
            command[0] = python
        elif command[0] == "tether":
            # An operation run (`tether run OP ...`): the tether beside the recorded Python.
            beside = Path(python).parent / "tether"
            command[0] = str(beside if beside.exists() else Path(sys.executable).parent / "tether")
        try:
            proc = subprocess.run(
                command,
                cwd=cwd,
                env={**_child_env(store, config_file, id_file, replay_file), **secret_env},
                stdout=None if stream else subprocess.DEVNULL,
                stderr=None if stream else subprocess.DEVNULL,
            )
        except OSError as exc:
            raise TetherError(f"cannot re-run {command[0]}: {exc.strerror}")
        new_ids = id_file.read_text().split() if id_file.exists() else []
    result = Reproduction(
        original=record.id, new=None, exit_code=proc.returncode, warnings=warnings
    )
    new = _the_reproduction(store, record, new_ids)
    if new is None:
        return result
    result.new = new.id
    store.add_attr(new, "note", f"reproduction of run {record.id}")
    old_m, new_m = record.metrics(), new.metrics()
    for key in sorted(set(old_m) | set(new_m)):
        result.metrics.append(
            MetricComparison(
                key, (old_m.get(key) or {}).get("last"), (new_m.get(key) or {}).get("last")
            )
        )
    result.same_inputs = new.lock.digest() == lock.digest()
    result.environment, result.packages = diff_environment(lock.env, new.lock.env)
    return result


def _the_reproduction(store: Store, record: RunRecord, new_ids: list[str]) -> RunRecord | None:
    """Of the runs the re-run announced, the one that reproduces `record` (a batch announces
    its children too); the first when none says so (a run made by an older tether)."""
    records = []
    for run_id in new_ids:
        with contextlib.suppress(TetherError):
            records.append(store.load(run_id))
    return next((r for r in records if r.lock.reproduces == record.id), None) or (
        records[0] if records else None
    )
