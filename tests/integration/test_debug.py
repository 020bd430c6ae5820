"""`@tether.unsafe_debug` with `TETHER_DEBUG=1`: a post-mortem debugger where the error rose."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import tether

@tether.unsafe_debug
def broken():
    secret = 41 + 1
    raise ValueError("boom")

broken()
"""


def run(tmp_path: Path, debug: str | None) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "broken.py"
    script.write_text(SCRIPT)
    env = dict(os.environ)
    env.pop("TETHER_DEBUG", None)
    if debug is not None:
        env["TETHER_DEBUG"] = debug
    # The debugger reads its commands from stdin: print a local of the failing frame, then quit.
    return subprocess.run(
        [sys.executable, str(script)],
        input="p secret * 1000\nq\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_debug_opens_pdb_in_the_failing_frame(tmp_path: Path):
    proc = run(tmp_path, "1")
    assert "(Pdb)" in proc.stdout
    assert "42000" in proc.stdout  # evaluated in the frame that raised
    assert proc.returncode != 0 and "ValueError: boom" in proc.stderr


def test_without_debug_it_does_nothing(tmp_path: Path):
    proc = run(tmp_path, None)
    assert "(Pdb)" not in proc.stdout
    assert "ValueError: boom" in proc.stderr
    assert run(tmp_path, "0").stdout == ""
