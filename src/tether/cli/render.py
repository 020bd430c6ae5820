"""Formatting shared by listing commands: relative times, status colours, JSON/CSV rows."""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import datetime, timezone
from typing import Any

from ..clock import parse_iso
from ..ids import short_ids
from ..store.records import IndexRow

STATUS_STYLE = {
    "completed": "green",
    "running": "cyan",
    "pending": "blue",
    "queued": "blue",
    "failed": "red",
    "terminated": "yellow",
    "unknown": "magenta",
}


def relative(text: str | None, now: datetime | None = None) -> str:
    when = parse_iso(text)
    if when is None:
        return ""
    now = now or datetime.now(timezone.utc)
    seconds = int((now - when).total_seconds())
    if seconds < 0:
        return "just now"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"


def duration(start: str | None, stop: str | None) -> str:
    a, b = parse_iso(start), parse_iso(stop)
    if a is None:
        return ""
    b = b or datetime.now(timezone.utc)
    seconds = (b - a).total_seconds()
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{sec:02d}" if hours else f"{minutes}:{sec:02d}"


def row_dict(row: IndexRow, index: int, short: str) -> dict[str, Any]:
    return {
        "index": index,
        "id": row.id,
        "short_id": short,
        "name": row.name,
        "status": row.effective_status(),
        "created": row.created,
        "started": row.started,
        "stopped": row.stopped,
        "host": row.host,
        "pid": row.pid,
        "exit_code": row.exit_code,
        "label": row.label,
        "tags": row.tags,
        "parent": row.parent,
        "dir": row.dir,
        "metrics": row.metrics,
    }


def listing(rows: list[IndexRow], all_ids: list[str] | None = None) -> list[dict[str, Any]]:
    shorts = short_ids(all_ids if all_ids is not None else [r.id for r in rows])
    return [row_dict(r, i, shorts.get(r.id, r.id[:13])) for i, r in enumerate(rows, 1)]


def to_json(items: list[dict[str, Any]]) -> str:
    return json.dumps(items, indent=2, default=str)


def to_csv(items: list[dict[str, Any]], extra: list[str] | None = None) -> str:
    """CSV of a listing; `extra` names the --columns (in `item["columns"]`) to append, except
    those the listing already has (`metrics.loss` when the run has a loss, `host`, ...)."""
    metric_keys = sorted({k for it in items for k in it["metrics"]})
    skip = ("metrics", "tags", "columns")
    base = [k for k in (items[0] if items else row_dict_keys()) if k not in skip]
    header = [*base, "tags", *(f"metrics.{k}" for k in metric_keys)]
    added = [name for name in dict.fromkeys(extra or []) if name not in header and name != "op"]
    header += added
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for it in items:
        writer.writerow(
            [
                *("" if it[k] is None else it[k] for k in base),
                ";".join(it["tags"]),
                *(it["metrics"].get(k, "") for k in metric_keys),
                *(csv_cell(it["columns"].get(name)) for name in added),
            ]
        )
    return buf.getvalue()


def csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ";".join(str(v) for v in value)
    return value


def format_cell(value: Any) -> str:
    """A value of a --columns column in the table: numbers like metrics, lists joined."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return format_metric(float(value)) if math.isfinite(value) else str(value)
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)


def row_dict_keys() -> list[str]:
    dummy = IndexRow("", "", "", "", None, None, None, None, None, None, "")
    return list(row_dict(dummy, 0, "").keys())


def format_metric(value: float) -> str:
    """A number for a table: 4 significant digits (`0.1505`, `12.35`), but every digit of the
    integer part below a million (`12346`, not `1.235e+04`); integers whole."""
    if not math.isfinite(value):
        return str(value)
    if value == int(value) and abs(value) < 1e9:
        return str(int(value))
    if 1000 <= abs(value) < 1e6:
        return f"{value:.0f}"
    return f"{value:.4g}"
