"""Metric sinks: where History sends rows besides metrics.jsonl (entry points `tether.sinks`)."""

from .base import GROUP, Sink, SinkContext, SinkRunner, describe, load_sink, sink_names

__all__ = ["GROUP", "Sink", "SinkContext", "SinkRunner", "describe", "load_sink", "sink_names"]
