"""What a run captures: RunOptions, collected from `experiment(...)` and the stackable
decorators of tether.api (`@tether.snapshot`, `@tether.track_data`, `@tether.previous_stage`),
each of which adds its part to the function's options under `ATTR`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..capture.snapshot import SnapshotOptions
from ..lock import DataRecord

__all__ = ["ATTR", "RunOptions", "SnapshotOptions", "options_of"]

ATTR = "__tether_options__"


@dataclass
class RunOptions:
    """How a run is recorded: its name, snapshot, data, stages, tracking and batch settings."""

    name: str | None = None
    snapshot: SnapshotOptions = field(default_factory=SnapshotOptions)
    data_keys: list[str] = field(default_factory=list)  # config keys holding data paths
    data_paths: list[str] = field(default_factory=list)  # explicit paths
    background_hash: bool = False
    stages: dict[str, str | None] = field(default_factory=dict)  # stage name -> config key
    stage_runs: dict[str, str] = field(default_factory=dict)  # stage name -> run id, chosen
    needed: bool = False
    label: str | None = None
    tags: list[str] = field(default_factory=list)
    flags: dict[str, Any] = field(default_factory=dict)  # an operation's flag values
    secrets: list[str] = field(default_factory=list)  # keys recorded redacted (capture.secrets)
    data_records: list[DataRecord] = field(default_factory=list)  # digests known (a .dvc file's)

    def merged(self, other: RunOptions) -> RunOptions:
        """`other` (an inner decorator) adds to self; explicit settings of self win."""
        out = dataclasses.replace(self)
        out.data_keys = [*self.data_keys, *(k for k in other.data_keys if k not in self.data_keys)]
        out.data_paths = [
            *self.data_paths,
            *(p for p in other.data_paths if p not in self.data_paths),
        ]
        out.stages = {**other.stages, **self.stages}
        out.stage_runs = {**other.stage_runs, **self.stage_runs}
        out.background_hash = self.background_hash or other.background_hash
        out.needed = self.needed or other.needed
        if other.snapshot != SnapshotOptions():
            out.snapshot = other.snapshot
        out.tags = [*self.tags, *(t for t in other.tags if t not in self.tags)]
        out.label = self.label or other.label
        out.name = self.name or other.name
        out.flags = {**other.flags, **self.flags}
        out.secrets = [*self.secrets, *(k for k in other.secrets if k not in self.secrets)]
        return out


def options_of(fn: Callable[..., Any]) -> RunOptions:
    return getattr(fn, ATTR, None) or RunOptions()
