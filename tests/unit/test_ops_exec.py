"""Running an op's command: config, placeholders, output to console + output.log, exit codes."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tether.errors import TetherError
from tether.ops.exec import build_config, execute, fill, resolve_command
from tether.ops.scalars import compile_patterns
from tether.project.model import FlagDef, OpDef


def make_op(exec_: str | list[str], **defaults: object) -> OpDef:
    return OpDef("train", exec_, flags={k: FlagDef(k, v) for k, v in defaults.items()})


def test_config_nests_dotted_flags():
    op = make_op("x", **{"model.C": 1.0, "model.kind": "svm", "seed": 0})
    assert build_config(op, {"model.C": 5}) == {"model": {"C": 5, "kind": "svm"}, "seed": 0}


def test_placeholders_shell_quoted_for_shell_strings():
    op = make_op("python t.py --name {name} --C {model.C} --on {on} {{x}} ${HOME} {print $1}")
    config = {"name": "a b; rm -rf /", "model": {"C": 0.5}, "on": True}
    argv, display = resolve_command(op, config)
    assert argv[:2] == ["/bin/sh", "-c"]
    assert display == (
        "python t.py --name 'a b; rm -rf /' --C 0.5 --on true {x} ${HOME} {print $1}"
    )


def test_placeholders_in_argv_are_not_quoted():
    op = make_op(["python", "t.py", "--name={name}", "{n}"])
    argv, display = resolve_command(op, {"name": "a b", "n": 3})
    assert argv == ["python", "t.py", "--name=a b", "3"]
    assert display == "python t.py '--name=a b' 3"


def test_unknown_placeholder_suggests_a_flag():
    op = make_op("python t.py --lr {lrr}", lr=0.1)
    with pytest.raises(TetherError) as info:
        fill(op.exec, {"lr": 0.1}, op, quote=True)  # type: ignore[arg-type]
    assert str(info.value) == (
        "ops.train.exec: {lrr} is not a flag of op 'train' (did you mean {lr}?); "
        "write {{ and }} for literal braces"
    )


def run_execute(tmp_path: Path, code: str, **kw: Any) -> tuple[int, str, str, list[Any]]:
    out, err = io.StringIO(), io.StringIO()
    logged: list[Any] = []
    rc = execute(
        [sys.executable, "-c", code],
        display="python -c ...",
        cwd=tmp_path,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        patterns=compile_patterns(True),
        log_metrics=lambda values, step: logged.append((values, step)),
        stdout=out,
        stderr=err,
        **kw,
    )
    return rc, out.getvalue(), err.getvalue(), logged


def test_execute_tees_output_scans_scalars_and_returns_the_exit_code(tmp_path: Path):
    code = (
        "import sys\n"
        "print('step: 1 loss: 0.5')\n"
        "print('oops', file=sys.stderr)\n"
        "sys.stdout.write('acc=0.9')\n"  # no newline at the end
        "sys.exit(3)\n"
    )
    rc, out, err, logged = run_execute(tmp_path, code)
    assert rc == 3
    assert out == "step: 1 loss: 0.5\nacc=0.9"
    assert err == "oops\n"
    assert logged == [({"loss": 0.5}, 1), ({"acc": 0.9}, 1)]
    lines = (tmp_path / "output.log").read_text().splitlines()
    texts = [line.split(" ", 1)[1] for line in lines]
    assert texts[0] == "$ python -c ..."
    # stdout and stderr are read by two threads: their lines may interleave either way.
    assert sorted(texts[1:]) == ["acc=0.9", "oops", "step: 1 loss: 0.5"]
    assert all(line[:4].isdigit() and line[23:25] == "Z " for line in lines)


def test_execute_reports_death_by_signal_as_128_plus_n(tmp_path: Path):
    rc, *_ = run_execute(tmp_path, "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    assert rc == 128 + signal.SIGKILL


def test_execute_command_not_found(tmp_path: Path):
    with pytest.raises(TetherError, match="^cannot start 'no-such-program-x': "):
        execute(["no-such-program-x"], display="x", cwd=tmp_path, env=dict(os.environ))


def test_interrupt_stops_the_process_group(tmp_path: Path):
    """KeyboardInterrupt while waiting: the command (and its children) get SIGINT, then the
    exception propagates."""
    pidfile = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pidfile)!r}, 'w').write(str(p.pid))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    main = threading.main_thread()
    assert threading.current_thread() is main

    def interrupt() -> None:
        deadline = time.monotonic() + 30
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        signal.pthread_kill(main.ident, signal.SIGINT)  # type: ignore[arg-type]

    threading.Thread(target=interrupt, daemon=True).start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_execute(tmp_path, code)
    assert time.monotonic() - t0 < 20
    grandchild = int(pidfile.read_text())
    for _ in range(100):
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        if _zombie(grandchild):
            break
        time.sleep(0.05)
    else:
        subprocess.run(["kill", "-9", str(grandchild)])
        pytest.fail("the command's child survived the interrupt")
    assert "stopped (KeyboardInterrupt)" in (tmp_path / "output.log").read_text()


def _zombie(pid: int) -> bool:
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return True
    return raw[raw.rfind(b")") + 2 :][:1] == b"Z"
