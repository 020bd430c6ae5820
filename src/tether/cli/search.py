"""The search options of `tether run` (`--optimize`, `--trials`, `--minimize`, `--maximize`,
`--prune`, `--warm-start`, `--resume`), added by one decorator and read back with
`requested_search(ctx)`, and the command's search branch (tether.search does the work)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

KEY = "tether.search"


@dataclass
class SearchRequest:
    optimize: str | None = None
    trials: int | None = None
    minimize: str | None = None
    maximize: str | None = None
    prune: str | None = None
    warm_start: bool = False
    resume: bool = False
    seed: int | None = None

    @property
    def any(self) -> bool:
        return self.optimize is not None


def _store(name: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is not None:
            setattr(ctx.meta.setdefault(KEY, SearchRequest()), name, value)
        return value

    return callback


def search_options(command: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--optimize",
            metavar="ALGO",
            expose_value=False,
            callback=_store("optimize"),
            help="Search the flags' ranges with Optuna: tpe, random, cmaes or grid.",
        ),
        click.option(
            "--trials",
            type=int,
            metavar="N",
            expose_value=False,
            callback=_store("trials"),
            help="Trials of an --optimize search.",
        ),
        click.option(
            "--minimize",
            metavar="KEY",
            expose_value=False,
            callback=_store("minimize"),
            help="The metric a search minimizes.",
        ),
        click.option(
            "--maximize",
            metavar="KEY",
            expose_value=False,
            callback=_store("maximize"),
            help="The metric a search maximizes.",
        ),
        click.option(
            "--prune",
            metavar="PRUNER",
            expose_value=False,
            callback=_store("prune"),
            help="Stop unpromising trials early: median or hyperband.",
        ),
        click.option(
            "--warm-start",
            is_flag=True,
            default=None,
            expose_value=False,
            callback=_store("warm_start"),
            help="Seed the search with earlier completed runs of the op (same code and data).",
        ),
        click.option(
            "--resume",
            is_flag=True,
            default=None,
            expose_value=False,
            callback=_store("resume"),
            help="Continue the newest search asked with the same flags and options.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def requested_search(ctx: click.Context | None = None) -> SearchRequest:
    ctx = ctx or click.get_current_context()
    return ctx.meta.get(KEY) or SearchRequest()


def retried_search(store: Any, parent: str | None) -> bool:
    """Whether `--retry-failed PARENT` names a search batch."""
    if not parent:
        return False
    from ..search.runner import search_batch

    return search_batch(store, parent) is not None


def run_search_command(
    project: Any,
    op: Any,
    store: Any,
    flags: tuple[str, ...],
    *,
    seed: int | None,
    label: str | None,
    tags: tuple[str, ...],
    executors: Any,
    request: SearchRequest,
) -> int:
    """`tether run OP ... --optimize ALGO ...` (a new search, or `--resume` of the newest
    like it) and `--retry-failed BATCH` of a search."""
    from ..errors import TetherError
    from ..ops.flags import parse_flags
    from ..search.runner import latest_search, resume_search, run_search
    from ..search.space import SearchSpec, check_options, dimensions, grid_size

    common = {
        "executor": executors.executor,
        "n_jobs": executors.n_jobs,
        "slurm_config": executors.slurm_config,
        "label": label,
        "tags": tags,
    }
    if executors.retry_failed:
        return resume_search(project, op, store, executors.retry_failed, **common)
    algorithm = request.optimize or "tpe"
    key, direction = check_options(
        algorithm, request.trials, request.minimize, request.maximize, request.prune
    )
    parsed = parse_flags(op, flags)
    dims = dimensions(op, parsed)
    trials = request.trials
    if algorithm == "grid":
        size = grid_size(dims)
        trials = min(trials or size, size)
    spec = SearchSpec(
        algorithm=algorithm,
        trials=int(trials or 0),
        key=key,
        direction=direction,
        dimensions=dims,
        fixed=dict(parsed.fixed),
        prune=request.prune,
        warm_start=bool(request.warm_start),
        seed=seed,
    )
    if request.resume:
        found = latest_search(store, op.name, spec)
        if found is None:
            raise TetherError(
                f"--resume: no search of {op.name!r} with these flags and options",
                "run the same command without --resume to start one",
            )
        click.echo(f"tether: resuming search {found.id[:13]}", err=True)
        return resume_search(project, op, store, found.id, **common)
    command = ["tether", "run", op.name, *flags, "--optimize", algorithm]
    command += ["--trials", str(spec.trials), f"--{direction}", key]
    if request.prune:
        command += ["--prune", request.prune]
    if request.warm_start:
        command.append("--warm-start")
    if seed is not None:
        command += ["--seed", str(seed)]
    return run_search(
        project,
        op,
        spec,
        store,
        label=label,
        tags=tags,
        command=command,
        executor=executors.executor,
        n_jobs=executors.n_jobs,
        slurm_config=executors.slurm_config,
    )
