"""The values a run is queried by: its config and flags as dotted keys, its summary metrics,
data digests, commit, op version and namespace, and effective project (what `--where` and
the index's `vals` table see)."""

from __future__ import annotations

import json
from typing import Any

from .records import RunRecord


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings to dotted keys; lists stay whole (stored as JSON text)."""
    out: dict[str, Any] = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, dict) and value:
                out.update(flatten(value, path))
            else:
                out[path] = value
    elif prefix:
        out[prefix] = obj
    return out


def value_pair(value: Any) -> tuple[float | None, str | None]:
    """A value as the index stores it: (number, text)."""
    if isinstance(value, bool):
        return float(value), "true" if value else "false"
    if isinstance(value, (int, float)):
        return float(value), None
    if value is None:
        return None, None
    if isinstance(value, str):
        return None, value
    return None, json.dumps(value, sort_keys=True, default=str)


def metric_values(summary: dict[str, Any]) -> dict[str, Any]:
    """The `metrics.<key>.<stat>` values of a run's summary.json."""
    values: dict[str, Any] = {}
    for key, stats in (summary.get("metrics") or {}).items():
        if isinstance(stats, dict):
            for stat in ("last", "min", "max", "step"):
                if stat in stats:
                    values[f"metrics.{key}.{stat}"] = stats[stat]
    return values


def record_values(record: RunRecord) -> dict[str, Any]:
    values = {f"config.{k}": v for k, v in flatten(record.lock.config).items()}
    values.update({f"flags.{k}": v for k, v in flatten(record.lock.flags).items()})
    values.update(metric_values(record.summary))
    for data in record.lock.data:
        values[f"data.{data.path}"] = data.digest
    for source in record.lock.sources:
        if source.commit:
            values.setdefault("source.commit", source.commit)
    op_meta = record.lock.env.get("op")  # a gage op's version and namespace (ops/exec.py)
    if isinstance(op_meta, dict):
        for key in ("version", "namespace"):
            value = op_meta.get(key)
            if isinstance(value, str):
                if key == "version" and value.isdigit():
                    value = int(value)  # `version = 2` compares numbers
                values[key] = value
    # The effective project: an adoption (attrs/) wins over the id run.lock was written with.
    project = record.attrs.project or record.lock.project_id
    if project:
        values["project"] = str(project).strip().lower()  # as written in tether.toml: any case
    return values
