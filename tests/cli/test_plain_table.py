"""The plain listing (`tether runs` into a pipe, printed without rich) is byte for byte what
rich prints into a pipe, and gives way to rich whenever rich would do something else."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from tether.cli.tables import Column, plain_text, print_table


def _table() -> list[Column]:
    return [
        Column("#", ["1", "2", "10"], numeric=True, keep=True),
        Column("id", ["019cdc7a-9", "019cdc78", "019cdc77-f"], keep=True),
        Column("name", ["train", "prepare", ""], shrink=True),
        Column("status", ["completed", "failed", "running"], styles=["green", "red", "cyan"]),
        Column("loss", ["0.5", "12.35", ""], numeric=True),
        Column("label", ["", "", ""], shrink=True),
    ]


def _rich(columns: list[Column], notes: list[str]) -> str:
    out = io.StringIO()
    console = Console(file=out, highlight=False)  # a StringIO is no terminal
    print_table(console, columns)
    for note in notes:
        console.print(note, style="dim", markup=False, soft_wrap=True)
    return out.getvalue()


NOTES = [
    "3 of 40 runs shown (-n N or --all for more)",
    "# numbers this listing only: pass ids to other commands",
]


def test_plain_text_is_what_rich_prints_into_a_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("TTY_COMPATIBLE", raising=False)
    monkeypatch.setattr("sys.stdout", io.StringIO())
    text = plain_text(_table(), NOTES)
    assert text is not None
    assert text == _rich(_table(), NOTES)
    assert text.splitlines()[0] == " #  id          name     status      loss  label"


@pytest.mark.parametrize("cell", ["naïve", "tab\there", "a\nb", "\x07bell"])
def test_text_rich_would_measure_or_change_goes_through_rich(
    monkeypatch: pytest.MonkeyPatch, cell: str
) -> None:
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("TTY_COMPATIBLE", raising=False)
    monkeypatch.setattr("sys.stdout", io.StringIO())
    table = _table()
    table[2].cells[0] = cell
    assert plain_text(table, NOTES) is None
    assert plain_text(_table(), ["an emoji :smile: code"]) is None


def test_a_terminal_or_forced_colour_goes_through_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdout", io.StringIO())
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert plain_text(_table(), NOTES) is None
    monkeypatch.delenv("FORCE_COLOR")
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    assert plain_text(_table(), NOTES) is None
    monkeypatch.delenv("TTY_COMPATIBLE")

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdout", Tty())
    assert plain_text(_table(), NOTES) is None
