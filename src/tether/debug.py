"""`unsafe_debug`: with TETHER_DEBUG=1, an exception drops into a post-mortem debugger."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def debug_enabled() -> bool:
    return os.environ.get("TETHER_DEBUG", "") not in ("", "0", "false", "no")


def post_mortem(exc: BaseException) -> None:
    """Open pdb on the frame that raised (only for real errors, not Ctrl-C or SystemExit)."""
    if not debug_enabled() or isinstance(exc, (KeyboardInterrupt, SystemExit)):
        return
    import pdb  # noqa: PLC0415 (only after a crash, under unsafe_debug)
    import traceback  # noqa: PLC0415 (only after a crash)

    traceback.print_exception(exc, file=sys.stderr)
    print("TETHER_DEBUG=1: entering the post-mortem debugger (q to quit)", file=sys.stderr)
    pdb.post_mortem(exc.__traceback__)


def unsafe_debug(fn: F) -> F:
    """Do nothing unless TETHER_DEBUG=1; then an exception opens pdb where it was raised."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            post_mortem(exc)
            raise

    return wrapper  # type: ignore[return-value]
