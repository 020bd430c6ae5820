"""Shared parts of the fuzz tests: the corpus of bad inputs, and one in-process CLI call that
asserts the answer is clean (exit 0, or exit 2 with one line on stderr and no traceback)."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Sequence
from pathlib import Path

from hypothesis import strategies as st

from tether.cli.main import main

# Every input the issue lists, and their neighbours.
CORPUS = [
    "[1,2",
    "]",
    "{",
    "}",
    "a: b: c",
    "*a",
    "&a x",
    "!!binary AAA",
    "!!python/object:os.system x",
    "%x",
    "${oops",
    "${lr}",
    "${env:HOME}",
    "'",
    '"',
    "\x00",
    "\t",
    "[" * 200,
    "{" * 200,
    "9" * 5000,
    "99999999999999999999999",
    "-1",
    "1e99999",
    "nan",
    "/proc/self",
    "/",
    ".",
    "..",
    "@/proc/self",
    "@nofile.yaml",
    "é",
    "\udcff",
    "",
    " ",
    ",",
    ":",
    "=",
    "0x",
    "1:",
    ":0",
    "uniform(1)",
    "uniform(a,b)",
    "loguniform(0,1)",
    "range(0,99999999999)",
    "linspace(0,1,99999999999)",
    "choice()",
]

# Text that stays within what a command line can carry (no NUL, no lone surrogates).
WORD = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40
)
VALUE = st.one_of(
    st.sampled_from([c for c in CORPUS if "\x00" not in c and "\udcff" not in c]), WORD
)


def call(argv: Sequence[str], *, multiline_ok: bool = False) -> tuple[int, str, str]:
    """Run `tether ARGV` in this process; assert a clean answer; return (code, out, err)."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(argv))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    check_answer(code, err.getvalue(), argv, multiline_ok=multiline_ok)
    return code, out.getvalue(), err.getvalue()


def check_answer(code: int, err: str, argv: object, *, multiline_ok: bool = False) -> None:
    assert "Traceback" not in err, f"{argv!r}: {err}"
    if code == 0:
        return
    assert code == 2, f"{argv!r}: exit {code}: {err}"
    lines = err.splitlines()
    errors = [line for line in lines if "error" in line]
    assert errors, f"{argv!r}: no error line: {err!r}"
    if not multiline_ok:
        assert len(errors) == 1, f"{argv!r}: not one error line: {err!r}"


@contextlib.contextmanager
def chdir(path: Path):
    saved = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(saved)
