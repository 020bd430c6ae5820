"""The report of several runs (a sweep): what differs among them, how they ended, their curves
overlaid, and the record of the best one.

`write_sweep_report(records, out)` writes `out` (a folder gets `report.md`) with a table of the
runs (the config keys whose values differ, and the final value of each metric), the best run by
a metric (`best="eval/acc"`, `"val/loss:min"`; by default the first metric every run has, the
smallest for names with loss or err, the largest otherwise), one chart per metric with a line per
run named by its differing config values, and the best run's own record (code, data,
environment, config, metrics). Charts go into `plots/` beside the report (PNG, or SVG); `html`
also writes report.html, with the charts inlined as SVG.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..store.layout import METRICS
from ..store.records import RunRecord
from .document import Block, Code, Document, Heading
from .metrics_file import read_metrics, to_series
from .plots import PLOTS_DIR, Style, charts_for_runs
from .report import REPORT, metric_summary, run_document, write_outputs
from .sweep import (
    Best,
    best_run,
    config_labels,
    differing_keys,
    flat_config,
    parse_best,
    short_keys,
)

DEFAULT_DIR = "sweep-report"  # in the working folder, when no -o is given


def report_path_for(out: str | os.PathLike[str] | None) -> Path:
    """`out` as the report file: a `.md` name is the file, anything else a folder for it."""
    path = Path(out if out is not None else DEFAULT_DIR)
    return path if path.suffix.lower() == ".md" else path / REPORT


def finals_of(records: Sequence[RunRecord]) -> list[dict[str, float]]:
    """The last value of each metric, per run (summary.json brought up to date)."""
    out = []
    for record in records:
        summary = metric_summary(record.dir, record.dir / METRICS)
        out.append(
            {
                k: v["last"]
                for k, v in summary.items()
                if isinstance(v.get("last"), (int, float)) and not isinstance(v["last"], bool)
            }
        )
    return out


def _metric_keys(finals: Sequence[Mapping[str, float]]) -> list[str]:
    """Every metric key, those all runs have first, each group sorted by name."""
    keys = sorted({k for f in finals for k in f})
    shared = [k for k in keys if all(k in f for f in finals)]
    return shared + [k for k in keys if k not in shared]


def sweep_document(
    records: Sequence[RunRecord],
    shorts: Mapping[str, str],
    *,
    best: str | None = None,
) -> tuple[Document, list[str], Best | None]:
    """The report without its charts, the legend label of each run, and the best run."""
    configs = [r.lock.config for r in records]
    differ = differing_keys(configs)
    names = short_keys(differ)
    fallbacks = [f"{shorts.get(r.id, r.id[:13])} {r.name}" for r in records]
    labels = config_labels(configs, fallbacks)
    finals = finals_of(records)
    metric_keys = _metric_keys(finals)
    key, rule = parse_best(best)
    # By default the first metric of the table (every run has it), as the docs say.
    winner = best_run(finals, key or (metric_keys[0] if metric_keys else None), rule)
    run_names = sorted({r.name for r in records})
    what = run_names[0] if len(run_names) == 1 else ", ".join(run_names[:3])
    doc = Document(f"Sweep of {what}: {len(records)} runs")
    doc.heading("Runs")
    if differ:
        doc.para("Config that differs: " + ", ".join(f"`{k}`" for k in differ) + ".")
    else:
        doc.para("The runs have the same config.")
    header = ["#", "id", "name", "status", *(names[k] for k in differ), *metric_keys]
    if winner is not None:
        header.append("best")
    rows = []
    for n, (record, final) in enumerate(zip(records, finals, strict=True), 1):
        flat = flat_config(record.lock.config)
        row: list[Any] = [n, Code(shorts.get(record.id, record.id[:13])), record.name]
        row.append(record.status)
        row += [flat.get(k) for k in differ]
        row += [final.get(k) for k in metric_keys]
        if winner is not None:
            row.append(f"best {winner.key} ({winner.rule})" if n - 1 == winner.index else "")
        rows.append(row)
    doc.table(header, rows)
    doc.heading("Best run")
    if winner is None:
        doc.para("No metric is shared by every run: no best run is picked.")
    else:
        record = records[winner.index]
        doc.para(
            f"Run {winner.index + 1}, `{shorts.get(record.id, record.id[:13])}` "
            f"({labels[winner.index]}), has the {'smallest' if winner.rule == 'min' else 'largest'}"
            f" final {winner.key}: {winner.value:.6g}."
        )
    return doc, labels, winner


def write_sweep_report(
    records: Sequence[RunRecord],
    out: str | os.PathLike[str] | None = None,
    *,
    shorts: Mapping[str, str] | None = None,
    keys: Sequence[str] | None = None,
    best: str | None = None,
    plots: bool = True,
    fmt: str = "png",
    html: bool = False,
    style: Style | None = None,
) -> list[Path]:
    """Write the sweep report of `records` (see the module's doc); returns the files written,
    report.md first (then report.html with `html`)."""
    shorts = shorts or {}
    report_path = report_path_for(out)
    doc, labels, winner = sweep_document(records, shorts, best=best)
    charts = []
    if plots:
        found = []
        for record, label in zip(records, labels, strict=True):
            series = to_series(read_metrics(record.dir))
            if series:
                found.append((label, series))
        if len(found) > 1:
            charts = charts_for_runs(found, keys)
        elif found:
            # One run with curves: still one chart per metric, its line named by the run.
            charts = charts_for_runs([*found, (found[0][0], {})], keys)
    tail: list[Block] = []
    if winner is not None:
        record = records[winner.index]
        own = run_document(record.dir, record.dir / METRICS)
        tail.append(Heading(2, f"Record of the best run: {own.title}"))
        for block in own.blocks:
            tail.append(
                Heading(block.level + 1, block.text) if isinstance(block, Heading) else block
            )
    chart_dir = report_path.parent / PLOTS_DIR
    return write_outputs(
        doc, charts, report_path, chart_dir, fmt=fmt, html=html, style=style, tail=tail
    )
