"""The `tensorboard` sink: rows as TensorBoard scalars in `<run folder>/tensorboard/`.

Written with the event-file writer of the `tensorboard` package (no torch or TensorFlow
needed); `tensorboard --logdir <run folder>` shows them. Values are float32 `simple_value`s,
TensorBoard's own scalars: its fast loader (the Rust data server, used by default when
installed) shows no double tensors, not even those torch writes with `double_precision=True`.
The run's exact values are in metrics.jsonl and summary.json. The run-end roll-up of event files
(`tether.track.tensorboard`) leaves these keys alone, since the run logged them itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .base import Row, Sink, SinkContext

FOLDER = "tensorboard"


class TensorboardSink(Sink):
    name = "tensorboard"

    def __init__(self, logdir: str | None = None) -> None:
        self.logdir = Path(logdir) if logdir is not None else None
        self.writer: Any = None

    def open(self, ctx: SinkContext) -> int | None:
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        if self.logdir is None:
            base = ctx.run_dir or ctx.runs_root or Path.cwd()
            self.logdir = Path(base) / FOLDER
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.writer = EventFileWriter(str(self.logdir))
        return int(ctx.state.get("rows") or 0) if ctx.state.get("logdir") == str(self.logdir) else 0

    def write(self, rows: Sequence[Row], first: int) -> None:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary

        for i, row in enumerate(rows):
            values = [
                Summary.Value(tag=k, simple_value=float(v))
                for k, v in row.items()
                if k != "step" and k != "t"
            ]
            event = Event(
                wall_time=float(row.get("t", 0.0)),
                step=int(row.get("step", first + i)),
                summary=Summary(value=values),
            )
            self.writer.add_event(event)
        self.writer.flush()

    def close(self, status: str | None, ctx: SinkContext) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def info(self) -> dict[str, Any]:
        return {"logdir": str(self.logdir)} if self.logdir is not None else {}
