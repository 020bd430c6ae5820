"""The one child-process supervisor: `tether run`'s command and `tether launch`'s job.

A `Child` starts in a process group (a session) of its own, so a signal reaches the command and
everything it started, and the terminal's Ctrl-C reaches it only through tether. Its stdout and
stderr are read by one thread each, chunk by chunk as they come (progress bars keep working),
decoded as UTF-8 (bad bytes replaced), and handed to the caller's sink for that stream (console,
output.log, scalar scanner, rank labels).

- `wait()` returns the exit code, 128+N when signal N ended the command, and can stop a child
  that prints nothing for `idle_timeout` seconds (the watchdog of `tether launch`);
- `stop(first)` signals the whole group: `first` (SIGINT to pass on a Ctrl-C, else SIGTERM),
  then SIGTERM, then SIGKILL, each `grace_s` seconds after the one before; a second Ctrl-C
  while it waits kills at once.

GRACE_S, the one default grace period, is 10 s: time for a training script to catch the signal
and write its last checkpoint, or for an MPI launcher to tear its ranks down on many nodes,
while SIGTERM to SIGKILL stays well inside Slurm's default KillWait (30 s), so tether records
the outcome before it is killed itself.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, Protocol

from .errors import TetherError

GRACE_S = 10.0  # between the signals of `stop`: first, SIGTERM, SIGKILL
DRAIN_S = 5.0  # how long output may trail the exit (a grandchild holding the pipe)
WATCH_S = 1.0  # the idle watchdog looks at least this often


class Sink(Protocol):
    """Where one stream's output goes: `feed` for each chunk (the bytes read and their text),
    `close` at the end of the stream (with the decoder's last text, usually empty)."""

    def feed(self, data: bytes, text: str) -> None: ...

    def close(self, text: str) -> None: ...


def exit_code(returncode: int) -> int:
    """A shell's exit code for a Popen return code: 128+N when signal N ended the process."""
    return returncode if returncode >= 0 else 128 - returncode


def first_signal(exc: BaseException) -> int:
    """The signal that passes `exc` on to a child: SIGINT for Ctrl-C, SIGTERM for the rest."""
    return signal.SIGINT if isinstance(exc, KeyboardInterrupt) else signal.SIGTERM


def python_first(path: str) -> str:
    """PATH with this interpreter's bin/ first (so `python` is the one tether runs in)."""
    bin_dir = str(Path(sys.executable).parent)
    if path.split(os.pathsep)[0] == bin_dir:
        return path
    return bin_dir + (os.pathsep + path if path else "")


def write_console(
    console: IO[Any], text: str, data: bytes | None = None, lock: threading.Lock | None = None
) -> None:
    """Write to a console: `data` as is to its binary buffer when both exist, else `text`.
    A closed console must not stop the rest (the log), so its errors are ignored."""
    raw = getattr(console, "buffer", None) if data is not None else None
    with lock or contextlib.nullcontext():
        try:
            if raw is not None:
                raw.write(data)
                raw.flush()
            elif text:
                console.write(text)
                console.flush()
        except (OSError, ValueError):
            pass


class Child:
    """One child process in its own process group, its output pumped to sinks.

    `output(stream)` makes the sink of "stdout" or "stderr", in the thread that reads it.
    `hint` goes with the error when the program cannot be started."""

    def __init__(
        self,
        argv: list[str],
        output: Callable[[str], Sink],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        grace_s: float = GRACE_S,
        hint: str | None = None,
    ) -> None:
        self.argv = argv
        self.output = output
        self.env = None if env is None else dict(env)
        self.cwd = cwd
        self.grace_s = grace_s
        self.hint = hint
        self.proc: subprocess.Popen[bytes] | None = None
        self.pumps: list[threading.Thread] = []
        self.last_output = time.monotonic()

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode if self.proc is not None else None

    def start(self) -> None:
        try:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own process group: signals reach it whole
            )
        except OSError as exc:
            raise TetherError(f"cannot start {self.argv[0]!r}: {exc.strerror}", self.hint)
        self.last_output = time.monotonic()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        for name, pipe in (("stdout", self.proc.stdout), ("stderr", self.proc.stderr)):
            t = threading.Thread(target=self._pump, args=(pipe, name), daemon=True)
            t.start()
            self.pumps.append(t)

    def _pump(self, pipe: IO[bytes], name: str) -> None:
        sink = self.output(name)
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        fd = pipe.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            self.last_output = time.monotonic()
            sink.feed(chunk, decoder.decode(chunk))
        sink.close(decoder.decode(b"", final=True))
        with contextlib.suppress(OSError):
            pipe.close()

    def wait(
        self,
        *,
        idle_timeout: float | None = None,
        every: float | None = None,
        tick: Callable[[], None] | None = None,
    ) -> tuple[int, bool]:
        """Wait for the exit, then for the output; (exit code, stopped for silence).

        `idle_timeout`: stop the child (`stop()`) when it prints nothing for that many seconds.
        `tick`: called every `every` seconds while the child runs."""
        proc = self.proc
        assert proc is not None, "start() first"
        idle = False
        while True:
            timeout = every
            if idle_timeout:
                left = idle_timeout - (time.monotonic() - self.last_output)
                if left <= 0:
                    idle = True
                    self.stop()
                    raw = proc.wait()
                    break
                watch = min(left + 0.01, WATCH_S)
                timeout = watch if timeout is None else min(timeout, watch)
            try:
                raw = proc.wait(timeout=timeout)
                break
            except subprocess.TimeoutExpired:
                if tick is not None:
                    tick()
        self.drain()
        return exit_code(raw), idle

    def stop(self, first: int = signal.SIGTERM) -> None:
        """Signal the process group: `first`, then SIGTERM, then SIGKILL, each after the grace
        period; a second Ctrl-C skips to SIGKILL. Nothing when the child is gone and nothing
        of its group holds its output any more."""
        proc = self.proc
        if proc is None or (proc.poll() is not None and not self.pumping()):
            return
        steps: list[tuple[int, float | None]] = [(first, self.grace_s)]
        if first != signal.SIGTERM:
            steps.append((signal.SIGTERM, self.grace_s))
        steps.append((signal.SIGKILL, None))
        for sig, grace in steps:
            self._signal(sig)
            try:
                proc.wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                continue
            except KeyboardInterrupt:
                self._signal(signal.SIGKILL)
                proc.wait()
                return

    def _signal(self, sig: int) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def pumping(self) -> bool:
        """Is some output still being read (a process of the group holds a pipe)?"""
        return any(t.is_alive() for t in self.pumps)

    def drain(self, timeout: float = DRAIN_S) -> None:
        """Let the output readers finish (each waits at most `timeout` seconds)."""
        for t in self.pumps:
            t.join(timeout=timeout)


def detach(
    argv: list[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    pass_fds: tuple[int, ...] = (),
    quiet: bool = True,
) -> subprocess.Popen[bytes]:
    """Start a process that outlives this one (work after a run, such as its MLflow sync): a
    session of its own, so this process's end or Ctrl-C does not reach it; stdin from
    /dev/null; stdout and stderr to /dev/null when `quiet`, else this process's own (no pipe
    that would break when this process exits); `pass_fds` stay open in it."""
    sink = subprocess.DEVNULL if quiet else None
    try:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env=None if env is None else dict(env),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=sink,
            start_new_session=True,
            pass_fds=pass_fds,
        )
    except OSError as exc:
        raise TetherError(f"cannot start {argv[0]!r}: {exc.strerror}")
