"""run.lock: the record of what defined a run (schema version 2; version 1 is still read).

Written once at start; every later change (background data digests, an attached script's
config, data and stages) is one read-modify-write under an exclusive file lock: `update_lock`.

Schema 2 adds `flags`: an operation's flag values by flag name. `config` then holds the resolved
config of the script that attached to the run, or the flags (nested on their dots) when no
script attached. A schema 1 run.lock reads as schema 2 with no flags.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .errors import StoreError
from .fsio import atomic_write_text

SCHEMA = 2
SCHEMAS = (1, 2)  # the versions this tether reads
LOCK_FILE = "run.lock"
FLOCK_NAME = ".run.lock.flock"  # the file `update_lock` locks, beside run.lock

T = TypeVar("T")


@dataclass
class SourceRecord:
    """One source tree a run was taken from: its folder, the snapshot commit and tree, and the
    branch state at capture."""

    path: str
    root: str | None = None  # absolute folder at capture time, to map recorded paths later
    commit: str | None = None
    tree: str | None = None
    head: str | None = None
    branch: str | None = None
    dirty: bool = False
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    manifest: str | None = None
    skipped: list[str] = field(default_factory=list)  # untracked files above the size limit
    superproject: str | None = None  # a submodule: the `path` of the entry that holds it


@dataclass
class DataRecord:
    """One data input of a run: its path, the config key that named it, and its digest once
    hashed."""

    path: str
    key: str | None = None
    algo: str = "blake3"
    digest: str | None = None
    files: int = 0
    bytes: int = 0
    status: str = "done"


@dataclass
class StageRecord:
    """An upstream stage a run consumed: the stage's name, the run chosen for it and that run's
    lock digest."""

    name: str
    run: str
    lock_digest: str | None = None


@dataclass
class RunLock:
    """run.lock: what a run is (its command, config, sources, data, stages and environment),
    written once at start."""

    id: str
    name: str
    created: str
    command: list[str] = field(default_factory=list)
    flags: dict[str, Any] = field(default_factory=dict)  # an operation's flag values (schema 2)
    config: dict[str, Any] = field(default_factory=dict)
    sources: list[SourceRecord] = field(default_factory=list)
    data: list[DataRecord] = field(default_factory=list)
    stages: list[StageRecord] = field(default_factory=list)
    env: dict[str, Any] = field(default_factory=dict)
    parent: str | None = None
    project_id: str | None = None
    reproduces: str | None = None  # the run `tether reproduce` re-ran to make this one
    schema: int = SCHEMA

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        ordered: dict[str, Any] = {"schema": d.pop("schema")}
        ordered.update(d)
        return ordered

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunLock:
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in known}
        kwargs["sources"] = [_build(SourceRecord, s) for s in d.get("sources") or []]
        kwargs["data"] = [_build(DataRecord, s) for s in d.get("data") or []]
        kwargs["stages"] = [_build(StageRecord, s) for s in d.get("stages") or []]
        kwargs["config"] = d.get("config") or {}
        kwargs["flags"] = d.get("flags") or {}
        kwargs["env"] = d.get("env") or {}
        kwargs["command"] = [str(c) for c in d.get("command") or []]
        return cls(**kwargs)

    def to_yaml(self) -> str:
        return dump_yaml(self.to_dict())

    def identity(self) -> dict[str, Any]:
        """What makes two runs "the same": the inputs, not where or when they ran.

        Snapshot commits differ per run (their message names the run), so sources count by
        tree; `save_dir` is where outputs go, not an input; the command line is left out because
        the resolved config already says what its overrides did.

        A run with `flags` (an operation) counts by its flags instead of its config: the config
        is what the flags made of it, and a script that attaches to the run replaces it after
        `--needed` has compared digests. Without flags the identity is schema 1's, so runs
        recorded before schema 2 keep their digests.
        """
        out: dict[str, Any] = {"name": self.name}
        if self.flags:
            out["flags"] = dict(self.flags)
        else:
            config = dict(self.config)
            config.pop("save_dir", None)
            out["config"] = config
        return {
            **out,
            # By content alone: the same tree checked out elsewhere is the same code.
            "sources": [s.tree or s.manifest for s in self.sources],
            "data": [{"path": d.path, "digest": d.digest} for d in self.data],
            "stages": [{"name": s.name, "lock_digest": s.lock_digest} for s in self.stages],
            "env": {k: self.env.get(k) for k in ("python", "platform", "packages_digest")},
        }

    def digest(self) -> str:
        """blake3 of the canonical JSON of `identity()`: equal digests mean the same run."""

        import blake3

        canonical = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"), default=str)
        return blake3.blake3(canonical.encode("utf-8")).hexdigest()


def _build(cls: Any, raw: Any) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in dict(raw).items() if k in known})


def dump_yaml(obj: Any, *, sort_keys: bool = False) -> str:
    import yaml

    # libyaml's dumper when PyYAML has it: same output, several times faster.
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(
        obj, Dumper=dumper, sort_keys=sort_keys, default_flow_style=False, allow_unicode=True
    )


def load_yaml(text: str) -> Any:
    import yaml

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


# The run.lock files this process wrote last, by path: the bytes written and the data they
# hold. A run reads its run.lock again as it ends (another process may have changed it); when
# the bytes are still those it wrote, their data is reused instead of parsing YAML again
# (~1 ms a read, twice a run). Bounded: a batch driver writes thousands.
_WRITTEN_MAX = 64
_written: dict[str, tuple[bytes, dict[str, Any]]] = {}


def write_lock(run_dir: Path, lock: RunLock) -> Path:
    path = run_dir / LOCK_FILE
    data = lock.to_dict()
    text = dump_yaml(data)
    atomic_write_text(path, text)
    key = str(path)
    _written.pop(key, None)
    if len(_written) >= _WRITTEN_MAX:
        del _written[next(iter(_written))]
    _written[key] = (text.encode("utf-8"), data)
    return path


def read_lock(run_dir: Path) -> RunLock:
    path = run_dir / LOCK_FILE
    try:
        raw_bytes = path.read_bytes()
    except FileNotFoundError:
        raise StoreError(f"{path}: no run.lock here", "is this a run folder?")
    known = _written.get(str(path))
    if known is not None and known[0] == raw_bytes:
        return RunLock.from_dict(copy.deepcopy(known[1]))
    import yaml  # for its error type: load_yaml imported it already

    try:
        raw = load_yaml(raw_bytes.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise StoreError(f"{path}: not valid YAML ({exc.__class__.__name__})")
    if not isinstance(raw, dict) or "id" not in raw:
        raise StoreError(f"{path}: not a run.lock (expected a mapping with an 'id')")
    if int(raw.get("schema", SCHEMA)) > max(SCHEMAS):
        raise StoreError(
            f"{path}: schema {raw.get('schema')} is newer than this tether knows ({SCHEMA})",
            "upgrade tether",
        )
    return RunLock.from_dict(raw)


@contextlib.contextmanager
def locked_run_lock(run_dir: str | os.PathLike[str]) -> Iterator[RunLock]:
    """Read run.lock under an exclusive fcntl lock, yield it, write it back atomically.

    Every read-modify-write of a run.lock after its creation goes through here, so two
    processes updating different entries never lose each other's change.
    """
    import fcntl  # noqa: PLC0415 (POSIX only: where the lock is taken)

    folder = Path(run_dir)
    fd = os.open(folder / FLOCK_NAME, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        lock = read_lock(folder)
        yield lock
        write_lock(folder, lock)
    finally:
        os.close(fd)  # closing releases the lock


def update_lock(run_dir: str | os.PathLike[str], mutate: Callable[[RunLock], T]) -> T:
    """Change a run's run.lock in place: `mutate` gets the current record under the lock and
    changes it; it is written back atomically. Returns what `mutate` returned. An exception
    from `mutate` leaves run.lock as it was."""
    with locked_run_lock(run_dir) as lock:
        return mutate(lock)
