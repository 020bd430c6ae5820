"""report.md for a run: who it is, its config, the summary of its metrics and its charts.

`write_report(run_dir)` writes `<run>/report.md` (or another file) with the run's id, name,
status, times and duration, command, label and tags, the config as a table of dotted keys, the
summary table (last, min, max, step per key) and the PNG charts of `tether.track.plots`, saved
under `<run>/plots/` and embedded with links relative to the report, so the folder can be moved,
archived or rendered by any Markdown viewer. A folder with only a metrics.jsonl (a History used
outside a run) gets the metrics part.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..clock import parse_iso
from ..errors import TetherError
from ..fsio import atomic_write_text, read_json
from ..lock import read_lock
from ..store.attrs import read_attributes
from ..store.layout import LOCK, METRICS, SUMMARY
from ..store.state import read_state
from .metrics_file import read_metrics, summarize, to_series
from .plots import PLOTS_DIR, MissingDependency, charts_for_run, save_pngs

REPORT = "report.md"


def _cell(value: Any) -> str:
    """A value as a Markdown table cell."""
    if isinstance(value, float):
        text = number(value)
    elif value is None:
        text = "-"
    elif isinstance(value, bool):
        text = str(value).lower()
    else:
        text = str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ") or " "


def number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.6g}"
    return str(value)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def flatten(config: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Dotted keys of a nested mapping: {"model": {"C": 1}} -> [("model.C", 1)]."""
    if isinstance(config, Mapping) and config:
        out = []
        for key, value in config.items():
            out += flatten(value, f"{prefix}{key}.")
        return out
    return [(prefix.rstrip("."), config)] if prefix else []


def duration(started: str | None, stopped: str | None) -> str | None:
    a, b = parse_iso(started), parse_iso(stopped)
    if a is None or b is None:
        return None
    seconds = (b - a).total_seconds()
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{sec:02d}" if hours else f"{minutes}:{sec:02d}"


def metric_summary(run_dir: Path, metrics: Path | None = None) -> dict[str, dict[str, Any]]:
    """last/min/max/step per key: summary.json's, brought up to date from metrics.jsonl (the
    complete log; summary.json of a live run lags it, and holds keys rolled up from elsewhere)."""
    try:
        summary = read_json(run_dir / SUMMARY)
    except (OSError, ValueError):
        summary = {}
    recorded = summary.get("metrics") if isinstance(summary, dict) else None
    out = {k: dict(v) for k, v in (recorded or {}).items() if isinstance(v, dict)}
    for key, stats in summarize(read_metrics(metrics or run_dir)).items():
        out[key] = {**out.get(key, {}), **stats}
    return out


def _run_section(run_dir: Path) -> tuple[str, list[str]]:
    """(title, lines) from run.lock and state.json; a plain folder gets its path as title."""
    if not (run_dir / LOCK).is_file():
        return f"Metrics of {run_dir.name}", []
    lock = read_lock(run_dir)
    state = read_state(run_dir)
    attrs = read_attributes(run_dir)
    rows: list[tuple[str, Any]] = [
        ("id", f"`{lock.id}`"),
        ("name", lock.name),
        ("status", state.effective_status()),
        ("started", state.started),
        ("stopped", state.stopped),
        ("duration", duration(state.started, state.end(run_dir))),
    ]
    if state.exit_code not in (None, 0):
        rows.append(("exit code", f"{state.exit_code} {state.error or ''}".strip()))
    if lock.command:
        rows.append(("command", "`" + " ".join(lock.command).replace("`", "'") + "`"))
    if attrs.label:
        rows.append(("label", attrs.label))
    if attrs.tags:
        rows.append(("tags", ", ".join(attrs.tags)))
    for stage in lock.stages:
        rows.append((f"stage {stage.name}", f"`{stage.run}`"))
    if lock.parent:
        rows.append(("parent", f"`{lock.parent}`"))
    lines = [table(["", ""], rows)]
    for note in attrs.notes:
        lines.append(f"\n> {note.get('text', '')} ({note.get('author', '?')}, {note.get('t', '')})")
    config = flatten(lock.config)
    if config:
        lines += ["", "## Config", "", table(["key", "value"], config)]
    return f"Run {lock.name} {lock.id[:13]}", lines


def build_report(run_dir: Path, metrics: Path, pngs: Sequence[Path], report_path: Path) -> str:
    """The Markdown text; PNG links are relative to the folder of `report_path`."""
    title, lines = _run_section(run_dir)
    out = [f"# {title}", "", *lines]
    summary = metric_summary(run_dir, metrics)
    out += ["", "## Metrics", ""]
    if summary:
        rows = [
            (k, number(v.get("last")), number(v.get("min")), number(v.get("max")), v.get("step"))
            for k, v in sorted(summary.items())
        ]
        out.append(table(["key", "last", "min", "max", "step"], rows))
    else:
        out.append("No metrics were logged.")
    if pngs:
        out += ["", "## Plots"]
        base = report_path.parent.resolve()
        for png in pngs:
            link = Path(os.path.relpath(png.resolve(), base)).as_posix()
            out += ["", f"![{png.stem}]({link})"]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).rstrip("\n") + "\n"


def write_report(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    plots: bool = True,
    keys: Sequence[str] | None = None,
) -> Path:
    """Write report.md for the run folder `source` (or the folder of a metrics file) to `out`
    (default: `report.md` in that folder), drawing the charts into `<folder>/plots/` first (with
    `plots`; `keys` picks the keys charted); returns the report's path.

    Charts need matplotlib (the `plots` extra); without it the report says so instead.
    """
    source = Path(source)
    if source.is_file():
        run_dir, metrics = source.parent, source
    elif source.is_dir():
        run_dir, metrics = source, source / METRICS
    else:
        raise TetherError(f"{source} is not a run folder or a metrics file")
    report_path = Path(out) if out is not None else run_dir / REPORT
    if report_path.is_dir():
        report_path = report_path / REPORT
    pngs: list[Path] = []
    missing = None
    if plots:
        series = to_series(read_metrics(metrics))
        if series:
            try:
                pngs = save_pngs(charts_for_run(series, keys), run_dir / PLOTS_DIR)
            except MissingDependency as exc:
                missing = str(exc)
    text = build_report(run_dir, metrics, pngs, report_path)
    if missing:
        text += f"\n_No plots: {missing}._\n"
    report_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(report_path, text, durable=False)
    return report_path
