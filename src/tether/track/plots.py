"""Charts of logged metrics: in the terminal (plotext) and as PNG, SVG or PDF files (matplotlib,
headless).

Keys are grouped by their prefix before the first '/': `train/loss` and `train/acc` share the
chart `train`, `eval/*` get the chart `eval`, keys without a prefix share the chart `metrics`.
Several runs are compared with one chart per key and a line per run (labelled by the caller: the
command line names the config values that differ, tether.track.sweep). The x axis is the logged
`step`, or the position of the value among the key's values when it was logged without one.

Both libraries come with the `plots` extra (`pip install 'tether[plots]'`) and are imported only
when a chart is drawn. Files are drawn on a matplotlib Figure without pyplot, so they work on a
machine without a display and leave the backend of a notebook or GUI session alone.
"""

from __future__ import annotations

import fnmatch
import io
import math
import os
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..errors import TetherError, did_you_mean
from ..fsio import atomic_write_bytes
from .metrics_file import Series, metrics_path, read_metrics, to_series

DEFAULT_GROUP = "metrics"  # the chart of keys without a '/' prefix
PLOTS_DIR = "plots"  # <run>/plots/<chart>.png
TERMINAL_POINTS = 1000  # more points than this per line are thinned for the terminal
PNG_POINTS = 20000
FORMATS = ("png", "svg", "pdf")  # what chart files can be
DEFAULT_SIZE = (720, 400)  # pixels per chart
MIN_SIDE, MAX_SIDE = 50, 10000
# Without colour, lines are told apart by their marker (shown in the legend).
MARKERS = ("•", "x", "+", "o", "*", "#", "@", "%")


class MissingDependency(TetherError):
    """An optional package needed for this feature is not installed."""


@dataclass
class Line:
    label: str
    series: Series


@dataclass
class Chart:
    """One chart: a title (a key group or a key) and its lines."""

    name: str
    lines: list[Line] = field(default_factory=list)

    @property
    def xlabel(self) -> str:
        steps = {line.series.x_is_step for line in self.lines}
        if steps == {True}:
            return "step"
        return "value number" if steps == {False} else "step (or value number)"

    @property
    def filename(self) -> str:
        return self.file_name("png")

    def file_name(self, fmt: str) -> str:
        return f"{safe_name(self.name)}.{fmt}"


def safe_name(name: str) -> str:
    """A file stem for a chart name: `eval/acc` -> `eval_acc`."""
    out = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._")
    return out or "chart"


def group_of(key: str) -> str:
    return key.split("/", 1)[0] if "/" in key and key.split("/", 1)[0] else DEFAULT_GROUP


def select_keys(available: Sequence[str], wanted: Sequence[str] | None) -> list[str]:
    """The keys of `available` that `wanted` names, in the order of `available`.

    Each wanted item is a key (`eval/acc`), a group (`eval`: every `eval/...` key) or a glob
    (`*/acc`). One that matches nothing raises TetherError with a did-you-mean.
    """
    if not wanted:
        return list(available)
    picked: set[str] = set()
    for item in wanted:
        if item in available:
            hits = [item]
        elif any(c in item for c in "*?["):
            hits = [k for k in available if fnmatch.fnmatchcase(k, item)]
        else:
            hits = [k for k in available if group_of(k) == item.rstrip("/")]
        if not hits:
            raise unknown_key(item, available)
        picked.update(hits)
    return [k for k in available if k in picked]


def unknown_key(key: str, available: Sequence[str]) -> TetherError:
    if not available:
        return TetherError(f"no metric {key!r}: no metrics were logged")
    groups = sorted({group_of(k) for k in available})
    hint = did_you_mean(key, [*available, *groups])
    shown = ", ".join(available[:12]) + (" ..." if len(available) > 12 else "")
    guess = f"did you mean {hint!r}? " if hint else ""
    return TetherError(f"no metric {key!r}", f"{guess}(logged: {shown})")


def charts_for_run(series: Mapping[str, Series], keys: Sequence[str] | None = None) -> list[Chart]:
    """One chart per key group of one run (`train/*`, `eval/*`, ...), groups in logging order."""
    charts: dict[str, Chart] = {}
    for key in select_keys(list(series), keys):
        group = group_of(key)
        charts.setdefault(group, Chart(group)).lines.append(Line(key, series[key]))
    return list(charts.values())


def charts_for_runs(
    runs: Sequence[tuple[str, Mapping[str, Series]]], keys: Sequence[str] | None = None
) -> list[Chart]:
    """Charts for runs given as (label, series): one run gives one chart per key group; several
    give one chart per key with a line per run (labelled with the run's label), to compare."""
    if len(runs) == 1:
        return charts_for_run(runs[0][1], keys)
    available: list[str] = []
    for _, series in runs:
        available += [k for k in series if k not in available]
    charts = []
    for key in select_keys(available, keys):
        chart = Chart(key)
        for label, series in runs:
            if key in series:
                chart.lines.append(Line(label, series[key]))
        charts.append(chart)
    return charts


def right_axis(chart: Chart) -> int | None:
    """The index of the line to draw against a right y axis, or None.

    Two lines whose value ranges do not overlap (a loss of 0.05 to 0.15 beside an accuracy of
    0.94 to 0.98) would each look flat on one shared axis: the second gets an axis of its own.
    """
    ranges = []
    for line in chart.lines:
        ys = line.series.finite()[1]
        if ys:
            ranges.append((min(ys), max(ys)))
    if len(chart.lines) != 2 or len(ranges) != 2:
        return None
    (lo1, hi1), (lo2, hi2) = ranges
    return 1 if hi1 < lo2 or hi2 < lo1 else None


def _thin(xs: list[float], ys: list[float], limit: int) -> tuple[list[float], list[float]]:
    """Every k-th point (and the last) when there are more than `limit`."""
    if len(xs) <= limit:
        return xs, ys
    stride = math.ceil(len(xs) / limit)
    idx = list(range(0, len(xs), stride))
    if idx[-1] != len(xs) - 1:
        idx.append(len(xs) - 1)
    return [xs[i] for i in idx], [ys[i] for i in idx]


def _integer_ticks(lo: float, hi: float, most: int = 6) -> list[int]:
    """Round integer ticks from lo to hi: 1, 2 or 5 times a power of ten apart."""
    span = max(hi - lo, 1)
    step = 1
    for power in range(0, 19):
        for mult in (1, 2, 5):
            step = mult * 10**power
            if span / step <= most - 1:
                first = math.ceil(lo / step) * step
                return list(range(int(first), int(hi) + 1, step))
    return [int(lo), int(hi)]  # pragma: no cover


def use_color(stream: IO[str] | None = None) -> bool:
    """Colour for a terminal that is a tty, unless NO_COLOR is set or TERM is dumb."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    stream = stream or sys.stdout
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def default_size(width: int | None, height: int | None) -> tuple[int, int]:
    columns = shutil.get_terminal_size((100, 24)).columns
    return (width or max(40, min(columns, 160)), height or 18)


def _plotext() -> Any:
    try:
        import plotext
    except ImportError:
        raise MissingDependency(
            "terminal charts need plotext", "pip install 'tether[plots]' (or plotext)"
        )
    if not hasattr(plotext, "build"):  # plotext 6 replaced the 5.x functions this uses
        raise MissingDependency(
            f"plotext {getattr(plotext, '__version__', '?')} is not supported",
            "pip install 'plotext>=5.2,<6'",
        )
    return plotext


def render_text(
    charts: Sequence[Chart],
    *,
    width: int | None = None,
    height: int | None = None,
    color: bool | None = None,
    title: str | None = None,
    legend: bool = True,
) -> str:
    """The charts as terminal text, one under the other (ANSI colours when `color`); `title`
    and `legend` as in `Style`."""
    plt = _plotext()
    width, height = default_size(width, height)
    color = use_color() if color is None else color
    out = []
    for chart in charts:
        plt.clear_figure()
        plt.limitsize(False, False)  # the size asked for, not clipped to the terminal's
        plt.plotsize(width, height)
        plt.title(Style(title=title).title_of(chart, len(charts) == 1))
        plt.xlabel(chart.xlabel)
        drawn = 0
        all_x: list[float] = []
        right = right_axis(chart)
        for i, line in enumerate(chart.lines):
            xs, ys = _thin(*line.series.finite(), TERMINAL_POINTS)
            if not xs:
                continue
            marker = "hd" if color else MARKERS[i % len(MARKERS)]
            side = "right" if i == right else "left"
            label = line.label if legend else None
            plt.plot(xs, ys, label=label, marker=marker, yside=side)
            all_x += xs
            drawn += 1
        if not drawn:
            out.append(f"{chart.name}: no finite values to draw")
            continue
        if all(float(x).is_integer() for x in all_x):
            ticks = _integer_ticks(min(all_x), max(all_x))
            plt.xticks(ticks, [str(t) for t in ticks])
        text = plt.build()
        if not color:
            text = plt.uncolorize(text)
        out.append("\n".join(row.rstrip() for row in text.splitlines()))
    plt.clear_figure()
    return "\n\n".join(out) + "\n" if out else ""


def _matplotlib() -> tuple[Any, Any, Any]:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise MissingDependency(
            "chart files need matplotlib", "pip install 'tether[plots]' (or matplotlib)"
        )
    return Figure, FigureCanvasAgg, MaxNLocator


@dataclass
class Style:
    """How chart files look: `size` in pixels (width, height) per chart, a `title` (one chart:
    its title; several: put before each chart's name), and whether lines get a `legend`."""

    size: tuple[int, int] = DEFAULT_SIZE
    title: str | None = None
    legend: bool = True
    dpi: int = 100

    def title_of(self, chart: Chart, alone: bool) -> str:
        if not self.title:
            return chart.name
        return self.title if alone else f"{self.title}: {chart.name}"


def parse_size(text: str) -> tuple[int, int]:
    """`--size 1200x600` as (1200, 600) pixels; TetherError naming the value otherwise."""
    m = re.fullmatch(r"\s*([0-9]{2,5})\s*[xX×]\s*([0-9]{2,5})\s*", text)
    if not m or not all(MIN_SIDE <= int(g) <= MAX_SIDE for g in m.groups()):
        raise TetherError(
            f"--size {text!r}: expected WIDTHxHEIGHT in pixels, each {MIN_SIDE} to {MAX_SIDE}",
            "for example --size 1200x600",
        )
    return int(m.group(1)), int(m.group(2))


def format_of(path: str | os.PathLike[str]) -> str | None:
    """The chart format a file name asks for (`out.svg` -> "svg"), None for no suffix (a
    folder); TetherError for a suffix that is no chart format."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if not suffix:
        return None
    if suffix not in FORMATS:
        raise TetherError(
            f"{path}: charts are written as {', '.join(FORMATS)}, not {suffix!r}",
            "end the file name in .png, .svg or .pdf, or give a folder",
        )
    return suffix


def _draw(ax: Any, chart: Chart, style: Style, title: str, locator: Any) -> None:
    right = right_axis(chart)
    axes = [ax, ax.twinx()] if right is not None else [ax]
    drawn = 0
    all_x: list[float] = []
    for i, line in enumerate(chart.lines):
        xs, ys = _thin(*line.series.finite(), PNG_POINTS)
        if not xs:
            continue
        on = axes[1] if i == right else ax
        color = f"C{i % 10}"
        marker = "o" if len(xs) <= 30 else None
        on.plot(xs, ys, label=line.label, color=color, marker=marker, ms=3)
        if right is not None:
            on.set_ylabel(line.label, color=color)
        all_x += xs
        drawn += 1
    if not drawn:
        ax.text(0.5, 0.5, "no finite values", ha="center", va="center")
    if all_x and all(float(x).is_integer() for x in all_x):
        ax.xaxis.set_major_locator(locator(integer=True))
    ax.set_title(title)
    ax.set_xlabel(chart.xlabel)
    ax.grid(True, alpha=0.3)
    if drawn and style.legend:
        handles = [h for a in axes for h in a.get_legend_handles_labels()[0]]
        axes[-1].legend(handles, [h.get_label() for h in handles], loc="best", fontsize="small")


def render_file(charts: Sequence[Chart], fmt: str, style: Style | None = None) -> bytes:
    """The charts drawn into one image of format `fmt` (png, svg or pdf), one under the other,
    each `style.size` pixels."""
    figure_cls, canvas_cls, locator = _matplotlib()
    style = style or Style()
    width, height = style.size
    fig = figure_cls(figsize=(width / style.dpi, height * len(charts) / style.dpi), dpi=style.dpi)
    canvas_cls(fig)
    for n, chart in enumerate(charts, 1):
        ax = fig.add_subplot(len(charts), 1, n)
        _draw(ax, chart, style, style.title_of(chart, len(charts) == 1), locator)
    fig.tight_layout()
    buf = io.BytesIO()
    # No creation date in SVG and PDF metadata: a file says when it was drawn by its mtime.
    metadata = {"Date": None} if fmt in ("svg", "pdf") else None
    fig.savefig(buf, format=fmt, dpi=style.dpi, metadata=metadata)
    return buf.getvalue()


def save_charts(
    charts: Sequence[Chart],
    target: str | os.PathLike[str],
    fmt: str | None = None,
    style: Style | None = None,
) -> list[Path]:
    """Write the charts: into a folder (one `<chart>.<fmt>` each), or, when `target` has a
    chart suffix (`out.png`), into that one file (the charts one under the other). `fmt`
    defaults to the suffix, else png. Returns the paths written. Each file is written to a
    temporary name and renamed, so a reader never sees half an image."""
    target = Path(target)
    suffix = format_of(target)
    if suffix is not None:
        if fmt is not None and fmt != suffix:
            raise TetherError(
                f"{target}: a .{suffix} file name for {fmt} charts",
                f"end it in .{fmt}, or give a folder",
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, render_file(charts, suffix, style), durable=False)
        return [target]
    fmt = fmt or "png"
    target.mkdir(parents=True, exist_ok=True)
    paths = []
    for chart in charts:
        path = target / chart.file_name(fmt)
        atomic_write_bytes(path, render_file([chart], fmt, style), durable=False)
        paths.append(path)
    return paths


def save_pngs(
    charts: Sequence[Chart], folder: str | os.PathLike[str], *, dpi: int = 100
) -> list[Path]:
    """One PNG per chart, `<folder>/<chart>.png` (720x400 pixels at the default dpi)."""
    return save_charts(charts, Path(folder), "png", Style(dpi=dpi))


def default_png_dir(source: str | os.PathLike[str]) -> Path:
    """`<run>/plots` for a run folder, or `plots/` beside a metrics file."""
    path = Path(source)
    return (path if path.is_dir() else path.parent) / PLOTS_DIR


def run_charts(source: str | os.PathLike[str], keys: Sequence[str] | None = None) -> list[Chart]:
    """The charts of one run folder (or metrics.jsonl): one per key group."""
    series = to_series(read_metrics(source))
    if not series:
        raise TetherError(f"no metrics to plot: {metrics_path(source)} has no numeric values")
    return charts_for_run(series, keys)


def plot(
    source: str | os.PathLike[str],
    keys: Sequence[str] | None = None,
    *,
    png: bool | str | os.PathLike[str] = False,
    width: int | None = None,
    height: int | None = None,
    file: IO[str] | None = None,
) -> list[Path]:
    """Chart a run's metrics: in the terminal (printed to `file`, default stdout), or, with
    `png` (True: `<run>/plots`, or a folder), as PNG files whose paths are returned.

    `source` is a run folder or a metrics.jsonl; `keys` picks keys, groups or globs.
    """
    charts = run_charts(source, keys)
    if png is not False:
        folder = default_png_dir(source) if png is True else Path(png)
        return save_pngs(charts, folder)
    stream = file or sys.stdout
    stream.write(render_text(charts, width=width, height=height, color=use_color(stream)))
    stream.flush()
    return []
