"""The `jsonl` sink: rows appended to a JSON-lines file, one object per line.

Every History writes its metrics.jsonl through this sink (it is always on); registered as a sink
it also copies the rows into another file (`JsonlSink(path=...)`). A batch goes out in one
`write` call, so a process killed mid-flush leaves at most one torn last line, which readers skip
(`tether.track.metrics_file.read_metrics`). A file that ends in a torn line from an earlier writer
gets a newline first, so the new rows start on a line of their own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from .base import Row, Sink, SinkContext

encode_json = json.JSONEncoder().encode  # the C encoder; NaN and inf as NaN / Infinity


def dump_rows(rows: Sequence[Row], safe_split: bool = True) -> str:
    """The rows as JSON lines, each ending in a newline.

    With `safe_split` (no key holds a `}`), the whole batch is encoded in one call and split
    between objects, which is several times faster than one `json.dumps` per row.
    """
    if not rows:
        return ""
    if safe_split:
        return encode_json(rows)[1:-1].replace("}, {", "}\n{") + "\n"
    return "\n".join(map(encode_json, rows)) + "\n"


class JsonlSink(Sink):
    name = "jsonl"

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._fh: IO[str] | None = None
        self.safe_split = True  # History clears it when a key holds a "}"

    def open(self, ctx: SinkContext) -> int | None:
        if self.path is None:
            if ctx.run_dir is None:
                raise ValueError("the jsonl sink needs a path when there is no run folder")
            self.path = ctx.run_dir / "metrics-copy.jsonl"
        return 0 if not self.path.exists() else None

    def _file(self) -> IO[str]:
        if self._fh is None:
            assert self.path is not None
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - closed in close()
            size = fh.tell()
            if size:
                with open(self.path, "rb") as raw:
                    raw.seek(size - 1)
                    if raw.read(1) != b"\n":
                        fh.write("\n")  # a torn line left by a killed writer stays on its own
            self._fh = fh
        return self._fh

    def write(self, rows: Sequence[Row], first: int = 0) -> None:
        if rows:
            self.write_text(dump_rows(rows, self.safe_split))

    def write_text(self, text: str) -> None:
        """Append lines already encoded (one `write` call, so at most one torn line)."""
        fh = self._file()
        fh.write(text)
        fh.flush()

    def close(self, status: str | None = None, ctx: SinkContext | None = None) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def info(self) -> dict[str, Any]:
        return {"path": str(self.path)} if self.path is not None else {}
