"""The console lines of a `tether run` batch run in this process (tether.batches.ops.run_batch
calls them as its `TrialReport`): the batch, each trial as it starts and ends (status colour,
run, last metrics, seconds), the summary."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape

from .render import STATUS_STYLE


class TrialLines:
    def __init__(self, store: Any, console: Any = None) -> None:
        self.store = store
        self.console = console or Console(stderr=True, highlight=False, soft_wrap=True)

    def began(self, parent_id: str, batch: Any, op_name: str) -> None:
        total = batch.total
        self.console.print(
            f"[bold]batch[/bold] {parent_id[:13]}: {total} trial"
            f"{'s' if total != 1 else ''} of {escape(op_name)} ({batch.mode})"
        )
        for text in batch.notes:
            self.console.print(f"[dim]{escape(text)}[/dim]")

    def trial(self, row: Any, total: int, desc: str) -> None:
        self.console.print(f"[bold cyan][{row.index}/{total}][/bold cyan] {escape(desc)}")

    def result(self, row: Any, total: int) -> None:
        style = STATUS_STYLE.get(row.status, "yellow")
        parts = [f"[bold cyan][{row.index}/{total}][/bold cyan] [{style}]{row.status}[/{style}]"]
        if row.run:
            parts.append(row.run[:13])
        if row.twin:
            parts.append(f"(--needed: same as {row.twin[:13]})")
        if row.status == "failed" and row.exit_code:
            parts.append(f"exit {row.exit_code}")
        if row.error:
            parts.append(escape(row.error))
        metrics = _last_metrics(self.store, row.run) if row.run else {}
        if metrics:
            parts.append(" ".join(f"{escape(k)}={v:.4g}" for k, v in list(metrics.items())[:4]))
        if row.seconds is not None:
            parts.append(f"[dim]{row.seconds:.1f}s[/dim]")
        self.console.print("  ".join(parts))

    def done(self, counts: dict[str, int]) -> None:
        parts = [f"{counts['completed']} completed"]
        for key in ("failed", "skipped", "terminated"):
            if counts[key]:
                parts.append(f"{counts[key]} {key}")
        style = "red" if counts["failed"] else "green"
        self.console.print(f"[{style}]batch done[/{style}]: " + ", ".join(parts))

    def stopped(self, counts: dict[str, int]) -> None:
        self.console.print(
            f"[yellow]batch stopped[/yellow]: {counts['completed']} completed, "
            f"{counts['failed']} failed, {counts['terminated']} terminated, "
            f"{counts['not_started']} not started"
        )


def _last_metrics(store: Any, run_id: str) -> dict[str, float]:
    try:
        summary = store.load(run_id).summary
    except Exception:
        return {}
    metrics = summary.get("metrics") or {}
    return {k: float(v["last"]) for k, v in metrics.items() if isinstance(v, dict) and "last" in v}
