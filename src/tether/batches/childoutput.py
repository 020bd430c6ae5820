"""The output of a child run: what its task prints and logs goes to its own output.log.

Under the serial executor the parent run's own tee is installed: a task writes past it, so its
lines land in the task's output.log and not in the batch's too. The log file is opened on the
first line (most tasks print nothing).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..capture.output import Tee, _stamp


class LazyLog:
    """output.log of a child, opened on the first line written (most tasks print nothing)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: Any = None
        self._lock = threading.Lock()
        self._partial: dict[str, str] = {}
        self._closed = False

    def write(self, stream: str, text: str) -> None:
        with self._lock:
            if self._closed:
                return
            pending = self._partial.get(stream, "") + text
            *lines, rest = pending.split("\n")
            if lines:
                if self._fh is None:
                    self._fh = open(self.path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
                for line in lines:
                    self._fh.write(_stamp() + line + "\n")
            self._partial[stream] = rest

    def close(self) -> None:
        with self._lock:
            rests = [r for r in self._partial.values() if r]
            if rests and self._fh is None:
                self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
            for rest in rests:
                self._fh.write(_stamp() + rest + "\n")
            self._partial.clear()
            if self._fh is not None:
                self._fh.close()
            self._closed = True


@contextlib.contextmanager
def captured(path: Path) -> Iterator[LazyLog]:
    log = LazyLog(path)
    saved = sys.stdout, sys.stderr
    # Under a serial executor the parent's own tee is installed: write past it, so a task's
    # lines land in the task's output.log and not in the batch's too.
    out = getattr(saved[0], "_original", saved[0])
    err = getattr(saved[1], "_original", saved[1])
    sys.stdout = Tee(out, log, "stdout")  # type: ignore[arg-type]
    sys.stderr = Tee(err, log, "stderr")  # type: ignore[arg-type]
    handler = logging.StreamHandler(_LogStream(log))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield log
    finally:
        root.removeHandler(handler)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        sys.stdout, sys.stderr = saved


class _LogStream:
    def __init__(self, log: LazyLog) -> None:
        self._log = log

    def write(self, text: str) -> int:
        self._log.write("logging", text)
        return len(text)

    def flush(self) -> None:
        pass
