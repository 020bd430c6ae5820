"""report.md for a run: who it is, its code, data and environment, its config, the summary of
its metrics and its charts.

`write_report(run_dir)` writes `<run>/report.md` (or another file) with the run's id, name,
status, times and duration, command, label and tags, the source commit (or source copy), the
data digests, the environment (Python, platform, host, packages, GPU, container, job), the config
as a table of dotted keys, the summary table (last, min, max, step per key) and the charts of
`tether.track.plots` (PNG, or SVG with `fmt="svg"`), saved under `<run>/plots/` and embedded
with links relative to the report, so the folder can be moved, archived or rendered by any
Markdown viewer; `html=True` also writes report.html, one page with the charts inlined as SVG.
A folder with only a metrics.jsonl (a History used outside a run) gets the metrics part.
A report of several runs (a sweep) is tether.track.sweep_report's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..clock import parse_iso
from ..errors import TetherError
from ..fsio import atomic_write_text, read_json
from ..lock import RunLock, read_lock
from ..store.attrs import read_attributes
from ..store.layout import LOCK, METRICS, SUMMARY
from ..store.state import read_state
from .document import Block, Code, Document, markdown_table, number, to_html, to_markdown
from .metrics_file import read_metrics, summarize, to_series
from .plots import PLOTS_DIR, MissingDependency, Style, charts_for_run, render_file, save_charts

REPORT = "report.md"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table, cells as the reports write them."""
    return markdown_table(header, rows)


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


def _run_section(run_dir: Path, doc: Document) -> None:
    """The run's record from run.lock and state.json; a plain folder gets nothing here."""
    lock = read_lock(run_dir)
    state = read_state(run_dir)
    attrs = read_attributes(run_dir)
    rows: list[tuple[str, Any]] = [
        ("id", Code(lock.id)),
        ("name", lock.name),
        ("status", state.effective_status()),
        ("started", state.started),
        ("stopped", state.stopped),
        ("duration", duration(state.started, state.end(run_dir))),
    ]
    if state.exit_code not in (None, 0):
        rows.append(("exit code", f"{state.exit_code} {state.error or ''}".strip()))
    if lock.command:
        rows.append(("command", Code(" ".join(lock.command))))
    if attrs.label:
        rows.append(("label", attrs.label))
    if attrs.tags:
        rows.append(("tags", ", ".join(attrs.tags)))
    for stage in lock.stages:
        rows.append((f"stage {stage.name}", Code(stage.run)))
    if lock.parent:
        rows.append(("parent", Code(lock.parent)))
    doc.table(["", ""], rows)
    for note in attrs.notes:
        doc.para(
            f"{note.get('text', '')} ({note.get('author', '?')}, {note.get('t', '')})", quote=True
        )
    code_and_data(lock, doc)
    config = flatten(lock.config)
    if config:
        doc.heading("Config")
        doc.table(["key", "value"], config)


def code_and_data(lock: RunLock, doc: Document) -> None:
    """The Code, Data and Environment sections of a run's record."""
    if lock.sources:
        doc.heading("Code")
        rows = []
        for src in lock.sources:
            if src.commit:
                what = Code(src.commit)
                kind = "git snapshot" + (" (dirty tree)" if src.dirty else "")
                if src.branch:
                    kind += f", branch {src.branch}"
            elif src.manifest:
                what, kind = Code(src.manifest), "source copy (manifest digest)"
            else:
                what, kind = None, "not recorded"
            rows.append((src.path or ".", what, kind))
        doc.table(["source", "commit or digest", "kind"], rows)
    if lock.data:
        doc.heading("Data")
        doc.table(
            ["path", "digest", "files", "bytes"],
            [
                (d.path, Code(f"{d.algo}:{d.digest}") if d.digest else d.status, d.files, d.bytes)
                for d in lock.data
            ],
        )
    env = environment_rows(lock.env)
    if env:
        doc.heading("Environment")
        doc.table(["", ""], env)


def environment_rows(env: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The recorded environment in a few rows: interpreter, platform, where it ran, the
    packages (their count and digest: the list itself is in run.lock), GPU, container, job."""
    rows: list[tuple[str, Any]] = []
    python = " ".join(str(env[k]) for k in ("implementation", "python") if env.get(k))
    if python:
        rows.append(
            ("python", python + (f" ({env['executable']})" if env.get("executable") else ""))
        )
    for key in ("platform", "host", "user", "cwd", "tether"):
        if env.get(key):
            rows.append((key, env[key]))
    packages = env.get("packages")
    if isinstance(packages, list):
        digest = f", digest {env['packages_digest']}" if env.get("packages_digest") else ""
        rows.append(("packages", f"{len(packages)} installed{digest}"))
    for key in ("gpu", "container", "job"):
        value = env.get(key)
        if isinstance(value, Mapping) and value:
            rows.append((key, ", ".join(f"{k}={_short(v)}" for k, v in value.items())))
        elif value:
            rows.append((key, _short(value)))
    return rows


def _short(value: Any) -> str:
    if isinstance(value, list):
        return "; ".join(str(v) for v in value)
    return str(value)


def metrics_section(summary: Mapping[str, Mapping[str, Any]], doc: Document) -> None:
    doc.heading("Metrics")
    if summary:
        rows = [
            (k, number(v.get("last")), number(v.get("min")), number(v.get("max")), v.get("step"))
            for k, v in sorted(summary.items())
        ]
        doc.table(["key", "last", "min", "max", "step"], rows)
    else:
        doc.para("No metrics were logged.")


def run_document(run_dir: Path, metrics: Path) -> Document:
    """The report of one run, without its charts."""
    if (run_dir / LOCK).is_file():
        lock = read_lock(run_dir)
        doc = Document(f"Run {lock.name} {lock.id[:13]}")
        _run_section(run_dir, doc)
    else:
        doc = Document(f"Metrics of {run_dir.name}")
    metrics_section(metric_summary(run_dir, metrics), doc)
    return doc


def build_report(run_dir: Path, metrics: Path, pngs: Sequence[Path], report_path: Path) -> str:
    """The Markdown text; chart links are relative to the folder of `report_path`."""
    doc = run_document(run_dir, metrics)
    if pngs:
        doc.heading("Plots")
        for png in pngs:
            doc.chart(png.stem, png)
    return to_markdown(doc, report_path)


def write_outputs(
    doc: Document,
    charts: Sequence[Any],
    report_path: Path,
    chart_dir: Path,
    *,
    fmt: str = "png",
    html: bool = False,
    style: Style | None = None,
    tail: Sequence[Block] = (),
) -> list[Path]:
    """Draw `charts` into `chart_dir` (as `fmt`), add them to `doc` under "Plots" (then the
    `tail` blocks), and write the Markdown to `report_path` (and report.html beside it with
    `html`). Returns the files written, the report first. Without matplotlib the report says
    why it has no charts."""
    missing = None
    files: list[Path] = []
    svgs: list[str | None] = []
    if charts:
        try:
            files = save_charts(charts, chart_dir, fmt, style)
            svgs = [
                render_file([c], "svg", style).decode("utf-8") if html else None for c in charts
            ]
        except MissingDependency as exc:
            missing = str(exc)
    if files:
        doc.heading("Plots")
        for chart, path, svg in zip(charts, files, svgs, strict=True):
            doc.chart(chart.name, path, svg)
    if missing:
        doc.para(f"_No plots: {missing}._")
    doc.blocks += tail
    text = to_markdown(doc, report_path)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(report_path, text, durable=False)
    written = [report_path]
    if html:
        page = report_path.with_suffix(".html")
        atomic_write_text(page, to_html(doc), durable=False)
        written.append(page)
    return written


def write_report(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    plots: bool = True,
    keys: Sequence[str] | None = None,
    fmt: str = "png",
    html: bool = False,
    style: Style | None = None,
) -> Path:
    """Write report.md for the run folder `source` (or the folder of a metrics file) to `out`
    (default: `report.md` in that folder), drawing the charts into `<folder>/plots/` first (with
    `plots`; `keys` picks the keys charted, `fmt` png or svg, `style` their size, title and
    legend); with `html`, report.html beside it too. Returns the report's path.

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
    charts = []
    if plots:
        series = to_series(read_metrics(metrics))
        if series:
            charts = charts_for_run(series, keys)
    doc = run_document(run_dir, metrics)
    write_outputs(doc, charts, report_path, run_dir / PLOTS_DIR, fmt=fmt, html=html, style=style)
    return report_path
