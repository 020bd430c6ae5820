"""The executor flags of a decorated main, and the defaults `@tether.parallel` gives them.

The decorators read these when a main is decorated: this module imports nothing but the
standard library.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

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

# The attribute of a decorated main that holds its `ParallelOptions`.
PARALLEL_ATTR = "__tether_parallel__"


@dataclass
class ParallelOptions:
    """Defaults for the executor flags (the command line wins)."""

    task_to: str | None = None
    tasks: str | None = None  # a file
    tasks_key: str | None = None
    executor: str | None = None
    n_jobs: int | None = None
    slurm_config: str | None = None
    retry_failed: str | None = None

    def merged(self, extra: dict[str, Any]) -> ParallelOptions:
        out = dataclasses.replace(self)
        for name in EXECUTOR_FLAGS:
            if extra.get(name) is not None:
                setattr(out, name, extra[name])
        return out


def parallel_options(wrapper: Any) -> ParallelOptions | None:
    """The `@tether.parallel` defaults of a decorated main, None without that decorator."""
    return getattr(wrapper, PARALLEL_ATTR, None)


def batch_requested(wrapper: Any, cli_args: Any) -> bool:
    """Whether a call of a decorated main is a batch: `@tether.parallel` is on it, or its command
    line has one of the executor flags."""
    if parallel_options(wrapper) is not None:
        return True
    if getattr(cli_args, "plan", None) is not None:
        return True  # -m: a multirun's sweeps (tether.config.multirun)
    extra = getattr(cli_args, "extra", None) or {}
    return any(name in extra for name in EXECUTOR_FLAGS)
