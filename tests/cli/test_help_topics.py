"""`tether help [TOPIC]`: the docs pages in the terminal (issue 14, item 6)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

from tests.conftest import BIN, ROOT, run_cli


def test_help_lists_every_page_as_a_topic():
    out = run_cli("help", check=True).stdout
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    pages = sorted(p.stem for p in (ROOT / "docs").glob("*.md") if p.stem != "index")
    assert listed == pages
    assert "queries" in listed and "operations" in listed and "launch" in listed
    assert "Finding runs: --where, --sort, --columns" in out  # each with its page's title


def test_help_topic_piped_is_the_page_as_written():
    out = run_cli("help", "queries", check=True).stdout
    assert out == (ROOT / "docs" / "queries.md").read_text(encoding="utf-8")
    assert run_cli("help", "queries.md", check=True).stdout == out


def test_unknown_topic_is_one_line_with_a_suggestion():
    proc = run_cli("help", "quries")
    assert proc.returncode == 2
    assert proc.stderr == "tether: error: no help topic 'quries'; did you mean 'queries'?\n"
    assert "did you mean 'operations'" in run_cli("help", "oper").stderr  # a prefix is enough


def test_help_on_a_terminal_is_rendered():
    """On a tty the page goes through rich's Markdown: the fences and `#` marks are gone."""
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "100", "TERM": "xterm"}
    env.pop("PAGER", None)
    proc = subprocess.Popen(
        [str(BIN / "tether"), "help", "queries"], stdout=slave, stderr=slave, env=env
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed its side
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait() == 0
    text = b"".join(chunks).decode("utf-8", "replace")
    assert "Finding runs" in text
    assert "# Finding runs" not in text and "```" not in text and "<!-- doctest" not in text
    assert "\x1b[" in text  # styled


def test_piped_help_imports_no_rich():
    code = (
        "import sys\n"
        "from tether.cli.main import main\n"
        "try:\n    main(['help', 'queries'])\nexcept SystemExit:\n    pass\n"
        "print('RICH=' + str('rich' in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "RICH=False"
