"""The executor options of `tether run` (`--executor`, `--n-jobs`, `--slurm-config`,
`--retry-failed`), added by one decorator and read back with `requested(ctx)`, so the command's
own signature does not change."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

KEY = "tether.executors"


@dataclass
class Requested:
    executor: str | None = None
    n_jobs: int | None = None
    slurm_config: str | None = None
    retry_failed: str | None = None

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.executor, self.n_jobs, self.slurm_config))


def _store(name: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        setattr(ctx.meta.setdefault(KEY, Requested()), name, value)
        return value

    return callback


def executor_options(command: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--executor",
            metavar="NAME",
            expose_value=False,
            callback=_store("executor"),
            help="Run a batch's trials on this executor: serial, local, slurm, pbs, ray, dask.",
        ),
        click.option(
            "--n-jobs",
            "--n_jobs",
            "n_jobs",
            type=int,
            metavar="N",
            expose_value=False,
            callback=_store("n_jobs"),
            help="Workers to run a batch's trials at once (local executor by default).",
        ),
        click.option(
            "--slurm-config",
            "--slurm_config",
            "slurm_config",
            metavar="FILE",
            expose_value=False,
            callback=_store("slurm_config"),
            help="Submit a batch's trials to Slurm with these settings (YAML).",
        ),
        click.option(
            "--retry-failed",
            "--retry_failed",
            "retry_failed",
            metavar="PARENT",
            expose_value=False,
            callback=_store("retry_failed"),
            help="Run the failed or missing trials of batch PARENT again.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def requested(ctx: click.Context | None = None) -> Requested:
    ctx = ctx or click.get_current_context()
    return ctx.meta.get(KEY) or Requested()
