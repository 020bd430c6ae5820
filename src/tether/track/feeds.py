"""Which sinks a run's writer (track/writer.py's Core) feeds: those TETHER_SINKS names for every
run of the process, and those added to one run."""

from __future__ import annotations

import os
from typing import Any

from .sinks.base import Sink, SinkRunner, load_sink
from .sinks.jsonl import JsonlSink
from .writer import Core


def env_sinks() -> list[str]:
    """Sinks every run of this process gets: the names in TETHER_SINKS (comma-separated)."""
    return [s.strip() for s in os.environ.get("TETHER_SINKS", "").split(",") if s.strip()]


def add_sink(core: Core, spec: str | Sink, **options: Any) -> Sink:
    """Send the core's rows to this sink too (one sink of a kind per core)."""
    sink = load_sink(spec, **options)
    for runner in core.runners:
        if runner.name == sink.name and not runner.failed:
            return runner.sink  # one sink of a kind per run
    if isinstance(sink, JsonlSink) and not core.safe_split:
        sink.safe_split = False
    core.runners.append(SinkRunner(sink))
    core.dirty = True
    core.ensure_thread()
    core._wake.set()
    return sink
