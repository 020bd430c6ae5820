"""Create one run when the barrier opens, so that many of these start together.

usage: create_one.py I BARRIER_DIR

Imports everything first, then creates BARRIER_DIR/ready-I and waits for BARRIER_DIR/go; then
makes one run (config {"i": I}) and prints its id.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import tether
from tether.capture import environment, output, source  # noqa: F401
from tether.session.start import start_run
from tether.store import index, store  # noqa: F401


def main() -> None:
    i = int(sys.argv[1])
    barrier = Path(sys.argv[2])
    (barrier / f"ready-{i}").touch()
    go = str(barrier / "go")
    deadline = time.monotonic() + 60
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            sys.exit("barrier never opened")
        time.sleep(0.002)
    with start_run({"i": i}, name="par") as run:
        run.log_metrics({"i": float(i)})
        rid = run.id
    print(rid)
    assert tether.__version__


if __name__ == "__main__":
    main()
