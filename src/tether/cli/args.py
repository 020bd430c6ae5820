"""Shared argument types: RUN with shell completion from the index."""

from __future__ import annotations

from typing import Any

import click
from click.shell_completion import CompletionItem


def complete_runs(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    try:
        from ..store import open_store

        root = ctx.find_root().params.get("runs_dir")
        rows = open_store(root).list(limit=200)
    except Exception:
        return []
    out = []
    for row in rows:
        if row.id.startswith(incomplete):
            out.append(CompletionItem(row.id[:13], help=f"{row.name} {row.status}"))
        elif row.name.startswith(incomplete):
            out.append(CompletionItem(row.name, help=row.id[:13]))
    return out


def run_argument(name: str = "run", **kwargs: Any) -> Any:
    return click.argument(name, shell_complete=complete_runs, **kwargs)
