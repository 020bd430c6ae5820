"""Create runs with tether.start_run, one after the other, until killed.

usage: create_loop.py FIRST

Each run logs a metric, sets a label and completes. `ready` is printed once the first run is
done (imports are warm), so the test's random SIGKILLs land among the next runs' writes.
"""

from __future__ import annotations

import sys

import tether


def main() -> None:
    i = int(sys.argv[1])
    ready = False
    while True:
        cfg = {"i": i, "blob": "x" * 4000}
        with tether.start_run(cfg, name="loop", snapshot=False) as run:
            run.log_metrics({"loss": 1.0 / (i + 1)}, step=i)
            run.set_label(f"l{i}")
        i += 1
        if not ready:
            ready = True
            sys.__stdout__.write("ready\n")
            sys.__stdout__.flush()


if __name__ == "__main__":
    main()
