"""Executors: where the workers of a batch run (this process, joblib workers, Slurm, PBS, ...).

Every executor implements `tether.executors.base.Executor` and is found through the entry-point
group `tether.executors`; the built-ins are registered in tether's own pyproject.toml exactly as
a third-party package registers its own:

    [project.entry-points."tether.executors"]
    mycluster = "mypkg.executor:MyClusterExecutor"

An executor starts workers that pull tasks from a task pool (taskpool.py); it knows nothing about
runs (the runs of a batch are `tether.batches`' business). This module stays cheap to import; the
executors themselves load when a batch runs.
"""

from __future__ import annotations

from typing import Any

from .. import plugins
from ..errors import TetherError, did_you_mean

GROUP = "tether.executors"

__all__ = ["GROUP", "available", "get_executor"]


def available() -> list[str]:
    """Names of the executors installed (built-in and plug-ins)."""
    return plugins.names(GROUP)


def get_executor(name: str) -> type[Any]:
    """The executor class registered under `name`."""
    found = plugins.by_name(GROUP)
    ep = found.get(name)
    if ep is None:
        hint = did_you_mean(name, list(found))
        names = ", ".join(sorted(found)) or "none (is tether installed? pip install -e .)"
        raise TetherError(
            f"no executor {name!r}" + (f" (did you mean {hint!r}?)" if hint else ""),
            f"executors: {names}",
        )
    try:
        cls = ep.load()
    except ImportError as exc:
        raise TetherError(
            f"executor {name!r} cannot be loaded ({exc})",
            "install what it needs (pip install 'tether[cluster]')",
        )
    return cls
