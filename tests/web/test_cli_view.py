"""`tether view` as a command: its help, and a port already taken is one line, exit 2."""

from __future__ import annotations

import socket

import pytest

from tests.conftest import run_cli

pytest.importorskip("uvicorn", reason="tether view needs uvicorn (pip install 'tether[view]')")


def test_help_names_the_options():
    out = run_cli("view", "--help", check=True).stdout
    for option in ("--port", "--host", "--open", "--runs-dir"):
        assert option in out


def test_a_port_in_use_is_one_line_and_exit_2(runs_root):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = run_cli("view", "--port", str(port))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot listen on 127.0.0.1:{port}" in lines[0]
    assert "--port" in lines[0] and "Traceback" not in proc.stderr
