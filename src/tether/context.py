"""The run this code executes in, as a ContextVar.

session/ sets it while a run is open; track/ and the decorators only read it. It lives at the
bottom of the package so that nothing which needs "the current run" has to import session/.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

_current_run: contextvars.ContextVar[Any] = contextvars.ContextVar("tether_run", default=None)


def current_run() -> Any:
    """The run this code executes in (a `tether.Run`), if any."""
    return _current_run.get()


@contextlib.contextmanager
def running(run: Any) -> Iterator[Any]:
    """Make `run` the current run inside the block."""
    token = _current_run.set(run)
    try:
        yield run
    finally:
        _current_run.reset(token)


def enter(run: Any) -> contextvars.Token[Any]:
    """Make `run` current until `leave(token)` (for code whose block is not one `with`)."""
    return _current_run.set(run)


def leave(token: contextvars.Token[Any]) -> None:
    _current_run.reset(token)
