"""What a run is called when nobody named it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def function_run_name(func: Callable[..., Any]) -> str:
    """`main` says nothing: name the run after its script (train.py -> train) instead."""
    if func.__name__ != "main":
        return func.__name__
    module = sys.modules.get(func.__module__)
    path = getattr(module, "__file__", None)
    return Path(path).stem if path else func.__name__


def default_name() -> str:
    """The stem of the script this process runs, else `run`."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    return Path(path).stem if path else "run"
