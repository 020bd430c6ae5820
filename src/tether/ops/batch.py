"""Batches: one `tether run` that makes several trials of an operation.

- grid: list values and range/linspace/logspace/choice expand to their cartesian product
  (the first flag given varies slowest); `--max-runs N` keeps the first N trials;
- random (`--random --max-runs N [--seed S]`): each trial draws every batch flag from its
  uniform(a,b) / loguniform(a,b) distribution or list, with a seeded generator (the seed is
  recorded, chosen at random when not given);
- file (`--batch FILE`): one trial per row of a CSV file (a header of flag names; empty cells
  keep the default), a JSON list of objects or a YAML list of mappings; flags on the command
  line apply to every row (a row's own value wins), and their lists multiply the rows.

This module only expands a command line into trials (`expand` -> `Batch`); it makes no run.
A batch is a run itself, named `OP+batch`, whose config is the batch spec, and each trial is a
run with `parent` set to it: tether.batches.ops runs them (in this process or on an executor).
"""

from __future__ import annotations

import csv
import functools
import io
import itertools
import json
import math
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import TetherError
from ..project.model import OpDef
from .flags import (
    FlagError,
    FlagSpec,
    Sampler,
    check_flag,
    fit,
    load_value,
    yaml_load,
)

MAX_TRIALS = 10_000
STREAM_HEAD = 1  # the trials a streamed batch draws before it starts (checked up front)
DEFAULT_RANDOM_RUNS = 20


@dataclass
class Batch:
    mode: str  # "grid", "random" or "file"
    trials: list[dict[str, Any]]
    spec: dict[str, Any]  # the batch run's config
    notes: list[str] = field(default_factory=list)
    total: int = -1  # how many trials the batch has; `trials` may hold only the first ones
    # A confirmed batch above MAX_TRIALS is streamed: `trials` holds the first ones only and
    # this makes the whole sequence anew, drawn one trial at a time as the batch runs.
    source: Callable[[], Iterator[dict[str, Any]]] | None = None

    def __post_init__(self) -> None:
        if self.total < 0:
            self.total = len(self.trials)

    @property
    def streamed(self) -> bool:
        return self.source is not None

    def all_trials(self) -> Iterator[dict[str, Any]]:
        """Every trial of the batch, in order; drawn lazily when the batch is streamed."""
        return self.source() if self.source is not None else iter(self.trials)


# -- batch files ------------------------------------------------------------------------------
def read_batch_file(op: OpDef, path: str) -> list[dict[str, Any]]:
    """Rows of flag values from a CSV, JSON or YAML file, each checked against `op`."""
    file = Path(path)
    shown = path
    suffix = file.suffix.lower()
    if suffix not in (".csv", ".json", ".yaml", ".yml"):
        raise TetherError(f"{shown}: a batch file ends in .csv, .json, .yaml or .yml")
    try:
        text = file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise TetherError(f"{shown}: no such batch file")
    except (OSError, UnicodeDecodeError) as exc:
        raise TetherError(f"{shown}: cannot read the batch file ({exc})")
    rows: list[dict[str, Any]]
    typed = True
    if suffix == ".csv":
        rows, typed = _csv_rows(text, shown), False
    elif suffix == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise TetherError(f"{shown}: not valid JSON ({exc})")
        rows = _object_rows(data, shown, "object", "JSON")
    else:
        import yaml

        try:
            data = yaml_load(text, aliases=False)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or type(exc).__name__
            raise TetherError(f"{shown}: not valid YAML{where} ({problem})")
        except (ValueError, RecursionError) as exc:  # a 5,000-digit integer, deep nesting
            raise TetherError(f"{shown}: not valid YAML ({str(exc)[:80]})")
        rows = _object_rows(data, shown, "mapping", "YAML")
    if not rows:
        raise TetherError(f"{shown}: no rows (one trial per row)")
    out = []
    for n, row in enumerate(rows, start=1):
        try:
            out.append(_fit_row(op, row, typed))
        except FlagError as exc:
            raise FlagError(f"{shown} row {n}: {exc.message}", exc.hint)
    return out


def _csv_rows(text: str, shown: str) -> list[dict[str, Any]]:
    reader = csv.reader(io.StringIO(text))
    try:
        lines = [line for line in reader if any(cell.strip() for cell in line)]
    except csv.Error as exc:
        raise TetherError(f"{shown}: not valid CSV ({exc})")
    if not lines:
        return []
    header = [h.strip() for h in lines[0]]
    for i, name in enumerate(header):
        if not name:
            raise TetherError(f"{shown}: column {i + 1} of the header has no flag name")
    if len(set(header)) != len(header):
        twice = sorted({h for h in header if header.count(h) > 1})
        raise TetherError(f"{shown}: column {twice[0]!r} appears twice in the header")
    rows = []
    for n, line in enumerate(lines[1:], start=1):
        if len(line) > len(header):
            raise TetherError(
                f"{shown} row {n}: {len(line)} values for {len(header)} columns",
            )
        rows.append({k: v for k, v in zip(header, line, strict=False) if v.strip() != ""})
    return rows


def _object_rows(data: Any, shown: str, kind: str, lang: str) -> list[dict[str, Any]]:
    if not isinstance(data, list):
        got = "nothing" if data is None else _a(_type_name(data))
        raise TetherError(f"{shown}: expected a {lang} list of {kind}s (one per trial), got {got}")
    for n, row in enumerate(data, start=1):
        if not isinstance(row, dict):
            raise TetherError(
                f"{shown} row {n}: expected {_a(kind)} of flag values, got {_a(_type_name(row))}"
            )
    return data


def _a(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def _type_name(value: Any) -> str:
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def _fit_row(op: OpDef, row: dict[str, Any], typed: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, raw in row.items():
        name = str(key)
        check_flag(op, name)
        if typed:
            out[name] = fit(op, name, raw)
        else:
            text = str(raw).strip()
            out[name] = fit(op, name, load_value(text, name), text)
    return out


# -- expansion --------------------------------------------------------------------------------
def _grid_size(grid: dict[str, list[Any]]) -> int:
    return math.prod(len(v) for v in grid.values()) if grid else 1


def grid_trials(spec: FlagSpec, limit: int | None = None) -> list[dict[str, Any]]:
    """The cartesian product of the grid flags, fixed flags added, in the order given."""
    if spec.sampled:
        names = ", ".join(sorted(spec.sampled))
        raise FlagError(
            f"flag {names} samples values ({next(iter(spec.sampled.values())).text})",
            "add --random (and --max-runs N) to draw trials from it",
        )
    size = _grid_size(spec.grid)
    if limit is None and size > MAX_TRIALS:
        raise FlagError(
            f"the grid has {size} trials (more than {MAX_TRIALS})",
            "narrow the values or pass --max-runs N",
        )
    return list(iter_grid_trials(spec, limit))


def iter_grid_trials(spec: FlagSpec, limit: int | None = None) -> Iterator[dict[str, Any]]:
    """The grid's trials one at a time, the first `limit` of them (all without one)."""
    order = list(spec.words)
    combos: Iterable[tuple[Any, ...]] = itertools.product(*spec.grid.values())
    if limit is not None:
        combos = itertools.islice(combos, limit)
    for combo in combos:
        values = {**spec.fixed, **dict(zip(spec.grid, combo, strict=True))}
        yield {k: values[k] for k in order if k in values}


def _draw(rng: random.Random, source: list[Any] | Sampler) -> Any:
    if isinstance(source, list):
        return source[rng.randrange(len(source))]
    lo, hi = source.args
    if source.kind == "uniform":
        x = rng.uniform(lo, hi)
    else:
        x = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    return float(f"{x:.6g}")  # six significant digits: readable, and plenty for a search


def iter_random_trials(op: OpDef, spec: FlagSpec, n: int, seed: int) -> Iterator[dict[str, Any]]:
    """The `n` random trials of `seed`, drawn one at a time (a preview draws only what it shows)."""
    rng = random.Random(seed)
    sources: dict[str, list[Any] | Sampler] = {**spec.grid, **spec.sampled}
    for _ in range(n):
        values = dict(spec.fixed)
        for name in spec.words:
            if name in sources:
                values[name] = fit(op, name, _draw(rng, sources[name]))
        yield {k: values[k] for k in spec.words if k in values}


def random_trials(op: OpDef, spec: FlagSpec, n: int, seed: int) -> list[dict[str, Any]]:
    return list(iter_random_trials(op, spec, n, seed))


def expand(
    op: OpDef,
    spec: FlagSpec,
    *,
    batch_file: str | None = None,
    random_mode: bool = False,
    max_runs: int | None = None,
    seed: int | None = None,
    confirmed: bool = False,
    shown: int | None = None,
) -> Batch | None:
    """The trials the command line asks for, or None for a single run.

    `shown` (a preview) expands only the first `shown` trials, `Batch.total` still counting
    them all; `--max-runs` above MAX_TRIALS needs `confirmed` (`--yes`) unless only shown, and
    such a batch is streamed: `Batch.trials` holds its first trial, `Batch.all_trials()` draws
    the others as they run, so the first child starts at once and memory stays bounded.
    """
    if max_runs is not None and max_runs < 1:
        raise TetherError("--max-runs must be at least 1")
    if not (spec.is_batch or batch_file or random_mode):
        if max_runs is not None or seed is not None:
            raise TetherError(
                "--max-runs and --seed apply to batches",
                "give a flag several values, --random or --batch FILE",
            )
        return None
    flags_spec = {k: spec.words[k] for k in spec.words}
    notes: list[str] = []
    if random_mode:
        if batch_file:
            raise TetherError("--random and --batch cannot be combined")
        if not spec.is_batch:
            raise TetherError(
                "--random needs a flag to sample",
                "give one a list, range(...), uniform(a,b), loguniform(a,b) or choice(...)",
            )
        if seed is None:
            seed = random.SystemRandom().randrange(2**31)
        n = max_runs or DEFAULT_RANDOM_RUNS
        _check_size(n, confirmed or shown is not None)
        drawn = iter_random_trials(op, spec, n, seed)
        source = None
        if shown is None and n > MAX_TRIALS:  # confirmed: drawn as the batch runs
            shown = STREAM_HEAD
            source = functools.partial(iter_random_trials, op, spec, n, seed)
        trials = list(drawn if shown is None else itertools.islice(drawn, shown))
        batch_spec: dict[str, Any] = {
            "op": op.name,
            "mode": "random",
            "flags": flags_spec,
            "max_runs": n,
            "seed": seed,
        }
        return Batch("random", trials, _with_trials(batch_spec, n), notes, n, source)
    if seed is not None:
        notes.append("--seed only matters with --random")
    if batch_file:
        rows = read_batch_file(op, batch_file)
        trials = []
        grid = grid_trials(spec, None)
        for row in rows:
            for combo in grid:
                merged = {**combo, **row}
                trials.append(merged)
                if max_runs is not None and len(trials) >= max_runs:
                    break
            if max_runs is not None and len(trials) >= max_runs:
                break
        if len(trials) > MAX_TRIALS:
            raise FlagError(f"the batch has {len(trials)} trials (more than {MAX_TRIALS})")
        batch_spec = {"op": op.name, "mode": "file", "file": batch_file, "flags": flags_spec}
        if max_runs is not None:
            batch_spec["max_runs"] = max_runs
        return Batch("file", trials, _with_trials(batch_spec, len(trials)), notes)
    size = _grid_size(spec.grid)
    total = size if max_runs is None else min(size, max_runs)
    _check_size(total, confirmed or shown is not None or max_runs is None)
    source = None
    if shown is not None and total > MAX_TRIALS:
        trials = grid_trials(spec, shown)
    elif total > MAX_TRIALS and max_runs is not None:  # confirmed: made as the batch runs
        grid_trials(spec, 0)  # its checks (sampled flags), without a trial
        trials = list(iter_grid_trials(spec, STREAM_HEAD))
        source = functools.partial(iter_grid_trials, spec, max_runs)
    else:
        trials = grid_trials(spec, max_runs)
    if max_runs is not None and size > max_runs:
        notes.append(f"--max-runs {max_runs}: the first {max_runs} of {size} grid trials")
    batch_spec = {"op": op.name, "mode": "grid", "flags": flags_spec}
    if max_runs is not None:
        batch_spec["max_runs"] = max_runs
    return Batch("grid", trials, _with_trials(batch_spec, total), notes, total, source)


def _check_size(total: int, confirmed: bool) -> None:
    if total > MAX_TRIALS and not confirmed:
        raise TetherError(
            f"--max-runs asks for {total} trials, above the limit of {MAX_TRIALS}",
            "pass --yes to start that many runs, or --preview to see the first ones",
        )


def _with_trials(spec: dict[str, Any], total: int) -> dict[str, Any]:
    spec["trials"] = total
    # OmegaConf would read `${...}` in a flag's text as an interpolation: keep it literal.
    spec["flags"] = {k: v.replace("${", "\\${") for k, v in spec["flags"].items()}
    return spec
