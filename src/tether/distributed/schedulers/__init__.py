"""The scheduler registry: plug-ins from the `tether.schedulers` entry-point group.

The built-ins (`local`, `slurm`, `pbs`) register there exactly like a third party would (see
pyproject.toml). Which scheduler a launch uses, first that applies:

1. `--scheduler NAME` or `TETHER_SCHEDULER=NAME` (an unknown name is an error);
2. each plug-in's `detect(env)`, asked in order of `priority` (highest first), then name.

`local` (priority 0) always answers yes, so something is always found. A plug-in that fails to
import is skipped and reported by `tether doctor`; it is an error only when named.

Entry points are read by `tether.plugins` (entry_points.txt files directly, not
`importlib.metadata`, which costs more than the rest of a launch's own start-up).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ... import plugins
from ...errors import TetherError, did_you_mean
from ...plugins import EntryPoint
from .base import Scheduler

GROUP = "tether.schedulers"
ENV_VAR = "TETHER_SCHEDULER"

__all__ = [
    "ENV_VAR",
    "GROUP",
    "EntryPoint",
    "Scheduler",
    "available",
    "entry_points",
    "get",
    "load_errors",
    "select",
]


def entry_points(group: str = GROUP, path: list[str] | None = None) -> list[EntryPoint]:
    """Entry points of the scheduler group, read the fast way (see `tether.plugins`)."""
    return plugins.entry_points(group, path)


_cache: tuple[list[Scheduler], list[tuple[str, str]]] | None = None


def _load() -> tuple[list[Scheduler], list[tuple[str, str]]]:
    global _cache
    if _cache is not None:
        return _cache
    plugins: dict[str, Scheduler] = {}
    errors: list[tuple[str, str]] = []
    for ep in entry_points():
        if ep.name in plugins:
            continue  # the first distribution on the path that names it wins
        try:
            obj = ep.load()
            plugin = obj() if isinstance(obj, type) else obj
            for method in ("detect", "hosts", "job_id", "build"):
                if not callable(getattr(plugin, method, None)):
                    raise TypeError(f"it has no {method}() method")
        except Exception as exc:  # a broken plug-in must not stop the others
            errors.append((ep.name, f"{ep.value} (from {ep.dist}): {type(exc).__name__}: {exc}"))
            continue
        plugin.name = ep.name
        plugins[ep.name] = plugin
    ordered = sorted(plugins.values(), key=lambda p: (-int(getattr(p, "priority", 100)), p.name))
    _cache = (ordered, errors)
    return _cache


def clear_cache() -> None:
    global _cache
    _cache = None


def available() -> list[Scheduler]:
    """Every loaded plug-in, in the order detection asks them."""
    return list(_load()[0])


def load_errors() -> list[tuple[str, str]]:
    """(name, reason) of each plug-in that could not be loaded."""
    return list(_load()[1])


def get(name: str) -> Scheduler:
    plugins = {p.name: p for p in available()}
    if name in plugins:
        return plugins[name]
    broken = dict(load_errors())
    if name in broken:
        raise TetherError(f"scheduler plug-in {name!r} failed to load: {broken[name]}")
    hint = did_you_mean(name, list(plugins))
    raise TetherError(
        f"no scheduler plug-in {name!r} (installed: {', '.join(sorted(plugins)) or 'none'})",
        f"did you mean {hint!r}?" if hint else "see `tether doctor`",
    )


def select(env: Mapping[str, str] | None = None, name: str | None = None) -> Scheduler:
    """The scheduler for this process: `name`, else TETHER_SCHEDULER, else the first plug-in
    whose detect(env) says yes."""
    env = os.environ if env is None else env
    wanted = name or env.get(ENV_VAR)
    if wanted:
        return get(wanted)
    for plugin in available():
        try:
            if plugin.detect(env):
                return plugin
        except Exception:  # a plug-in that cannot tell is not this job's scheduler
            continue
    raise TetherError(
        "no scheduler plug-in detected this environment, and `local` is not installed",
        "reinstall tether (pip install -e .), or set TETHER_SCHEDULER",
    )
