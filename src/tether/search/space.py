"""The search space of a search and its options, from the command line.

An op's flags say the space: `uniform(a,b)` and `loguniform(a,b)` are float (or, both bounds
whole numbers on a flag whose default is one, integer) ranges; `choice(...)`, a list or a grid
function (`range`, `linspace`, `logspace`) a categorical one; a single value stays fixed. This
module imports no Optuna: the distributions are plain records, turned into Optuna's in study.py.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import TetherError

ALGORITHMS = ("tpe", "random", "cmaes", "grid")
PRUNERS = ("median", "hyperband")


@dataclass
class Dimension:
    """One searched flag: `kind` float, int or categorical; `low`/`high`/`log` for ranges."""

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[Any] = field(default_factory=list)


@dataclass
class SearchSpec:
    """What a search is asked to do (recorded in the task pool's meta, read back to resume)."""

    algorithm: str
    trials: int
    key: str
    direction: str  # minimize or maximize
    dimensions: list[Dimension]
    fixed: dict[str, Any] = field(default_factory=dict)
    prune: str | None = None
    warm_start: bool = False
    seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchSpec:
        dims = [Dimension(**d) for d in data.get("dimensions", [])]
        return cls(**{**data, "dimensions": dims})


def check_options(
    algorithm: str,
    trials: int | None,
    minimize: str | None,
    maximize: str | None,
    prune: str | None,
) -> tuple[str, str]:
    """The objective key and direction; TetherError naming the bad option otherwise."""
    if algorithm not in ALGORITHMS:
        raise TetherError(
            f"--optimize {algorithm!r}: expected one of {', '.join(ALGORITHMS)}",
            "e.g. --optimize tpe",
        )
    if trials is not None and trials < 1:
        raise TetherError(f"--trials must be at least 1, got {trials}", "e.g. --trials 20")
    if trials is None and algorithm != "grid":
        raise TetherError(f"--optimize {algorithm} needs --trials N", "e.g. --trials 20")
    if bool(minimize) == bool(maximize):
        raise TetherError(
            "--optimize needs one objective: --minimize KEY or --maximize KEY",
            "KEY is a metric the op logs (History.update or a printed `key: value`)",
        )
    if prune is not None and prune not in PRUNERS:
        raise TetherError(
            f"--prune {prune!r}: expected one of {', '.join(PRUNERS)}", "e.g. --prune median"
        )
    return (minimize, "minimize") if minimize else (str(maximize), "maximize")


def dimensions(op: Any, spec: Any) -> list[Dimension]:
    """The searched flags of a FlagSpec (tether.ops.flags): its grid lists and samplers."""
    dims: list[Dimension] = []
    for name in spec.words:
        if name in spec.sampled:
            dims.append(_sampled(op, name, spec.sampled[name]))
        elif name in spec.grid:
            dims.append(Dimension(name, "categorical", choices=list(spec.grid[name])))
    if not dims:
        raise TetherError(
            "--optimize needs a flag to search",
            "give one a range: lr=loguniform(1e-4,1e-1), depth=uniform(2,8), "
            "opt=choice(sgd,adam) or a list [1,2,3]",
        )
    return dims


def _sampled(op: Any, name: str, sampler: Any) -> Dimension:
    if sampler.kind == "choice":
        return Dimension(name, "categorical", choices=list(sampler.args))
    lo, hi = sampler.args
    default = getattr(op.flags.get(name), "default", None)
    whole = all(isinstance(v, int) and not isinstance(v, bool) for v in (lo, hi, default))
    return Dimension(
        name,
        "int" if whole else "float",
        low=lo if whole else float(lo),
        high=hi if whole else float(hi),
        log=sampler.kind == "loguniform",
    )


def grid_size(dims: list[Dimension]) -> int:
    """The trials of a grid search: every combination of categorical dimensions."""
    n = 1
    for dim in dims:
        if dim.kind != "categorical":
            raise TetherError(
                f"--optimize grid searches lists and choice(...), not {dim.name}'s range",
                f"give {dim.name} a list or linspace(a,b,n), or use --optimize tpe",
            )
        n *= len(dim.choices)
    return n


def from_sweeps(sweeps: list[Any]) -> list[Dimension]:
    """The dimensions of a multirun's sweeps (tether.config.sweeps.Sweep: `values` or a
    `distribution`), for a search over a decorated main's `-m` overrides. A `glob` sweep is
    resolved to its group's options (values) before it gets here."""
    dims: list[Dimension] = []
    for sweep in sweeps:
        dist = getattr(sweep, "distribution", None)
        if dist is not None:
            dims.append(Dimension(sweep.key, "float", dist.low, dist.high, log=dist.log))
        elif getattr(sweep, "values", None) is not None:
            dims.append(Dimension(sweep.key, "categorical", choices=list(sweep.values)))
        else:
            raise TetherError(
                f"{sweep.key}={sweep.text}: a search takes lists and ranges, not this sweep",
                "give the key a comma list, range(...), choice(...) or interval(a,b)",
            )
    return dims
