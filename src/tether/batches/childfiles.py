"""The files of a child run, written with the fewest system calls and the least Python.

A batch of short tasks spends most of its time on each child's records (run.lock, state.json),
not on the tasks, so these are written by hand rather than through the general helpers:

* `write_file`: a temporary file in the run folder renamed over the target (atomic, as
  `tether.fsio.atomic_write_bytes`, and under the same temporary names, so a crash's leftover is
  cleaned by the next writer's sweep), but four system calls (open, write, close, rename): no
  fsync (the worker syncs in bulk, children.Recorder), no `fdopen` (its fstat, ioctl and
  lseek), no random name (a per-process counter), and no sweep of the folder for orphans, which
  the runner does once for a folder it did not make itself (a new folder has none);
* `yaml_line`: one `key: value` line of run.lock for a scalar (an id, a time, a seed, a path),
  the same text PyYAML renders, without a round trip through its dumper (~15 us a call);
* `AttemptStamp`: what `tether.store.state.start_attempt` records of this process (host, pid,
  its start time, the scheduler job), read once per worker rather than once per task.
"""

from __future__ import annotations

import itertools
import os
import re
from typing import Any

from ..clock import now_iso
from ..store.state import Attempt, RunState, hostname, proc_start_time, scheduler_job

_counter = itertools.count()


def write_file(path: str, data: bytes) -> None:
    """Replace the file at `path` atomically, not durably (see the module doc)."""
    folder, name = os.path.split(path)
    # `.<name>.<pid>.<12 hex>.tmp`: the name tether.fsio sweeps after a crash.
    tmp = f"{folder}/.{name}.{os.getpid()}.{next(_counter) & 0xFFFFFFFFFFFF:012x}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# -- run.lock lines ---------------------------------------------------------------------------
# A string of these characters, not starting with `.` or `-`, is rendered as it is (plain) when
# YAML would read it back as a string, else in single quotes (`'123'`, `'true'`, a time).
_PLAIN = re.compile(r"[A-Za-z0-9_/][A-Za-z0-9_./-]{0,199}")
_QUOTABLE = re.compile(r"[A-Za-z0-9_/][A-Za-z0-9_./:+-]{0,199}")
_resolver: Any = None
_STR_TAG = "tag:yaml.org,2002:str"


def _reads_as_str(text: str) -> bool:
    global _resolver
    if _resolver is None:
        import yaml  # heavy: PyYAML, loaded with the first child's run.lock anyway

        _resolver = (yaml.resolver.Resolver(), yaml.ScalarNode)
    resolver, node = _resolver
    return bool(resolver.resolve(node, text, (True, False)) == _STR_TAG)


def yaml_scalar(value: Any) -> str | None:
    """`value` as PyYAML's safe dumper writes it in block style, for the scalars that are cheap
    to get right (ints, bools, floats without an exponent, strings of path-like characters);
    None for anything else (the caller renders it with PyYAML)."""
    kind = type(value)
    if kind is str:
        if _PLAIN.fullmatch(value) and _reads_as_str(value):
            return value
        if _QUOTABLE.fullmatch(value) and not _reads_as_str(value):
            return f"'{value}'"
        return None
    if kind is int:
        return str(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is float:
        text = repr(value)
        # PyYAML writes repr's text unless it has an exponent (`1e-05` -> `1.0e-05`), or is
        # nan or inf (`.nan`, `.inf`).
        return text if "e" not in text and "n" not in text else None
    if value is None:
        return "null"
    return None


def yaml_line(key: str, value: Any, indent: str = "") -> str | None:
    """`<indent><key>: <value>\\n` as PyYAML writes a block mapping's entry; None when `key` or
    `value` is not one `yaml_scalar` renders."""
    if type(key) is not str or not _PLAIN.fullmatch(key) or not _reads_as_str(key):
        return None
    text = yaml_scalar(value)
    return None if text is None else f"{indent}{key}: {text}\n"


# -- state.json -------------------------------------------------------------------------------
class AttemptStamp:
    """This process as `start_attempt` records it, read once (host, pid, the process's start
    time from /proc, the scheduler job): the state of a child run starting its first attempt."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.host = hostname()
        self.proc_start = proc_start_time(self.pid)
        self.scheduler, self.job_id = scheduler_job()

    def first_attempt(self, status: str = "running") -> RunState:
        """`start_attempt(None, status=status)`, without its system calls."""
        now = now_iso()
        attempt = Attempt(
            host=self.host,
            pid=self.pid,
            job_id=self.job_id,
            scheduler=self.scheduler,
            start=now,
        )
        return RunState(
            status=status,
            pid=self.pid,
            host=self.host,
            started=now,
            proc_start=self.proc_start,
            attempts=[attempt],
        )
