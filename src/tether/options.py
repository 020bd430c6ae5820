"""What a run captures, collected from `experiment(...)` and the stackable decorators.

`@tether.snapshot`, `@tether.track_data` and `@tether.previous_stage` each add their part to the
function's RunOptions. Under `@tether.experiment` they configure that run; used alone, the
decorated function records into the current run, or starts one for the call.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

ATTR = "__tether_options__"


@dataclass
class SnapshotOptions:
    enabled: bool = True
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    repos: list[str] = field(default_factory=list)  # empty: the repo of the working folder


@dataclass
class RunOptions:
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
        return out


def options_of(fn: Callable[..., Any]) -> RunOptions:
    return getattr(fn, ATTR, None) or RunOptions()


def _with_options(
    fn: Callable[..., Any], update: Callable[[RunOptions], None]
) -> Callable[..., Any]:
    opts = dataclasses.replace(options_of(fn))
    opts.snapshot = dataclasses.replace(opts.snapshot)
    opts.stages = dict(opts.stages)
    opts.data_keys = list(opts.data_keys)
    opts.data_paths = list(opts.data_paths)
    update(opts)
    if getattr(fn, "__tether_runner__", False):
        setattr(fn, ATTR, opts)
        return fn

    @functools.wraps(fn)
    def standalone(*args: Any, **kwargs: Any) -> Any:
        from .api import run_for_call

        return run_for_call(fn, getattr(standalone, ATTR), args, kwargs)

    setattr(standalone, ATTR, opts)
    standalone.__tether_runner__ = True  # type: ignore[attr-defined]
    return standalone


def snapshot(
    fn: Callable[..., Any] | None = None,
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    repos: Sequence[str] = (),
    enabled: bool = True,
) -> Any:
    """Snapshot the source (git working tree, or a copy outside git) into the run record."""

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        def update(o: RunOptions) -> None:
            o.snapshot = SnapshotOptions(enabled, list(include), list(exclude), list(repos))

        return _with_options(f, update)

    return decorate(fn) if fn is not None else decorate


def track_data(
    *keys: str,
    paths: Sequence[str] = (),
    background: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Hash the data at these config keys (and explicit `paths`) into run.lock."""

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        def update(o: RunOptions) -> None:
            o.data_keys += [k for k in keys if k not in o.data_keys]
            o.data_paths += [p for p in paths if p not in o.data_paths]
            o.background_hash = o.background_hash or background

        return _with_options(f, update)

    return decorate


def previous_stage(
    name: str, key: str | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Consume an upstream run: config `key` holds its id, folder or name (default: the latest
    completed run named `name`); the key then holds the upstream folder."""

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        def update(o: RunOptions) -> None:
            o.stages[name] = key

        return _with_options(f, update)

    return decorate
