"""A decorated main for the lifecycle tests: prints, logs, then returns, raises or blocks.

usage: exp_main.py [mode=return|raise|block] [marker=PATH] [token=TEXT]

It writes its run id to `marker` (atomically) once its output is out, so the test knows when
to send a signal. With EXP_BASIC_LOGGING=1 the script configures logging itself first.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path

import tether

if os.environ.get("EXP_BASIC_LOGGING") == "1":
    logging.basicConfig(level=logging.INFO, format="user-handler %(message)s")


@tether.experiment(defaults={"mode": "return", "marker": "", "token": "tok"})
def main(cfg, run):
    print(f"stdout line {cfg.token}")
    print(f"stderr line {cfg.token}", file=sys.stderr)
    logging.getLogger("exp").info("logging line %s", cfg.token)
    sys.stdout.flush()
    sys.stderr.flush()
    if cfg.marker:
        tmp = Path(cfg.marker + ".tmp")
        tmp.write_text(run.id)
        os.replace(tmp, cfg.marker)
    if cfg.mode == "block":
        while True:
            time.sleep(60)
    if cfg.mode == "raise":
        raise ValueError(f"boom {cfg.token}")
    return 0


if __name__ == "__main__":
    # A child of a process that ignores SIGINT inherits SIG_IGN; Ctrl-C must raise here.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    main()
