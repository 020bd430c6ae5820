"""Helpers for the integration tests: real child processes against a private runs root.

Every test gets a `World`: its own runs root (TETHER_RUNS, set explicitly in each child's
environment), a working folder outside any git repository, copies of the helper scripts in
tests/integration/scripts/, and small helpers to run `tether` and Python children. Nothing here
touches ~/.tether or a path shared between tests, so the tests run under `pytest -n auto`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parent / "scripts"
PYTHON = sys.executable
TETHER = str(Path(sys.executable).parent / "tether")
TIMEOUT = 60.0


def wait_for(
    predicate: Callable[[], Any],
    what: str,
    timeout: float = TIMEOUT,
    proc: subprocess.Popen[str] | None = None,
) -> Any:
    """Poll `predicate` until it returns something truthy; fail with `what` after `timeout`, or
    as soon as `proc` (the child expected to make it true) has exited. A child still running at
    the timeout gets SIGABRT, so faulthandler prints where it was stuck into the message."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"child exited {proc.returncode} before {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            detail = ""
            if proc is not None:
                proc.send_signal(signal.SIGABRT)
                detail = "\n" + "\n".join(proc.communicate(timeout=10))
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(0.005)


def is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except OSError:
        return False
    return raw[raw.rfind(b")") + 2 :][:1] == b"Z"


class World:
    """One test's private runs root, working folder and child-process helpers."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.runs = tmp_path / "runs"
        self.work = tmp_path / "work"
        self.work.mkdir()
        env = dict(os.environ)
        env.pop("TETHER_DEBUG", None)
        env["TETHER_RUNS"] = str(self.runs)
        env["TETHER_CACHE_DIR"] = str(tmp_path / "cache")
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONFAULTHANDLER"] = "1"
        # Colour and terminal width must not change what the commands print.
        env["NO_COLOR"] = "1"
        env["COLUMNS"] = "200"
        self.env = env
        self._children: list[subprocess.Popen[Any]] = []

    # -- files --------------------------------------------------------------------------------
    def script(self, name: str, folder: Path | None = None) -> Path:
        """Copy a helper script into the working folder (or `folder`) and return its path."""
        dest = (folder or self.work) / name
        shutil.copyfile(SCRIPTS / name, dest)
        return dest

    def run_dirs(self) -> list[Path]:
        """Run folders under the runs root (entries named like run ids)."""
        from tether.ids import is_run_id

        if not self.runs.is_dir():
            return []
        return sorted(p for p in self.runs.iterdir() if is_run_id(p.name))

    def index_path(self) -> Path:
        return self.runs / "index.db"

    def index_rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of a query against the index, read with Python's sqlite3 directly."""
        conn = sqlite3.connect(self.index_path(), timeout=30)
        try:
            return [tuple(r) for r in conn.execute(sql, params).fetchall()]
        finally:
            conn.close()

    # -- children -----------------------------------------------------------------------------
    def environ(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(self.env)
        env.update(extra or {})
        return env

    def tether(
        self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the real `tether` console script."""
        return subprocess.run(
            [TETHER, *args],
            cwd=cwd or self.work,
            env=self.environ(env),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )

    def tether_ok(self, *args: str, env: dict[str, str] | None = None) -> str:
        proc = self.tether(*args, env=env)
        assert proc.returncode == 0, (
            f"tether {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
        return proc.stdout

    def listing(self, *extra: str) -> list[dict[str, Any]]:
        """`tether runs --all --json`, parsed."""
        return json.loads(self.tether_ok("runs", "--all", "--json", *extra))

    def python(
        self,
        script: Path | str,
        *args: str,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        **kwargs: Any,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PYTHON, str(script), *args],
            cwd=cwd or self.work,
            env=self.environ(env),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            **kwargs,
        )

    def popen(
        self,
        script: Path | str,
        *args: str,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        **kwargs: Any,
    ) -> subprocess.Popen[str]:
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        proc = subprocess.Popen(
            [PYTHON, str(script), *args],
            cwd=cwd or self.work,
            env=self.environ(env),
            text=True,
            **kwargs,
        )
        self._children.append(proc)
        return proc

    def close(self) -> None:
        """Kill (by pid) whatever child a failed test left running."""
        for proc in self._children:
            if proc.poll() is None:
                try:
                    os.kill(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                proc.communicate(timeout=10)
            except (subprocess.TimeoutExpired, ValueError, OSError):
                pass
