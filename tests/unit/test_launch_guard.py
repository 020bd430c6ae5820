"""The suite's guard against MASTER_ADDR/MASTER_PORT leaking from one test into the next
(tests/conftest.py): a leak fails the test that made it; monkeypatch.setenv is no leak."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"

TESTS = """
import os


def test_leaks(monkeypatch):
    os.environ["MASTER_ADDR"] = "127.0.0.1"


def test_monkeypatch_is_fine(monkeypatch):
    monkeypatch.setenv("MASTER_PORT", "29500")


def test_sees_a_clean_environment():
    assert "MASTER_ADDR" not in os.environ and "MASTER_PORT" not in os.environ
"""


def test_a_leak_fails_the_test_that_made_it(tmp_path: Path) -> None:
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_guarded.py").write_text(TESTS)
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT")}
    env.pop("PYTEST_XDIST_WORKER", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_guarded.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    # pytest reports a failure in a fixture's teardown as an error of that test.
    assert "3 passed, 1 error" in out, out
    assert "ERROR at teardown of test_leaks" in out, out
    assert "leaked MASTER_ADDR='127.0.0.1'" in out, out
