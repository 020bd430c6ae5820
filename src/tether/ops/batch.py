"""Batches: one `tether run` that makes several trials of an operation.

- grid: list values and range/linspace/logspace/choice expand to their cartesian product
  (the first flag given varies slowest); `--max-runs N` keeps the first N trials;
- random (`--random --max-runs N [--seed S]`): each trial draws every batch flag from its
  uniform(a,b) / loguniform(a,b) distribution or list, with a seeded generator (the seed is
  recorded, chosen at random when not given);
- file (`--batch FILE`): one trial per row of a CSV file (a header of flag names; empty cells
  keep the default), a JSON list of objects or a YAML list of mappings; flags on the command
  line apply to every row (a row's own value wins), and their lists multiply the rows.

A batch is a run itself, named `OP+batch`, whose config is the batch spec; each trial is a run
with `parent` set to it, run one after the other. The batch run's `batch.json` lists every trial
with its status (`completed`, `failed`, `terminated`, `skipped`, `not started`) and run id, and
its metrics count them (`trials`, `completed`, `failed`, `skipped`, `not_started`). Ctrl-C
terminates the current trial, records the rest as not started, and marks the batch terminated.
The batch exits 1 when a trial failed, 130 when stopped, 0 otherwise.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import TetherError
from ..project_types import OpDef
from .flags import (
    FlagError,
    FlagSpec,
    Sampler,
    check_flag,
    describe,
    fit,
    load_value,
    yaml_load,
)

MAX_TRIALS = 10_000
DEFAULT_RANDOM_RUNS = 20
BATCH_SUFFIX = "+batch"


@dataclass
class Batch:
    mode: str  # "grid", "random" or "file"
    trials: list[dict[str, Any]]
    spec: dict[str, Any]  # the batch run's config
    notes: list[str] = field(default_factory=list)


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
            data = yaml_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or type(exc).__name__
            raise TetherError(f"{shown}: not valid YAML{where} ({problem})")
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
    order = list(spec.words)
    combos: Iterable[tuple[Any, ...]] = itertools.product(*spec.grid.values())
    if limit is not None:
        combos = itertools.islice(combos, limit)
    out = []
    for combo in combos:
        values = {**spec.fixed, **dict(zip(spec.grid, combo, strict=True))}
        out.append({k: values[k] for k in order if k in values})
    return out


def _draw(rng: random.Random, source: list[Any] | Sampler) -> Any:
    if isinstance(source, list):
        return source[rng.randrange(len(source))]
    lo, hi = source.args
    if source.kind == "uniform":
        x = rng.uniform(lo, hi)
    else:
        x = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    return float(f"{x:.6g}")  # six significant digits: readable, and plenty for a search


def random_trials(op: OpDef, spec: FlagSpec, n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    sources: dict[str, list[Any] | Sampler] = {**spec.grid, **spec.sampled}
    out = []
    for _ in range(n):
        values = dict(spec.fixed)
        for name in spec.words:
            if name in sources:
                values[name] = fit(op, name, _draw(rng, sources[name]))
        out.append({k: values[k] for k in spec.words if k in values})
    return out


def expand(
    op: OpDef,
    spec: FlagSpec,
    *,
    batch_file: str | None = None,
    random_mode: bool = False,
    max_runs: int | None = None,
    seed: int | None = None,
) -> Batch | None:
    """The trials the command line asks for, or None for a single run."""
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
        trials = random_trials(op, spec, n, seed)
        batch_spec: dict[str, Any] = {
            "op": op.name,
            "mode": "random",
            "flags": flags_spec,
            "max_runs": n,
            "seed": seed,
        }
        return Batch("random", trials, _with_trials(batch_spec, trials), notes)
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
        return Batch("file", trials, _with_trials(batch_spec, trials), notes)
    size = _grid_size(spec.grid)
    trials = grid_trials(spec, max_runs)
    if max_runs is not None and size > max_runs:
        notes.append(f"--max-runs {max_runs}: the first {max_runs} of {size} grid trials")
    batch_spec = {"op": op.name, "mode": "grid", "flags": flags_spec}
    if max_runs is not None:
        batch_spec["max_runs"] = max_runs
    return Batch("grid", trials, _with_trials(batch_spec, trials), notes)


def _with_trials(spec: dict[str, Any], trials: list[dict[str, Any]]) -> dict[str, Any]:
    spec["trials"] = len(trials)
    # OmegaConf would read `${...}` in a flag's text as an interpolation: keep it literal.
    spec["flags"] = {k: v.replace("${", "\\${") for k, v in spec["flags"].items()}
    return spec


# -- running ----------------------------------------------------------------------------------
@dataclass
class TrialRow:
    index: int
    flags: dict[str, Any]
    status: str = "not started"
    run: str | None = None
    exit_code: int | None = None
    seconds: float | None = None
    error: str | None = None
    twin: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def run_batch(
    batch: Batch,
    make_plan: Callable[[dict[str, Any]], Any],
    store: Any,
    *,
    root: Path,
    op_name: str,
    command: Sequence[str],
    label: str | None = None,
    tags: Sequence[str] = (),
    needed: bool = False,
    console: Any = None,
) -> int:
    """Run the trials one after the other under a parent run; the exit code of the batch."""
    from ..api import Terminated, start_run
    from ..capture.output import LogFile
    from ..fsio import atomic_write_json
    from ..options import RunOptions, SnapshotOptions
    from ..store.layout import OUTPUT
    from .exec import run_trial, working_dir
    from .staging import BATCH_FILE

    rows = [TrialRow(i, t) for i, t in enumerate(batch.trials, start=1)]
    total = len(rows)
    say = console or _console()
    opts = RunOptions(
        name=op_name + BATCH_SUFFIX,
        snapshot=SnapshotOptions(enabled=False),
        label=label,
        tags=list(tags),
    )
    interrupted = False
    with working_dir(root):
        try:
            with start_run(
                batch.spec,
                runs_dir=str(store.root),
                options=opts,
                capture_output=False,
                command=list(command),
            ) as parent:
                log = LogFile(parent.dir / OUTPUT)

                def save() -> None:
                    atomic_write_json(
                        parent.dir / BATCH_FILE,
                        {
                            "op": op_name,
                            "mode": batch.mode,
                            "interrupted": interrupted,
                            "trials": [r.to_dict() for r in rows],
                        },
                        durable=False,
                    )

                def note(line: str) -> None:
                    log.write("tether", line + "\n")

                say.print(
                    f"[bold]batch[/bold] {parent.id[:13]}: {total} trial"
                    f"{'s' if total != 1 else ''} of {_esc(op_name)} ({batch.mode})"
                )
                for text in batch.notes:
                    say.print(f"[dim]{_esc(text)}[/dim]")
                save()
                current: TrialRow | None = None
                try:
                    for row in rows:
                        current = row
                        row.status = "running"
                        save()
                        desc = describe(row.flags) or "(defaults)"
                        say.print(f"[bold cyan][{row.index}/{total}][/bold cyan] {_esc(desc)}")

                        def started(run_id: str, row: TrialRow = row) -> None:
                            row.run = run_id
                            save()

                        t0 = time.monotonic()
                        try:
                            result = run_trial(
                                make_plan(row.flags),
                                store,
                                label=label,
                                tags=tags,
                                needed=needed,
                                parent=parent.id,
                                on_start=started,
                            )
                            row.status, row.exit_code = result.status, result.exit_code
                            row.run = result.run_id or row.run
                            row.twin = result.twin
                        except TetherError as exc:
                            row.status, row.error = "failed", str(exc)
                        row.seconds = round(time.monotonic() - t0, 3)
                        say.print(_result_line(row, total, store))
                        note(f"trial {row.index}/{total} {desc}: {_status_text(row)}")
                        save()
                    current = None
                except (KeyboardInterrupt, Terminated):
                    interrupted = True
                    if current is not None:
                        current.status = "terminated"
                    left = [r for r in rows if r.status in ("not started", "running")]
                    for r in left:
                        r.status = "not started"
                    note(f"stopped: {len(left)} trial(s) not started")
                    raise
                finally:
                    counts = _counts(rows)
                    save()
                    parent.log_metrics({k: v for k, v in counts.items()})
                    log.close()
                    if not interrupted:
                        say.print(_summary_line(counts))
                if counts["failed"]:
                    raise SystemExit(1)
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else 1
        except (KeyboardInterrupt, Terminated):
            counts = _counts(rows)
            say.print(
                f"[yellow]batch stopped[/yellow]: {counts['completed']} completed, "
                f"{counts['failed']} failed, {counts['terminated']} terminated, "
                f"{counts['not_started']} not started"
            )
            return 130
    return 0


def _counts(rows: list[TrialRow]) -> dict[str, int]:
    def n(status: str) -> int:
        return sum(1 for r in rows if r.status == status)

    return {
        "trials": len(rows),
        "completed": n("completed"),
        "failed": n("failed"),
        "skipped": n("skipped"),
        "terminated": n("terminated"),
        "not_started": n("not started"),
    }


def _summary_line(counts: dict[str, int]) -> str:
    parts = [f"{counts['completed']} completed"]
    for key in ("failed", "skipped", "terminated"):
        if counts[key]:
            parts.append(f"{counts[key]} {key}")
    style = "red" if counts["failed"] else "green"
    return f"[{style}]batch done[/{style}]: " + ", ".join(parts)


def _status_text(row: TrialRow) -> str:
    text = row.status
    if row.run:
        text += f" (run {row.run[:13]})"
    if row.status == "failed" and row.exit_code:
        text += f", exit {row.exit_code}"
    if row.twin:
        text += f", same as run {row.twin[:13]}"
    if row.error:
        text += f": {row.error}"
    return text


def _result_line(row: TrialRow, total: int, store: Any) -> str:
    from ..cli.render import STATUS_STYLE

    style = STATUS_STYLE.get(row.status, "yellow")
    parts = [f"[bold cyan][{row.index}/{total}][/bold cyan] [{style}]{row.status}[/{style}]"]
    if row.run:
        parts.append(row.run[:13])
    if row.twin:
        parts.append(f"(--needed: same as {row.twin[:13]})")
    if row.status == "failed" and row.exit_code:
        parts.append(f"exit {row.exit_code}")
    if row.error:
        parts.append(_esc(row.error))
    metrics = _last_metrics(store, row.run) if row.run else {}
    if metrics:
        parts.append(" ".join(f"{_esc(k)}={v:.4g}" for k, v in list(metrics.items())[:4]))
    if row.seconds is not None:
        parts.append(f"[dim]{row.seconds:.1f}s[/dim]")
    return "  ".join(parts)


def _last_metrics(store: Any, run_id: str) -> dict[str, float]:
    try:
        summary = store.load(run_id).summary
    except Exception:
        return {}
    metrics = summary.get("metrics") or {}
    return {k: float(v["last"]) for k, v in metrics.items() if isinstance(v, dict) and "last" in v}


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _console() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)
