"""Sweeps of a multirun (`python train.py -m ...`): which overrides vary, and over what.

    python train.py -m optim.lr=0.1,0.01 model=small,wide seed=range(3)

A sweep is an override whose value is a comma list (`a,b`) or a sweep function:

    Hydra's      choice(a,b,...)   range(stop) / range(start,stop[,step])   glob(*, exclude=[x])
                 sort(...)         interval(low,high) (a distribution)
    tether's     linspace(start,stop,num)   logspace(start,stop,num)
                 uniform(low,high)  loguniform(low,high) (distributions)

A grid sweep has `values`; a distribution (`interval`, `uniform`, `loguniform`) has
`distribution` and needs `--random` (or a search). `glob` selects options of a config group
and is resolved where the group is known (tether.config.multirun).

Public API (also used by the search of `--optimize`):

    parse_sweep(key, text) -> Sweep           one sweep from its key and value text
    split_multirun(words) -> (overrides, sweeps)
                                              a multirun's override words split into the fixed
                                              ones (text, as given) and the sweeps, in order
    grid_points(sweeps) -> list[dict]         the cartesian product, the first sweep slowest
    random_points(sweeps, n, seed) -> list[dict]
                                              n points drawn with a seeded generator
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from .overrides import Call, Choices, Override, OverrideError, parse_override

MAX_POINTS = 10_000  # values one sweep, or one grid, may expand to
DISTRIBUTIONS = ("interval", "uniform", "loguniform")
UNSUPPORTED = {
    "shuffle": "the order of a grid is the command line's; use --random to draw points",
    "tag": "tags are for Hydra sweeper plug-ins; write the sweep without tag(...)",
}


@dataclass(frozen=True)
class Distribution:
    """A continuous range to draw from: `kind` "uniform" (interval and uniform) or
    "loguniform", between `low` and `high`."""

    kind: str
    low: float
    high: float
    text: str

    @property
    def log(self) -> bool:
        return self.kind == "loguniform"

    def draw(self, rng: random.Random) -> float:
        if self.log:
            return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        return rng.uniform(self.low, self.high)


@dataclass(frozen=True)
class Sweep:
    """One swept key. Exactly one of `values` (a grid: the values in order), `distribution`
    or `glob` (include and exclude patterns over a group's options) is set. `op` is the
    override's: "set", "add" (`+key=...`) or "force" (`++key=...`)."""

    key: str
    text: str
    values: list[Any] | None = None
    distribution: Distribution | None = None
    glob: tuple[tuple[str, ...], tuple[str, ...]] | None = None
    op: str = "set"
    bare: tuple[bool, ...] = field(default=())  # per value: an unquoted word (group options)

    @property
    def word(self) -> str:
        return {"set": "", "add": "+", "force": "++"}[self.op] + f"{self.key}={self.text}"

    def override(self, value: Any, bare: bool = False) -> Override:
        """The override that sets this key to one of its values."""
        return Override(self.op, self.key, value, True, f"{self.key}={value}", str(value), bare)


def _error(key: str, text: str, problem: str, hint: str | None = None) -> ConfigError:
    return ConfigError(f"sweep {key}={text}: {problem}", hint)


def _number(key: str, text: str, func: str, value: Any) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _error(key, text, f"{func}(...) takes finite numbers, got {value!r}")
    return value


def _round(x: float) -> float:
    """Twelve significant digits: linspace(0,1,11) gives 0.3, not 0.30000000000000004."""
    return float(f"{x:.12g}")


def _count(key: str, text: str, n: float) -> None:
    if n > MAX_POINTS:
        raise _error(key, text, f"gives more than {MAX_POINTS} values")


def parse_sweep(key: str, text: str, op: str = "set") -> Sweep:
    """One sweep from its key and value text (`0.1,0.01`, `range(3)`, `loguniform(1e-4,1e-1)`),
    read with Hydra's grammar. A value that is not a sweep is a sweep of one value."""
    prefix = {"set": "", "add": "+", "force": "++"}[op]
    ov = parse_override(f"{prefix}{key}={text}")
    return _from_value(ov.key, text, ov.value, op, ov.bare)


def _from_value(key: str, text: str, value: Any, op: str, bare: bool) -> Sweep:
    if isinstance(value, Choices):
        items = list(value.items)
        return Sweep(key, text, values=items, op=op, bare=tuple(isinstance(v, str) for v in items))
    if isinstance(value, Call):
        return _call(key, text, value, op)
    return Sweep(key, text, values=[value], op=op, bare=(bare,))


def _call(key: str, text: str, call: Call, op: str) -> Sweep:
    name, args, kwargs = call.name, list(call.args), dict(call.kwargs)
    if name in UNSUPPORTED:
        raise _error(key, text, f"{name}(...) is not supported", UNSUPPORTED[name])
    if name == "glob":
        include = kwargs.pop("include", args.pop(0) if args else None)
        exclude = kwargs.pop("exclude", args.pop(0) if args else [])
        if include is None or args or kwargs:
            raise _error(key, text, "glob takes (include[, exclude]), each a pattern or a list")
        inc = tuple(str(p) for p in (include if isinstance(include, list) else [include]))
        exc = tuple(str(p) for p in (exclude if isinstance(exclude, list) else [exclude]))
        return Sweep(key, text, glob=(inc, exc), op=op)
    if name == "sort":
        reverse = bool(kwargs.pop("reverse", False))
        if kwargs:
            raise _error(key, text, f"sort takes no argument {next(iter(kwargs))!r}")
        items: list[Any] = []
        for arg in args:
            if isinstance(arg, (Call, Choices)):
                items.extend(_from_value(key, text, arg, op, False).values or [])
            elif isinstance(arg, list):
                items.extend(arg)
            else:
                items.append(arg)
        try:
            items = sorted(items, reverse=reverse)
        except TypeError:
            raise _error(key, text, "sort needs values of one kind (numbers, or strings)")
        return Sweep(key, text, values=items, op=op, bare=tuple(isinstance(v, str) for v in items))
    if kwargs:
        raise _error(key, text, f"{name}(...) takes no keyword argument {next(iter(kwargs))!r}")
    if name == "choice":
        if not args:
            raise _error(key, text, "choice takes at least one value")
        return Sweep(key, text, values=args, op=op, bare=tuple(isinstance(v, str) for v in args))
    if name in DISTRIBUTIONS:
        if len(args) != 2:
            raise _error(key, text, f"{name} takes (low, high), got {len(args)} values")
        lo, hi = (float(_number(key, text, name, a)) for a in args)
        if not lo < hi:
            raise _error(key, text, f"{name}(low, high) needs low < high, got {lo}, {hi}")
        if name == "loguniform" and lo <= 0:
            raise _error(key, text, f"loguniform(low, high) needs 0 < low, got {lo}")
        kind = "loguniform" if name == "loguniform" else "uniform"
        return Sweep(key, text, distribution=Distribution(kind, lo, hi, call.text), op=op)
    if name == "range":
        return Sweep(key, text, values=_range(key, text, args), op=op)
    return Sweep(key, text, values=_space(key, text, name, args), op=op)


def _range(key: str, text: str, args: list[Any]) -> list[Any]:
    if not 1 <= len(args) <= 3:
        raise _error(key, text, "range takes (stop), (start, stop) or (start, stop, step)")
    nums = [_number(key, text, "range", a) for a in args]
    start: float | int
    stop: float | int
    step: float | int
    start, stop, step = (0, nums[0], 1) if len(nums) == 1 else (nums[0], nums[1], 1)
    if len(nums) == 3:
        step = nums[2]
    if step == 0:
        raise _error(key, text, "range step must not be 0")
    span = (stop - start) / step
    _count(key, text, span)
    count = max(0, math.ceil(span - 1e-9))
    if count == 0:
        raise _error(key, text, "the range is empty")
    if all(isinstance(n, int) for n in (start, stop, step)):
        return list(range(int(start), int(stop), int(step)))
    return [_round(start + i * step) for i in range(count)]


def _space(key: str, text: str, name: str, args: list[Any]) -> list[Any]:
    if len(args) != 3:
        raise _error(key, text, f"{name} takes (start, stop, num), got {len(args)} values")
    start, stop = (_number(key, text, name, a) for a in args[:2])
    num = args[2]
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise _error(key, text, f"{name} num must be a whole number >= 1, got {num!r}")
    _count(key, text, num)
    if name == "logspace" and max(abs(start), abs(stop)) > 300:
        raise _error(key, text, "logspace exponents must lie within -300..300")
    points = [start + (stop - start) * i / (num - 1) for i in range(num)] if num > 1 else [start]
    if name == "logspace":
        return [_round(10.0**p) for p in points]
    return [_round(p) for p in points]


def split_multirun(words: Sequence[str]) -> tuple[list[str], list[Sweep]]:
    """A multirun's override words split into the fixed ones (their text, in order) and the
    sweeps (in order). A key swept twice is an error; `~key` cannot be swept."""
    fixed: list[str] = []
    sweeps: list[Sweep] = []
    for word in words:
        ov = parse_override(word)
        if not ov.is_sweep:
            fixed.append(word)
            continue
        if ov.op == "delete":
            raise OverrideError(f"override {word!r}: a deleted key cannot be swept")
        if any(s.key == ov.key for s in sweeps):
            raise OverrideError(f"override {word!r}: {ov.key!r} is swept twice")
        sweeps.append(_from_value(ov.key, ov.raw, ov.value, ov.op, ov.bare))
    return fixed, sweeps


def _grid_of(sweep: Sweep) -> list[Any]:
    if sweep.values is not None:
        return sweep.values
    if sweep.distribution is not None:
        raise ConfigError(
            f"sweep {sweep.word}: {sweep.distribution.text} is a distribution, not a list",
            "add --random (and --max-runs N) to draw points from it",
        )
    raise ConfigError(f"sweep {sweep.word}: glob(...) was not resolved against a group")


def grid_points(sweeps: Sequence[Sweep]) -> list[dict[str, Any]]:
    """Every combination of the sweeps' values, as {key: value}, the first sweep slowest (as
    Hydra's basic sweeper)."""
    grids = [_grid_of(s) for s in sweeps]
    total = math.prod(len(g) for g in grids)
    if total > MAX_POINTS:
        raise ConfigError(
            f"the multirun grid has {total} points, more than {MAX_POINTS}",
            "sweep fewer values, or draw some with --random --max-runs N",
        )
    keys = [s.key for s in sweeps]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grids)]


def random_points(sweeps: Sequence[Sweep], n: int, seed: int) -> list[dict[str, Any]]:
    """`n` points, each value drawn from its sweep (a list uniformly, a distribution by its
    kind) with a generator seeded by `seed`."""
    if n < 1 or n > MAX_POINTS:
        raise ConfigError(f"--max-runs must be between 1 and {MAX_POINTS}, got {n}")
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        point: dict[str, Any] = {}
        for s in sweeps:
            if s.distribution is not None:
                point[s.key] = float(f"{s.distribution.draw(rng):.12g}")
            else:
                point[s.key] = rng.choice(_grid_of(s))
        out.append(point)
    return out


def point_overrides(sweeps: Sequence[Sweep], point: dict[str, Any]) -> list[Override]:
    """The overrides that set one point's values (group options as unquoted words)."""
    out = []
    for s in sweeps:
        value = point[s.key]
        bare = isinstance(value, str) and (
            s.glob is not None or (s.values is not None and value in s.values)
        )
        out.append(s.override(value, bare))
    return out
