"""The handle a running experiment gets: its folder, config, upstream stages and metrics."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from .store import RunRecord, Store
from .store.layout import METRICS, SUMMARY


class Run:
    """The handle a running experiment gets: its folder, config and a few record helpers."""

    def __init__(
        self,
        store: Store,
        record: RunRecord,
        cfg: Any,
        stages: dict[str, Path] | None = None,
    ) -> None:
        self.store = store
        self.record = record
        self.cfg = cfg
        self.stages: dict[str, Path] = dict(stages or {})
        self._summary: dict[str, dict[str, Any]] = {}
        self._metrics_fh: Any = None
        self._last_flush = 0.0
        self._lock = threading.Lock()

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def dir(self) -> Path:
        return self.record.dir

    @property
    def name(self) -> str:
        return self.record.name

    def path(self, *parts: str) -> Path:
        return self.dir.joinpath(*parts)

    def stage(self, name: str) -> Path:
        """The folder of the upstream run recorded under `name`."""
        try:
            return self.stages[name]
        except KeyError:
            from .errors import TetherError

            known = ", ".join(sorted(self.stages)) or "none"
            raise TetherError(f"this run has no stage {name!r} (stages: {known})")

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, name={self.name!r}, dir={str(self.dir)!r})"

    # -- attributes -------------------------------------------------------------------------
    def set_label(self, label: str) -> None:
        self.store.add_attr(self.record, "label", label)

    def add_tag(self, *tags: str) -> None:
        for tag in tags:
            self.store.add_attr(self.record, "tag", tag)

    def note(self, text: str) -> None:
        self.store.add_attr(self.record, "note", text)

    # -- metrics ----------------------------------------------------------------------------
    def log_metrics(self, values: dict[str, Any], step: int | None = None) -> None:
        """Append one row to metrics.jsonl and keep last/min/max per key for summary.json."""
        row: dict[str, Any] = {"t": round(time.time(), 3)}
        if step is not None:
            row["step"] = int(step)
        with self._lock:
            for key, value in values.items():
                number = float(value.item() if hasattr(value, "item") else value)
                row[key] = number
                stats = self._summary.get(key)
                if stats is None:
                    self._summary[key] = {"last": number, "min": number, "max": number}
                else:
                    stats["last"] = number
                    stats["min"] = min(stats["min"], number)
                    stats["max"] = max(stats["max"], number)
                if step is not None:
                    self._summary[key]["step"] = int(step)
            if self._metrics_fh is None:
                self._metrics_fh = open(self.path(METRICS), "a", encoding="utf-8")  # noqa: SIM115
            self._metrics_fh.write(json.dumps(row) + "\n")
            self._metrics_fh.flush()
            if time.monotonic() - self._last_flush > 2.0:
                self._flush_summary()

    def _flush_summary(self) -> None:
        from .fsio import atomic_write_json

        self._last_flush = time.monotonic()
        if not self._summary:
            return
        summary = dict(self.record.summary)
        summary["metrics"] = {k: dict(v) for k, v in self._summary.items()}
        atomic_write_json(self.path(SUMMARY), summary, durable=False)
        self.record.summary = summary
        self.store.index.upsert(self.record)

    def flush(self) -> None:
        with self._lock:
            self._flush_summary()
            if self._metrics_fh is not None:
                self._metrics_fh.flush()

    def _close(self) -> None:
        self.flush()
        if self._metrics_fh is not None:
            self._metrics_fh.close()
            self._metrics_fh = None
