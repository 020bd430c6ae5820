"""The one transfer progress bar of the command line (archive export/import, push, pull): bytes
moved with an optional count beside them, drawn by rich on stderr at a terminal only, and only
once the work has lasted half a second (a quick transfer draws nothing)."""

from __future__ import annotations

import sys
import time
from typing import Any

DELAY_S = 0.5


class ByteBar:
    def __init__(self, label: str, *, enabled: bool = True, total: int = 0) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.enabled = enabled and sys.stderr.isatty()
        self.started = time.monotonic()
        self._progress: Any = None
        self._task: Any = None

    def advance(self, nbytes: int) -> None:
        """`nbytes` more of `total` (the archive's callback)."""
        self.done += nbytes
        self.update(self.done, self.total)

    def update(self, done: int, total: int, note: str = "") -> None:
        """`done` of `total` bytes; `note` (e.g. "3/10 files") beside the bar."""
        if not self.enabled or total <= 0:
            return
        if self._progress is None:
            if time.monotonic() - self.started < DELAY_S:
                return
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn(self.label),
                BarColumn(),
                DownloadColumn(),
                TextColumn("{task.fields[note]}"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=total, note="")
        self._progress.update(self._task, completed=done, total=total, note=note)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def human_size(n: float) -> str:
    """1234567 -> "1.2 MB" (decimal units, as rclone and du -h --si print them)."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover
