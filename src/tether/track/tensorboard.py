"""TensorBoard roll-up: scalars from the event files a run wrote join its summary.json.

After a run ends, `rollup_into_summary` reads every `events.out.tfevents.*` file under the run
folder with TensorBoard's own reader (`EventAccumulator`, from the optional `tensorboard`
package: `pip install 'tether[tensorboard]'`) and merges the last, min and max value and the last
step of each scalar tag into `summary.json` under `metrics`, then re-indexes the run, so
`tether runs`, `tether show`, `tether compare` and `--where metrics.<tag>.last` see them.

Scalars written the TF1/PyTorch way (`simple_value`) and the TF2 way (rank-0 tensors of the
`scalars` plug-in) are both read, each at the precision the file holds: a double tensor as the
double it is, a float32 (every `simple_value`, and float32 tensors) as the shortest decimal that
reads back as the same float32 (16777216 stays 16777216, 1.0000001 stays 1.0000001, and 0.7 is
0.7, not the 0.699999988 its widening to a double would print).

When the event files sit in one folder the keys are the tags (`train/loss`); when they sit in
several (`logs/train`, `logs/val`), each key is prefixed with the folder relative to the run
folder (`logs/train/loss`), as TensorBoard names its runs.
"""

from __future__ import annotations

import logging
import math
import os
import struct
from pathlib import Path
from typing import Any

from ..fsio import atomic_write_json
from ..store.layout import SUMMARY
from ..store.safety import protected

log = logging.getLogger("tether.tensorboard")

EVENTS_PREFIX = "events.out.tfevents."
SUMMARY_KEY = "tensorboard"  # summary.json: which metric keys came from event files


def event_dirs(run_dir: Path) -> list[Path]:
    """Folders under `run_dir` that hold TensorBoard event files, sorted.

    Only inside the run folder: links to folders are not followed (os.walk's default), an
    event file that is a link leaves its folder out."""
    found: set[Path] = set()
    for folder, dirs, files in os.walk(run_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        events = [os.path.join(folder, name) for name in files if name.startswith(EVENTS_PREFIX)]
        # TensorBoard's reader reads every event file of a folder: one link among them and
        # the folder is left out, so nothing outside the run folder is read.
        if events and not any(os.path.islink(path) for path in events):
            found.add(Path(folder))
    return sorted(found)


def rollup(run_dir: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """`{key: {"last", "min", "max", "step"}}` for every scalar tag in the run's event files.

    Empty when there are no event files, or when the `tensorboard` package is not installed
    (logged at debug level). An unreadable event file is logged and left out.
    """
    run_dir = Path(run_dir)
    folders = event_dirs(run_dir)
    if not folders:
        return {}
    try:
        from tensorboard.backend.event_processing import event_accumulator
    except ImportError:
        log.debug(
            "%d TensorBoard event folder(s) in %s: not rolled up, the tensorboard package is "
            "not installed (pip install 'tether[tensorboard]')",
            len(folders),
            run_dir,
        )
        return {}
    out: dict[str, dict[str, Any]] = {}
    for folder in folders:
        rel = folder.relative_to(run_dir).as_posix()
        prefix = "" if len(folders) == 1 or rel == "." else f"{rel}/"
        try:
            series = _read_folder(event_accumulator, folder)
        except Exception as exc:  # a damaged file must not break the end of a run
            log.warning("TensorBoard events in %s not read: %s", folder, exc)
            continue
        for tag, points in series.items():
            stats = _stats(points)
            if stats is not None:
                out[prefix + tag] = stats
    return out


def _read_folder(event_accumulator: Any, folder: Path) -> dict[str, list[tuple[float, int, float]]]:
    """tag -> [(wall_time, step, value)] in the order the events were written."""
    acc = event_accumulator.EventAccumulator(
        str(folder),
        # 0 keeps every event: the default reservoir samples, and could miss the min or max.
        size_guidance={event_accumulator.SCALARS: 0, event_accumulator.TENSORS: 0},
    )
    # TensorBoard logs at INFO what is normal for a finished run ("No path found after ...");
    # under logging brought down to INFO that would reach the console. Its logger is quieted
    # while reading, unless the user gave it a level of their own.
    quiet = logging.getLogger("tensorboard")
    unset = quiet.level == logging.NOTSET
    if unset:
        quiet.setLevel(logging.WARNING)
    try:
        acc.Reload()
    finally:
        if unset:
            quiet.setLevel(logging.NOTSET)
    tags = acc.Tags()
    series: dict[str, list[tuple[float, int, float]]] = {}
    for tag in tags.get("scalars", []):
        series[tag] = [(e.wall_time, int(e.step), _f32(e.value)) for e in acc.Scalars(tag)]
    tensor_tags = tags.get("tensors", [])
    if tensor_tags:
        from tensorboard.util import tensor_util

        for tag in tensor_tags:
            if tag in series:
                continue
            try:
                plugin = acc.SummaryMetadata(tag).plugin_data.plugin_name
            except Exception:
                plugin = ""
            if plugin != "scalars":
                continue
            points = []
            for e in acc.Tensors(tag):
                value = tensor_util.make_ndarray(e.tensor_proto)
                if value.ndim == 0:
                    points.append((e.wall_time, int(e.step), _number(value)))
            series[tag] = points
    return series


def _f32(value: Any) -> float:
    """A float32 as the shortest decimal that reads back as the same float32.

    Seven significant digits are not always enough (16777217 and 16777216 are one float32
    apart from their neighbours only at the eighth), nine always are; the fewest that round-trip
    give the decimal the value was written from (0.7, not 0.699999988)."""
    number = float(value)
    if not math.isfinite(number):
        return number
    exact = struct.pack("<f", number)
    for digits in range(6, 10):
        candidate = float(f"{number:.{digits}g}")
        if struct.pack("<f", candidate) == exact:
            return candidate
    return number  # pragma: no cover - nine digits always round-trip a float32


def _number(value: Any) -> float:
    """A rank-0 tensor's value as a Python float, at the precision of its dtype: doubles (and
    64-bit integers) as they are, narrower floats as their shortest round-trip decimal."""
    kind, size = value.dtype.kind, value.dtype.itemsize
    if kind == "f" and size == 4:
        return _f32(value)
    if kind == "f" and size < 4:
        # numpy prints a float16 (or bfloat16) scalar as its shortest round-trip decimal
        return float(str(value[()]))
    return float(value)


def _stats(points: list[tuple[float, int, float]]) -> dict[str, Any] | None:
    finite = [p for p in points if math.isfinite(p[2])]
    if not finite:
        return None
    values = [p[2] for p in finite]
    _, step, last = finite[-1]
    return {"last": last, "min": min(values), "max": max(values), "step": step}


def merge_into_summary(
    summary: dict[str, Any], rolled: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """A copy of `summary` with `rolled` merged into its metrics.

    Keys the run logged itself (`run.log_metrics`) win over event files of the same name; keys
    an earlier roll-up wrote are replaced, so rolling up twice gives the same summary.
    """
    out = dict(summary)
    metrics = dict(out.get("metrics") or {})
    previous = set((out.get(SUMMARY_KEY) or {}).get("keys") or [])
    merged = []
    for key, stats in sorted(rolled.items()):
        if key in metrics and key not in previous:
            log.debug("TensorBoard tag %s left out: the run logged %s itself", key, key)
            continue
        metrics[key] = dict(stats)
        merged.append(key)
    for stale in previous - set(merged):
        metrics.pop(stale, None)  # a tag an earlier roll-up saw and the files no longer have
    out["metrics"] = metrics
    if merged:
        out[SUMMARY_KEY] = {"keys": merged}
    else:
        out.pop(SUMMARY_KEY, None)
    return out


def rollup_into_summary(store: Any, record: Any) -> dict[str, dict[str, Any]]:
    """Roll the run's TensorBoard scalars into its summary.json and index row.

    `store` is a `tether.store.Store`, `record` the run's `RunRecord` (updated in place). Meant
    to be called when a run ends; it never raises for a problem with the event files. Returns
    the scalars that were merged (empty when there was nothing to do).
    """
    refused = protected(Path(record.dir), store.root)
    if refused is not None:  # a run recorded before save_dir was checked: never walk `/`
        log.warning("TensorBoard roll-up of %s skipped: it is %s", record.dir, refused)
        return {}
    try:
        rolled = rollup(record.dir)
    except Exception as exc:
        log.warning("TensorBoard roll-up of %s failed: %s", record.dir, exc)
        return {}
    if not rolled and SUMMARY_KEY not in (record.summary or {}):
        return {}
    summary = merge_into_summary(dict(record.summary or {}), rolled)
    if summary == record.summary:
        return rolled
    with store.changing(record, "summary"):
        atomic_write_json(Path(record.dir) / SUMMARY, summary)
        record.summary = summary
    return {
        k: v for k, v in rolled.items() if k in (summary.get(SUMMARY_KEY) or {}).get("keys", [])
    }
