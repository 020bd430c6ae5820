"""The run this code executes in, as a ContextVar, and the run contract's variables.

session/ sets it while a run is open; track/ and the decorators only read it. It lives at the
bottom of the package so that nothing which needs "the current run" has to import session/.

The run contract: a process tether starts for a run gets `run_env(...)` in its environment;
`@tether.experiment`, `start_run`, `History` and `open_run` there attach to that run
(tether.session.attach, which registers itself here with `set_attacher` so that `History`, in
track/, finds the attached run through `current_or_attached_run` without importing session/).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any

# The run contract: every process tether starts for a run (an operation's exec, a batch trial,
# a Slurm/PBS task, each rank of `tether launch`) gets these, and `@tether.experiment`,
# `start_run`, `History` and `open_run` there attach to that run instead of making one.
RUN_DIR_ENV = "TETHER_RUN_DIR"
RUN_ID_ENV = "TETHER_RUN_ID"
RUNS_ENV = "TETHER_RUNS"
RUN_ENV_KEYS = (RUN_DIR_ENV, RUN_ID_ENV, RUNS_ENV)
LAUNCH_ID_ENV = "TETHER_LAUNCH_ID"  # set by `tether launch` for its ranks: the launch run's id


def run_env(
    run_dir: str | os.PathLike[str], run_id: str, runs_root: str | os.PathLike[str]
) -> dict[str, str]:
    """The variables a process started for the run in `run_dir` gets (absolute paths)."""
    return {
        RUN_DIR_ENV: os.path.abspath(os.fspath(run_dir)),
        RUN_ID_ENV: str(run_id),
        RUNS_ENV: os.path.abspath(os.fspath(runs_root)),
    }


def run_env_of(environ: Mapping[str, str] | None = None) -> dict[str, str] | None:
    """The run contract's variables in `environ` (default os.environ), or None when
    `TETHER_RUN_DIR` is not set (or empty)."""
    env = os.environ if environ is None else environ
    if not env.get(RUN_DIR_ENV):
        return None
    return {k: env[k] for k in RUN_ENV_KEYS if env.get(k)}


def consume_run_env(environ: MutableMapping[str, str] | None = None) -> None:
    """Remove `TETHER_RUN_DIR` and `TETHER_RUN_ID` (a process that attached consumes them, so
    the processes it starts do not attach again). `TETHER_RUNS` stays: it names the runs root,
    where the runs those processes make belong too."""
    env = os.environ if environ is None else environ
    for key in (RUN_DIR_ENV, RUN_ID_ENV):
        env.pop(key, None)


_attacher: Callable[[], Any] | None = None


def set_attacher(attach: Callable[[], Any] | None) -> None:
    """Register what attaches this process to the run it was started for (session/ does)."""
    global _attacher
    _attacher = attach


def current_or_attached_run() -> Any:
    """The current run; else, in a process tether started for a run, that run (attached on
    first use by the registered attacher); else None."""
    run = _current_run.get()
    if run is None and _attacher is not None:
        run = _attacher()
    return run


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
