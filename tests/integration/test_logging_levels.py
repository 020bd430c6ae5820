"""A decorated main keeps the user's logging: their level, their console, one timestamp per line
of output.log; TensorBoard's INFO chatter stays off the console (issue 14, item 9)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ASCTIME = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"  # logging's default %(asctime)s

MAIN = """\
import logging, sys
{setup}
import tether

@tether.experiment(defaults={{"lr": 0.1, "save_dir": None}})
def main(cfg):
    logging.getLogger("train").info("user info")
    logging.getLogger("train").warning("user warning")
    logging.getLogger("tether.check").info("tether info")
    {body}

if __name__ == "__main__":
    main()
    print("ROOT-LEVEL=" + logging.getLevelName(logging.getLogger().level), file=sys.stderr)
"""


def _main(tmp_path: Path, runs: Path, setup: str, body: str = "pass") -> tuple[str, str]:
    """Run the decorated main in a child; (its stderr, its run's output.log)."""
    script = tmp_path / "main.py"
    script.write_text(MAIN.format(setup=setup, body=body))
    env = {**os.environ, "TETHER_RUNS": str(runs)}
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    (log,) = runs.rglob("output.log")
    return proc.stderr, log.read_text()


def test_warning_set_before_main_hides_info(tmp_path: Path, runs_root: Path):
    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    setup = f"logging.basicConfig(level=logging.WARNING, format={fmt!r})"
    err, log = _main(tmp_path, runs_root, setup)
    assert "INFO" not in err  # neither the user's INFO nor tether's
    assert "WARNING train: user warning" in err
    assert "ROOT-LEVEL=WARNING" in err
    (line,) = [x for x in log.splitlines() if "user warning" in x]
    # the user's format stamps the line already: output.log adds no second time in front
    assert re.fullmatch(rf"{ASCTIME} WARNING train: user warning", line), line


def test_unconfigured_logging_shows_info_and_is_left_as_found(tmp_path: Path, runs_root: Path):
    """Nobody configured logging: tether's handler shows INFO (docs/runs.md#logging), and the
    root level is WARNING again once the run is over."""
    err, log = _main(tmp_path, runs_root, setup="")
    assert "INFO train: user info" in err
    assert "ROOT-LEVEL=WARNING" in err
    (line,) = [x for x in log.splitlines() if "user info" in x]
    assert re.fullmatch(rf"{ASCTIME} INFO train: user info", line), line  # one time, its own


def test_plain_lines_keep_their_utc_stamp(tmp_path: Path, runs_root: Path):
    _, log = _main(tmp_path, runs_root, setup="", body='print("loss=0.5")')
    (line,) = [x for x in log.splitlines() if x.endswith("loss=0.5")]
    stamp, _, text = line.partition(" ")
    assert stamp.endswith("Z") and text == "loss=0.5"


EVENTS = """
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.summary.writer.event_file_writer import EventFileWriter
    writer = EventFileWriter(str(cfg.save_dir) + "/tb")
    for step in range(3):
        value = Summary.Value(tag="loss", simple_value=1.0 / (step + 1))
        writer.add_event(Event(step=step, wall_time=1.0 + step, summary=Summary(value=[value])))
    writer.close()
"""


@pytest.mark.parametrize("tensorboard_level", [None, "INFO"])
def test_tensorboard_reader_info_stays_off_the_console(
    tmp_path: Path, runs_root: Path, tensorboard_level: str | None
):
    pytest.importorskip("tensorboard")
    setup = ""
    if tensorboard_level:  # a level the user chose is theirs: then the lines do show
        setup = f"logging.getLogger('tensorboard').setLevel(logging.{tensorboard_level})"
    body = textwrap.indent(textwrap.dedent(EVENTS), "    ").strip()
    err, _ = _main(tmp_path, runs_root, setup=setup, body=body)
    assert ("No path found after" in err) == (tensorboard_level == "INFO")
