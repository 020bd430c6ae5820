"""Data inputs of a run: paths from config keys, explicit paths and `${track:...}`, hashed into
run.lock's `data` (at once, or by a background process that fills them in later)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError, TetherError, did_you_mean
from ..lock import DataRecord
from ..store.values import flatten


def data_entries(
    container: dict[str, Any], keys: Sequence[str], paths: Sequence[str]
) -> list[DataRecord]:
    """The data to track, each checked to exist (a missing one names its config key)."""
    flat = flatten(container)
    entries: list[DataRecord] = []
    seen: set[str] = set()
    for key in keys:
        if key not in flat:
            hint = did_you_mean(key, list(flat))
            raise ConfigError(
                f"data key {key!r} is not in the config",
                f"did you mean {hint!r}?" if hint else "give the dotted key of a path",
            )
        value = flat[key]
        values = value if isinstance(value, list) else [value]
        for v in values:
            if v in (None, "", "???"):
                raise ConfigError(f"config key {key!r} should hold a data path, got {v!r}")
            entries.append(DataRecord(path=str(v), key=key))
    for p in paths:
        entries.append(DataRecord(path=str(p)))
    out = []
    for entry in entries:
        if entry.path in seen:
            continue
        seen.add(entry.path)
        if not os.path.exists(entry.path):
            where = f"config key {entry.key!r}" if entry.key else "tracked path"
            raise ConfigError(
                f"{where}: data path {entry.path} does not exist",
                f"looked in {Path(entry.path).absolute().parent}",
            )
        out.append(entry)
    return out


def hash_entries(entries: list[DataRecord]) -> None:
    """Fill digests in place, now."""
    if not entries:
        return
    # heavy (blake3, the SQLite stat cache, worker threads): a run without data never loads it
    from .datahash.hashing import hash_data  # noqa: PLC0415

    try:
        digests = hash_data([e.path for e in entries])
    except OSError as exc:
        raise TetherError(f"cannot hash {exc.filename}: {exc.strerror}")
    for entry, digest in zip(entries, digests, strict=True):
        entry.algo = digest.algo
        entry.digest = digest.digest
        entry.files = digest.files
        entry.bytes = digest.bytes
        entry.status = "done"


def mark_pending(entries: list[DataRecord]) -> None:
    for entry in entries:
        entry.status = "pending"
        entry.digest = None
