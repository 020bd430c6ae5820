"""A run whose process died without a word: shown as `unknown`, queried as `status = unknown`
(and no longer as `running`), its duration stopped at its last sign of life."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import tether
from tests.conftest import run_cli
from tether.fsio import atomic_write_json
from tether.store import open_store
from tether.store.layout import STATE
from tether.store.state import RunState, hostname, proc_start_time, read_state, write_state


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _put(run_dir, state: RunState) -> None:  # type: ignore[no-untyped-def]
    atomic_write_json(run_dir / STATE, state.to_dict())


def test_a_dead_run_is_unknown_everywhere_and_its_duration_stops():
    with tether.start_run({"lr": 0.1}, name="dead", snapshot=False, capture_output=False) as run:
        run.log_metrics({"loss": 0.5}, step=1)
    with tether.start_run({"lr": 0.2}, name="live", snapshot=False, capture_output=False) as live:
        pass
    # The first run as a SIGKILL leaves it: `running`, a pid that is gone, no stop time, last
    # heard of an hour after it started.
    state = read_state(run.dir)
    state.status, state.stopped, state.exit_code = "running", None, None
    state.host, state.pid, state.proc_start = hostname(), _dead_pid(), None
    state.started, state.updated = "2026-01-01T10:00:00.000000Z", "2026-01-01T11:00:00.000000Z"
    _put(run.dir, state)  # as it was: write_state would stamp `updated` now
    (run.dir / "metrics.jsonl").touch()
    past = time.mktime(time.strptime("2026-01-01 10:30:00", "%Y-%m-%d %H:%M:%S"))
    os.utime(run.dir / "metrics.jsonl", (past, past))
    # The second one really running: this process.
    state = read_state(live.dir)
    state.status, state.stopped = "running", None
    state.host, state.pid, state.proc_start = hostname(), os.getpid(), proc_start_time(os.getpid())
    write_state(live.dir, state)
    store = open_store()
    for r in (run, live):
        store.index.upsert(store.load(r.id))

    def ids(where: str) -> set[str]:
        out = run_cli("runs", "--where", where, "--json", check=True).stdout
        return {r["id"] for r in json.loads(out)}

    assert ids("status = unknown") == {run.id}
    assert ids("status = running") == {live.id}
    assert ids("status != running") == {run.id}
    assert ids("status in (unknown, completed)") == {run.id}
    shown = run_cli("show", run.id[:13], check=True).stdout
    assert "unknown" in shown and "duration: 1:00:00" in shown, shown
    # With an older `updated`, the metrics file is the last sign of life.
    state = read_state(run.dir)
    state.updated = None
    _put(run.dir, state)
    assert "duration: 30:00" in run_cli("show", run.id[:13], check=True).stdout
