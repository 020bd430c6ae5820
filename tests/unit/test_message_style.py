"""One voice: every error and warning the suite and the docs expect follows one style.

The style (docs/cli.md, "Messages"): the prefix `tether: error: ` or `tether: warning: `, the
message in lower case (a name such as `PATH` or a file name may lead), no final period, and a
hint after a semicolon. The expectations in tests/ and docs/ are what users see, so scanning
them checks the messages themselves; a message that drifts from the style fails here with its
file and line.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tether.cli.main import lower_first

ROOT = Path(__file__).resolve().parents[2]
SCANNED = sorted(
    [*ROOT.glob("tests/**/*.py"), *ROOT.glob("docs/*.md"), ROOT / "README.md"],
)
PREFIX = re.compile(r"tether: (?:error|warning): ")
# The message runs to the end of the string literal or line it sits in.
END = re.compile(r"""\\n|["'`]\s*$|["'`]\)|["'`],|$""")
CAPITALISED = re.compile(r"[A-Z][a-z]")
SECOND_SENTENCE = re.compile(r"[\w'\")\]]\. [A-Z][a-z]")


def messages(path: Path) -> list[tuple[int, str]]:
    found = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        for match in PREFIX.finditer(line):
            rest = line[match.end() :]
            stop = END.search(rest)
            found.append((number, rest[: stop.start()] if stop else rest))
    return found


def problems(text: str) -> list[str]:
    out = []
    if CAPITALISED.match(text):
        out.append("starts with a capital letter")
    body = text.rstrip()
    if body.endswith(".") and not body.endswith("..."):
        out.append("ends with a period")
    if SECOND_SENTENCE.search(body.replace("e.g. ", "").replace("i.e. ", "")):
        out.append("has a second sentence (put the hint after a semicolon)")
    return out


BARE = re.compile(r"""^(?:error|warning): |["'](?:error|warning): """)


@pytest.mark.parametrize("path", SCANNED, ids=lambda p: str(p.relative_to(ROOT)))
def test_one_prefix_everywhere(path: Path) -> None:
    # A decorated main's own errors carry the command's prefix too
    bare = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()!r}"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if BARE.search(line)
    ]
    assert not bare, "\n".join(bare)


def test_the_scan_sees_the_suite() -> None:
    # The scan must find the expectations it is meant to check (else it would pass on nothing).
    total = sum(len(messages(path)) for path in SCANNED)
    assert total > 50


@pytest.mark.parametrize("path", SCANNED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_expected_message_follows_the_style(path: Path) -> None:
    bad = [
        f"{path.relative_to(ROOT)}:{number}: {', '.join(found)}: {text!r}"
        for number, text in messages(path)
        if (found := problems(text))
    ]
    assert not bad, "\n".join(bad)


def test_the_checker_catches_each_rule() -> None:
    assert problems("No such option '-c'") == ["starts with a capital letter"]
    assert problems("no run 'x'.") == ["ends with a period"]
    assert problems("no run 'x'. Try tether runs") == [
        "has a second sentence (put the hint after a semicolon)"
    ]
    assert problems("no run 'x'; see `tether runs`") == []
    assert problems("PATH has no mpiexec; install Open MPI") == []
    assert problems("stopped at ...") == []


def test_click_messages_are_brought_to_lower_case() -> None:
    assert lower_first("No such option: -c") == "no such option: -c"
    assert lower_first("PATH is empty") == "PATH is empty"
    assert lower_first("") == ""
