"""The progress bar of a batch on an executor (rich, loaded when the bar is shown): done /
running / failed, and queued under a scheduler, redrawn from the task pool a few times a
second. This and tether.cli are the only modules that use rich."""

from __future__ import annotations

import os
import sys
from typing import Any


class ProgressDisplay:
    """A rich progress bar of the pool: done / running / failed (and queued under a
    scheduler), redrawn from the pool a few times a second; off when stderr is not a terminal
    (the summary line is printed either way)."""

    def __init__(
        self, pool: Any, label: str, *, scheduler: bool, enabled: bool, console: Any = None
    ) -> None:
        self.pool = pool
        self.label = label
        self.scheduler = scheduler
        self.console = console
        self.enabled = enabled and (console is not None or _is_terminal())
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> ProgressDisplay:
        if not self.enabled:
            return self
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[states]}"),
            TimeElapsedColumn(),
            console=self.console or Console(stderr=True),
            transient=False,
            auto_refresh=True,
            refresh_per_second=5,
        )
        self._progress.__enter__()
        counts = self.pool.counts()
        self._task = self._progress.add_task(
            self.label, total=counts["total"], completed=counts["completed"], states=""
        )
        return self

    def tick(self) -> None:
        if self._progress is None:
            return
        c = self.pool.counts()
        states = [f"[cyan]{c['running']} running[/cyan]"]
        if self.scheduler:
            states.insert(0, f"[yellow]{c['pending']} queued[/yellow]")
        states.append(f"[red]{c['failed']} failed[/red]" if c["failed"] else "0 failed")
        self._progress.update(
            self._task, completed=c["completed"] + c["failed"], states=" · ".join(states)
        )

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self.tick()
            self._progress.__exit__(None, None, None)


def _is_terminal() -> bool:
    try:
        return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False
