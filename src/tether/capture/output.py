"""Tee the run's stdout and stderr into output.log, each line prefixed with its time."""

from __future__ import annotations

import io
import logging
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from ..clock import iso_from_timestamp
from .secrets import redact_known


def _stamp() -> str:
    return iso_from_timestamp(time.time(), 3) + " "


# A line that starts with a date and time already (a logging format with %(asctime)s, ISO or
# logging's default) is copied as it is: a second stamp in front of it says nothing more.
_STAMPED = re.compile(r"\[?\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d")


def _line(line: str) -> str:
    return line + "\n" if _STAMPED.match(line) else _stamp() + line + "\n"


class LogFile:
    """The shared output.log: both streams write whole, time-stamped lines to it."""

    def __init__(self, path: Path) -> None:
        self._fh = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        self._lock = threading.Lock()
        self._partial: dict[str, str] = {}

    def write(self, stream: str, text: str) -> None:
        with self._lock:
            if self._fh.closed:
                return
            pending = self._partial.get(stream, "") + text
            *lines, rest = pending.split("\n")
            for line in lines:
                self._fh.write(_line(redact_known(line)))
            self._partial[stream] = rest

    def close(self) -> None:
        with self._lock:
            for rest in self._partial.values():
                if rest:
                    self._fh.write(_line(redact_known(rest)))
            self._partial.clear()
            self._fh.close()


class Tee(io.TextIOBase):
    """Writes through to the original stream and copies into the log."""

    def __init__(self, original: TextIO, log: LogFile, name: str) -> None:
        self._original = original
        self._log = log
        self._name = name

    def write(self, text: str) -> int:
        n = self._original.write(text)
        self._log.write(self._name, text)
        return n if n is not None else len(text)

    def flush(self) -> None:
        self._original.flush()

    def isatty(self) -> bool:
        return self._original.isatty()

    def fileno(self) -> int:
        return self._original.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._original, "encoding", "utf-8")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)


class OutputCapture:
    """Installs the tees and a logging handler for the life of a run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.log: LogFile | None = None
        self._saved: tuple[TextIO, TextIO] | None = None
        self._handler: logging.Handler | None = None
        self._level: int | None = None  # root's level before tether lowered it

    def start(self) -> None:
        self.log = LogFile(self.path)
        self._saved = (sys.stdout, sys.stderr)
        sys.stdout = Tee(sys.stdout, self.log, "stdout")
        sys.stderr = Tee(sys.stderr, self.log, "stderr")
        root = logging.getLogger()
        fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        if root.handlers:
            # The user's handlers keep the console; ours copies records into output.log.
            handler: logging.Handler = logging.StreamHandler(_LogOnly(self.log))
        else:
            handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(fmt)
        # Only logging nobody configured is brought down to INFO (root's default is WARNING):
        # a level the user set (basicConfig(level=...), another root level) is theirs to keep.
        self._level = None
        if not root.handlers and root.level in (logging.WARNING, logging.NOTSET):
            self._level = root.level
            root.setLevel(logging.INFO)
        root.addHandler(handler)
        self._handler = handler

    def write_log(self, text: str) -> None:
        """Text for output.log only (a traceback the console will print anyway)."""
        if self.log is not None:
            self.log.write("tether", text if text.endswith("\n") else text + "\n")

    def stop(self) -> None:
        if self._handler is not None:
            root = logging.getLogger()
            root.removeHandler(self._handler)
            self._handler = None
            if self._level is not None and root.level == logging.INFO:  # as tether left it
                root.setLevel(self._level)
            self._level = None
        if self._saved is not None:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:
                    pass
            sys.stdout, sys.stderr = self._saved
            self._saved = None
        if self.log is not None:
            self.log.close()
            self.log = None


class _LogOnly(io.TextIOBase):
    def __init__(self, log: LogFile) -> None:
        self._log = log

    def write(self, text: str) -> int:
        self._log.write("logging", text)
        return len(text)
