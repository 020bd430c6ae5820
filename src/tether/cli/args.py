"""Shared argument types: RUN with shell completion from the index."""

from __future__ import annotations

from typing import Any

import click

# One owner: completion.py (names listed once, unique id prefixes); imported here for commands.
from .completion import complete_runs


def run_argument(name: str = "run", **kwargs: Any) -> Any:
    return click.argument(name, shell_complete=complete_runs, **kwargs)
