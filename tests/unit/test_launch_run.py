"""Running a launch: the run record, launch.json, output streaming and rank prefixes, the
idle-output watchdog, retries with backoff, and the exit code. The job here is a plain Python
child standing in for the launcher (tests/integration/test_launch_mpi.py uses real Open MPI)."""

from __future__ import annotations

import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tether.distributed.launch import IDLE_EXIT, Attempts, LaunchResult, run_launch
from tether.distributed.spec import LaunchSpec
from tether.store import open_store

PY = sys.executable


@pytest.fixture(autouse=True)
def _outside_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # no source snapshot of the checkout


def spec_for(code: str, **kw: Any) -> LaunchSpec:
    command = [PY, "-c", code]
    return LaunchSpec(command, **kw).replace(
        resolved=True,
        launcher=kw.get("launcher", "mpiexec"),
        nprocs=1,
        ppn=1,
        nhosts=1,
        hosts=["localhost"],
        scheduler_name="local",
    )


def launch(code: str, **kw: Any) -> tuple[LaunchResult, str, str]:
    out, err = io.StringIO(), io.StringIO()
    spec_kw = {k: kw.pop(k) for k in ("launcher", "rank_prefix", "flavour") if k in kw}
    spec = spec_for(code, **spec_kw)
    result = run_launch(spec, list(spec.command), stdout=out, stderr=err, **kw)
    return result, out.getvalue(), err.getvalue()


def launch_json(result: LaunchResult) -> dict[str, Any]:
    assert result.run_dir is not None
    data: dict[str, Any] = json.loads((Path(result.run_dir) / "launch.json").read_text())
    return data


def test_a_launch_is_a_run(tmp_path: Path) -> None:
    code = "import os, sys; print('hello'); print('oops', file=sys.stderr); "
    code += "print(os.environ['TETHER_LAUNCH_ID'])"
    result, out, _ = launch(code, json_out=str(tmp_path / "out" / "launch.json"))
    assert result.exit_code == 0 and result.outcome == "completed"
    assert out.splitlines() == ["hello", result.run_id]
    record = open_store().load(str(result.run_id))
    assert record.name == "launch" and record.status == "completed"
    assert record.lock.config["command"] == [PY, "-c", code]
    log = (record.dir / "output.log").read_text()
    assert "hello" in log and "oops" in log and "attempt 1: completed (exit 0)" in log
    data = launch_json(result)
    assert data == json.loads((tmp_path / "out" / "launch.json").read_text())
    assert data["outcome"] == "completed" and data["exit_code"] == 0
    assert data["run"] == result.run_id and data["hosts"] == ["localhost"]
    assert data["command"] == [PY, "-c", code]
    assert [a["exit_code"] for a in data["attempts"]] == [0]
    assert data["attempts"][0]["duration_s"] > 0 and data["failed_attempts"] == []


def test_a_crash_gives_its_exit_code_and_launch_json_says_so() -> None:
    result, out, _ = launch("import sys; print('dying'); sys.exit(3)")
    assert out == "dying\n"
    assert result.exit_code == 3 and result.outcome == "failed"
    data = launch_json(result)
    assert data["outcome"] == "failed" and data["exit_code"] == 3
    assert data["failed_attempts"] == [1]
    assert data["attempts"][0]["outcome"] == "failed" and data["attempts"][0]["exit_code"] == 3
    record = open_store().load(str(result.run_id))
    assert record.status == "failed" and record.state.exit_code == 3


def test_a_signal_gives_128_plus_n() -> None:
    result, _, _ = launch("import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    assert result.exit_code == 137


def test_the_watchdog_stops_a_silent_job() -> None:
    t0 = time.monotonic()
    code = "import time; print('started', flush=True); time.sleep(60)"
    result, out, err = launch(code, idle_timeout=0.5)
    assert time.monotonic() - t0 < 20
    assert out == "started\n"
    assert result.exit_code == IDLE_EXIT and result.outcome == "idle-timeout"
    assert "no output for 0.5 s (--idle-timeout): stopped the job (attempt 1)" in err
    data = launch_json(result)
    assert data["outcome"] == "idle-timeout" and data["exit_code"] == IDLE_EXIT
    assert data["attempts"][0]["outcome"] == "idle-timeout"
    assert data["attempts"][0]["exit_code"] == 128 + 15  # SIGTERM
    assert open_store().load(str(result.run_id)).status == "failed"


def test_output_keeps_the_watchdog_quiet() -> None:
    code = "import time\nfor i in range(6):\n    print(i, flush=True); time.sleep(0.2)\n"
    result, out, _ = launch(code, idle_timeout=1.0)
    assert result.exit_code == 0 and out.split() == ["0", "1", "2", "3", "4", "5"]


def test_retries_with_backoff(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    code = (
        "import pathlib, sys\n"
        f"p = pathlib.Path({str(counter)!r})\n"
        "n = int(p.read_text()) + 1 if p.exists() else 1\n"
        "p.write_text(str(n)); print('attempt', n)\n"
        "sys.exit(0 if n == 3 else 7)\n"
    )
    t0 = time.monotonic()
    result, out, err = launch(code, retries=3, backoff=0.2)
    assert time.monotonic() - t0 >= 0.2 + 0.4  # 0.2 s, then 0.4 s
    assert result.exit_code == 0 and result.outcome == "completed"
    assert out.split("\n")[:3] == ["attempt 1", "attempt 2", "attempt 3"]
    assert "attempt 1 of 4 failed (exit 7); retrying in 0.2 s" in err
    assert "attempt 2 of 4 failed (exit 7); retrying in 0.4 s" in err
    data = launch_json(result)
    assert [a["exit_code"] for a in data["attempts"]] == [7, 7, 0]
    assert data["failed_attempts"] == [1, 2] and data["outcome"] == "completed"


def test_retries_run_out() -> None:
    result, _, err = launch("import sys; sys.exit(5)", retries=1, backoff=0.01)
    assert result.exit_code == 5
    assert "all 2 attempts failed" in err
    data = launch_json(result)
    assert [a["attempt"] for a in data["attempts"]] == [1, 2]
    assert data["failed_attempts"] == [1, 2]


def test_rank_prefix_labels_lines() -> None:
    code = "print('0: hello'); print('1: world'); print('not labelled')"
    _, out, _ = launch(code, launcher="srun", rank_prefix=True)
    assert out.splitlines() == ["[0] hello", "[1] world", "not labelled"]


def test_partial_lines_are_kept_whole_with_a_prefix() -> None:
    code = (
        "import sys, time\n"
        "sys.stdout.write('[1,0]<stdout>:par'); sys.stdout.flush(); time.sleep(0.1)\n"
        "sys.stdout.write('[1,0]<stdout>:tial\\n[1,1]<stdout>:end')\n"
    )
    _, out, _ = launch(code, rank_prefix=True, flavour="openmpi")
    assert out.splitlines() == ["[0] partial", "[1] end"]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"retries": -1}, "--retries -1 is negative"),
        ({"idle_timeout": 0}, "--idle-timeout 0 must be more than 0 seconds"),
        ({"backoff": -1.0}, "--backoff -1 is negative"),
    ],
)
def test_bad_settings(kw: dict[str, Any], message: str) -> None:
    from tether.errors import TetherError

    with pytest.raises(TetherError, match=message):
        Attempts(["true"], {}, None, **kw)


def test_a_missing_launcher_is_reported(tmp_path: Path) -> None:
    from tether.errors import TetherError

    spec = spec_for("pass")
    with pytest.raises(TetherError, match="cannot start 'no-such-launcher-xyz'"):
        run_launch(spec, ["no-such-launcher-xyz", "-n", "2"], stdout=io.StringIO())


def test_recorded_is_called_once_the_record_is_written_while_the_job_runs(tmp_path: Path) -> None:
    """The job waits for a file that `recorded` writes: the call comes after run.lock exists and
    before the job is waited for (the CLI turns its garbage collector back on there)."""
    flag = tmp_path / "recorded"
    code = (
        "import pathlib, sys, time\n"
        f"p = pathlib.Path({str(flag)!r})\n"
        "end = time.monotonic() + 20\n"
        "while not p.exists() and time.monotonic() < end:\n"
        "    time.sleep(0.01)\n"
        "sys.exit(0 if p.exists() else 9)\n"
    )
    calls: list[bool] = []

    def recorded() -> None:
        runs = [d for d in Path(os.environ["TETHER_RUNS"]).iterdir() if d.is_dir()]
        calls.append(any((d / "run.lock").is_file() for d in runs))
        flag.write_text("yes")

    result, _, _ = launch(code, recorded=recorded)
    assert result.exit_code == 0 and calls == [True]


class _Log:
    def write(self, stream: str, text: str) -> None:
        pass


def test_on_change_leaves_the_last_attempts_end_to_the_caller() -> None:
    """After the job's exit launch.json is written once, by run_launch with the outcome and the
    ranks: Attempts reports the start of the wait, each failed attempt it retries and each retry,
    not the end of the last attempt."""
    seen: list[list[str]] = []

    def on_change(attempts: list[Any]) -> None:
        seen.append([a.outcome for a in attempts])

    Attempts(["true"], {}, _Log(), on_change=on_change).finish()
    assert seen == [["running"]]
    seen.clear()
    code, outcome, _ = Attempts(
        ["false"], {}, _Log(), retries=1, backoff=0.01, on_change=on_change, say=lambda t: None
    ).finish()
    assert (code, outcome) == (1, "failed")
    assert seen == [["running"], ["failed"], ["failed", "running"]]
