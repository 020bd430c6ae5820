"""Rewrite state.json and run.lock of one run folder through tether's writers until killed.

usage: atomic_writer.py RUN_DIR SIZE

Every write is announced on stdout, `begin KIND I` before and `done KIND I` after (KIND is
`state` or `lock`), so the test that SIGKILLs this process knows which contents each file may
hold. Each content checks itself: its `blob` is SIZE copies of `I:`. The writer goes on from
the numbers the files hold, so each restart also reads what the last killed writer left.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tether.fsio import atomic_write_json, read_json
from tether.lock import RunLock, read_lock, write_lock

RUN_ID = "01900000-0000-7000-8000-000000000000"


def state_payload(i: int, size: int) -> dict[str, object]:
    return {"status": "running", "i": i, "blob": f"{i}:" * size}


def lock_for(i: int, size: int) -> RunLock:
    lock = RunLock(id=RUN_ID, name="atomic", created="2026-01-01T00:00:00Z")
    lock.config = {"i": i, "blob": f"{i}:" * size}
    return lock


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> None:
    run_dir = Path(sys.argv[1])
    size = int(sys.argv[2])
    run_dir.mkdir(exist_ok=True)
    start = 0
    if (run_dir / "state.json").exists():
        start = max(start, int(read_json(run_dir / "state.json")["i"]) + 1)
    if (run_dir / "run.lock").exists():
        start = max(start, int(read_lock(run_dir).config["i"]) + 1)
    say(f"ready {start}")
    i = start
    while True:
        say(f"begin state {i}")
        atomic_write_json(run_dir / "state.json", state_payload(i, size))
        say(f"done state {i}")
        say(f"begin lock {i}")
        write_lock(run_dir, lock_for(i, size))
        say(f"done lock {i}")
        i += 1


if __name__ == "__main__":
    main()
