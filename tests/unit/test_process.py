"""The one child supervisor (tether.process): output to sinks, exit codes, the idle watchdog,
and stopping the whole process group signal by signal."""

from __future__ import annotations

import signal
import sys
import time

import pytest

from tether.errors import TetherError
from tether.process import GRACE_S, Child, exit_code, first_signal

PY = sys.executable


class Collect:
    def __init__(self) -> None:
        self.text = ""
        self.closed = False

    def feed(self, data: bytes, text: str) -> None:
        self.text += text

    def close(self, text: str) -> None:
        self.text += text
        self.closed = True


def child(code: str, **kw: float) -> tuple[Child, dict[str, Collect]]:
    sinks: dict[str, Collect] = {}

    def output(name: str) -> Collect:
        return sinks.setdefault(name, Collect())

    c = Child([PY, "-c", code], output, **kw)  # type: ignore[arg-type]
    c.start()
    return c, sinks


def test_output_and_exit_code() -> None:
    c, sinks = child("import sys; print('out'); print('é', file=sys.stderr); sys.exit(3)")
    assert c.wait() == (3, False)
    assert sinks["stdout"].text == "out\n" and sinks["stderr"].text == "é\n"
    assert sinks["stdout"].closed and sinks["stderr"].closed


def test_exit_codes_of_signals() -> None:
    assert exit_code(0) == 0 and exit_code(-signal.SIGKILL) == 128 + signal.SIGKILL
    assert first_signal(KeyboardInterrupt()) == signal.SIGINT
    assert first_signal(SystemExit(1)) == signal.SIGTERM
    assert GRACE_S == 10.0


def test_a_program_that_cannot_start() -> None:
    c = Child(["no-such-program-h4"], lambda name: Collect(), hint="install it")
    with pytest.raises(TetherError, match="cannot start 'no-such-program-h4'.*install it"):
        c.start()


def test_the_watchdog_stops_a_silent_child() -> None:
    c, sinks = child("import time; print('up', flush=True); time.sleep(60)")
    t0 = time.monotonic()
    code, idle = c.wait(idle_timeout=0.5)
    assert idle and code == 128 + signal.SIGTERM and time.monotonic() - t0 < 10
    assert sinks["stdout"].text == "up\n"


def test_tick_runs_while_waiting() -> None:
    ticks: list[float] = []
    c, _ = child("import time; time.sleep(0.5)")
    assert c.wait(every=0.05, tick=lambda: ticks.append(time.monotonic())) == (0, False)
    assert len(ticks) >= 3


def test_stop_goes_on_to_sigterm_then_sigkill_after_the_grace_period() -> None:
    """A child that ignores SIGINT and SIGTERM: each signal gets the grace period, then KILL."""
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    c, sinks = child(code, grace_s=0.3)
    deadline = time.monotonic() + 20
    while "ready" not in sinks.get("stdout", Collect()).text and time.monotonic() < deadline:
        time.sleep(0.02)
    t0 = time.monotonic()
    c.stop(signal.SIGINT)
    took = time.monotonic() - t0
    assert c.returncode == -signal.SIGKILL
    assert 0.6 <= took < 10  # two grace periods: after SIGINT, after SIGTERM
