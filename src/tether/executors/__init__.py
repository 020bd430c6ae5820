"""Executors: where the tasks of a batch run (this process, joblib workers, Slurm, PBS, ...).

Every executor implements `tether.executors.base.Executor` and is found through the entry-point
group `tether.executors`; the built-ins are registered in tether's own pyproject.toml exactly as
a third-party package registers its own:

    [project.entry-points."tether.executors"]
    mycluster = "mypkg.executor:MyClusterExecutor"

This module stays cheap to import (the decorators read `EXECUTOR_FLAGS` when a main is
decorated); the executors themselves load when a batch runs.
"""

from __future__ import annotations

from typing import Any

from ..errors import TetherError

GROUP = "tether.executors"

# The flags of a decorated main that ask for a batch, each with its aliases (naga's spellings).
EXECUTOR_FLAGS: dict[str, tuple[str, ...]] = {
    "task_to": ("--task-to", "--task_to"),
    "tasks": ("--tasks",),
    "tasks_key": ("--tasks-key", "--tasks_key"),
    "executor": ("--executor",),
    "n_jobs": ("--n-jobs", "--n_jobs"),
    "slurm_config": ("--slurm-config", "--slurm_config"),
    "retry_failed": ("--retry-failed", "--retry_failed"),
}

__all__ = ["EXECUTOR_FLAGS", "GROUP", "available", "batch_requested", "get_executor"]


def _entry_points() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=GROUP)}


def available() -> list[str]:
    """Names of the executors installed (built-in and plug-ins)."""
    return sorted(_entry_points())


def get_executor(name: str) -> type[Any]:
    """The executor class registered under `name`."""
    from ..errors import did_you_mean

    found = _entry_points()
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


def batch_requested(wrapper: Any, cli_args: Any) -> bool:
    """Whether a call of a decorated main is a batch: `@tether.parallel` is on it, or its command
    line has one of the executor flags."""
    if getattr(wrapper, "__tether_parallel__", None) is not None:
        return True
    extra = getattr(cli_args, "extra", None) or {}
    return any(name in extra for name in EXECUTOR_FLAGS)
