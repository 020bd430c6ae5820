"""Summary statistics of metric rows: last, min, max and step per key, folded batch by batch
(what summary.json and the index show), with non-finite values flagged once."""

from __future__ import annotations

import logging
import math
from typing import Any

from .sinks.base import Row

log = logging.getLogger("tether.history")


def fold_stats(
    stats: dict[str, dict[str, Any]],
    warned: set[str],
    rows: list[Row],
    columns: dict[tuple[str, ...], list[Any]],
) -> set[str]:
    """Fold a batch into last/min/max/step; `columns`: its values by key sequence."""
    found: dict[str, list[Any]] = {}
    for keys, cols in columns.items():
        for key, col in zip(keys, cols, strict=True):
            if key != "step" and key != "t":
                found.setdefault(key, []).append(col)
    last_row = rows[-1]
    for key, cols in found.items():
        last = last_row if key in last_row else next(r for r in reversed(rows) if key in r)
        nonfinite = False
        los, his = [], []
        for col in cols:
            try:
                finite = math.isfinite(sum(col))
            except OverflowError:
                finite = False
            values = col
            if not finite:
                nonfinite = nonfinite or any(not math.isfinite(v) for v in col)
                values = [v for v in col if v == v]  # NaN out; infinities count
            if values:
                los.append(min(values))
                his.append(max(values))
        lo = min(los) if los else None
        hi = max(his) if his else None
        entry = stats.get(key)
        if entry is None:
            entry = stats[key] = {"last": last[key], "min": lo, "max": hi}
        else:
            entry["last"] = last[key]
            if lo is not None:
                old = entry.get("min")
                entry["min"] = lo if old is None else min(old, lo)
                old = entry.get("max")
                entry["max"] = hi if old is None else max(old, hi)
        if "step" in last:
            entry["step"] = last["step"]
        if nonfinite:
            entry["nonfinite"] = True
            if key not in warned:
                warned.add(key)
                bad = next(r for r in rows if key in r and not math.isfinite(r[key]))
                log.warning(
                    "metric %r is %s%s (recorded and flagged in summary.json)",
                    key,
                    bad[key],
                    f" at step {bad['step']}" if "step" in bad else "",
                )
    return set(found)
