"""Tables that never lie: `tether runs` and `tether compare` at 80, 120 and 200 columns of a real
pseudo-terminal and piped, `--columns`, `[runs] columns` of tether.toml, `--wide` and `--tsv`."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import re
import subprocess
from pathlib import Path

import pytest

import tether
from tests.conftest import BIN, run_cli
from tether.cli.render import format_metric
from tether.cli.tables import Column, fit

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
WIDTHS = (80, 120, 200)

# Values whose 4-significant-digit forms are easy to spot cut: 0.1505 cut would read 0.150.
METRICS = [
    {"eval/acc": 0.96667, "eval/loss": 0.15054, "train/loss": 0.0534621, "train/acc": 0.98218},
    {"eval/acc": 0.95111, "eval/loss": 0.36775, "train/loss": 0.2015168, "train/acc": 0.97030},
    {"eval/acc": 0.96444, "eval/loss": 1234.5678, "train/loss": 12.3456789, "train/acc": 0.98292},
]


def tty_cli(
    *args: str, width: int, cwd: Path | None = None, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """`tether ARGS` with its stdout on a pseudo-terminal COLUMNS wide: (exit code, the
    terminal's text without colours, stderr)."""
    master, slave = pty.openpty()
    full_env = {**os.environ, "COLUMNS": str(width), "NO_COLOR": "1", **(env or {})}
    full_env.pop("LINES", None)
    proc = subprocess.Popen(
        [str(BIN / "tether"), *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=full_env,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    err = proc.stderr.read().decode() if proc.stderr else ""
    code = proc.wait()
    text = ANSI.sub("", b"".join(chunks).decode()).replace("\r\n", "\n")
    return code, text, err


def _make() -> list[str]:
    ids = []
    for i, metrics in enumerate(METRICS):
        cfg = {"lr": [0.01, 0.003, 0.03][i], "model": {"kind": ["logistic", "svm", "mlp"][i]}}
        with tether.start_run(cfg, name="train", snapshot=False, capture_output=False) as run:
            run.log_metrics(metrics, step=3)
            if i == 1:
                run.set_label("a long label that has to give way to the numbers")
        ids.append(run.id)
    return ids


@pytest.fixture
def made() -> list[str]:
    return _make()


def _table(text: str) -> tuple[list[str], list[list[str]], list[str]]:
    """(header words, the words of each row, the note lines) of a printed table."""
    lines = [line for line in text.splitlines() if line.strip()]
    header = lines[0].split()
    rows, notes = [], []
    for line in lines[1:]:
        (rows if line.split()[0].isdigit() or re.match(r"[0-9a-f]{8}", line) else notes).append(
            line
        )
    return header, [r.split() for r in rows], notes


def _check_numbers_whole(text: str, width: int | None, keys: list[str]) -> None:
    """Every metric of `keys` is either shown, each value whole (its 4-digit form a word of its
    row), or named in the note of what was left out; no line of the table is wider than the
    terminal."""
    header, rows, notes = _table(text)
    note = " ".join(notes)
    if width is not None:
        assert all(len(line) <= width for line in text.splitlines()), text
    newest_first = METRICS[::-1]
    for key in keys:
        shown = [h for h in header if h in (key, f"metrics.{key}")]
        if not shown:
            assert "not shown (too wide)" in note and key in note, text
            continue
        for row, metrics in zip(rows, newest_first, strict=True):
            assert format_metric(metrics[key]) in row, (key, row, text)


# -- the layout, on its own ------------------------------------------------------------------
def test_fit_drops_whole_columns_from_the_right_and_shortens_text_first():
    cols = [
        Column("#", ["1"], keep=True, numeric=True),
        Column("id", ["01a2b3c4-5"], keep=True),
        Column("label", ["a label far too long to keep whole"], shrink=True),
        Column("eval/loss", ["0.1505"], numeric=True),
        Column("train/loss", ["12.35"], numeric=True),
    ]
    shown, dropped = fit(cols, 40)
    assert [c.header for c in shown] == ["#", "id", "label", "eval/loss"]
    assert [c.header for c in dropped] == ["train/loss"]
    assert shown[3].width == len("eval/loss")  # a number column is never narrower than it needs
    assert sum(c.width for c in shown) + 2 * (len(shown) - 1) <= 40
    # No width (a pipe): everything whole.
    shown, dropped = fit(cols, None)
    assert dropped == [] and shown[2].width == len("a label far too long to keep whole")
    # Never below a header, never dropping the kept ones, however narrow.
    shown, dropped = fit(cols, 5)
    assert [c.header for c in shown] == ["#", "id"]


# -- tether runs --------------------------------------------------------------------------------
@pytest.mark.parametrize("width", WIDTHS)
def test_runs_at_a_terminal_shows_numbers_whole_or_not_at_all(made, width):
    code, text, err = tty_cli("runs", width=width)
    assert code == 0, err
    header, rows, _ = _table(text)
    assert header[:5] == ["#", "id", "name", "status", "started"]
    assert [r[0] for r in rows] == ["1", "2", "3"]
    # The short ids are whole prefixes of the ids, one per run.
    assert len({r[1] for r in rows}) == 3
    for row, run_id in zip(rows, made[::-1], strict=True):
        assert run_id.startswith(row[1]) and len(row[1]) >= 8
    _check_numbers_whole(text, width, list(METRICS[0]))
    if width == 200:
        assert "not shown" not in text  # room for every column


def test_runs_piped_is_never_shortened(made):
    proc = run_cli("runs", env={"COLUMNS": "80"}, check=True)
    assert "not shown" not in proc.stdout and "…" not in proc.stdout
    assert "a long label that has to give way to the numbers" in proc.stdout
    _check_numbers_whole(proc.stdout, None, list(METRICS[0]))
    header, _, _ = _table(proc.stdout)
    # The metrics are columns of their own, headed by their key.
    assert header[-4:] == ["eval/acc", "eval/loss", "train/acc", "train/loss"]


def test_runs_wide_prints_every_column_at_a_terminal(made):
    code, text, _ = tty_cli("runs", "--wide", width=80)
    assert code == 0 and "not shown" not in text
    assert "a long label that has to give way to the numbers" in text
    _check_numbers_whole(text, None, list(METRICS[0]))


def test_columns_replace_the_defaults_and_values_stay_whole(made):
    for width in WIDTHS:
        code, text, err = tty_cli(
            "runs", "--columns", "config.model.kind,metrics.eval/loss,metrics.eval/acc",
            width=width,
        )  # fmt: skip
        assert code == 0, err
        header, rows, _ = _table(text)
        assert header == ["#", "id", "config.model.kind", "metrics.eval/loss", "metrics.eval/acc"]
        assert [r[2:] for r in rows] == [
            ["mlp", "1235", "0.9644"],
            ["svm", "0.3678", "0.9511"],
            ["logistic", "0.1505", "0.9667"],
        ]


def test_tsv_has_every_value_in_full(made):
    out = run_cli("runs", "--tsv", "--columns", "name,metrics.eval/loss,config.lr", check=True)
    lines = out.stdout.splitlines()
    assert lines[0].split("\t") == ["#", "id", "name", "metrics.eval/loss", "config.lr"]
    assert lines[1].split("\t") == ["1", made[2], "train", "1234.5678", "0.03"]
    assert lines[3].split("\t") == ["3", made[0], "train", "0.15054", "0.01"]
    both = run_cli("runs", "--tsv", "--csv")
    assert both.returncode == 2 and "--csv and --tsv do not go together" in both.stderr


def test_a_projects_default_columns_apply(made, tmp_path: Path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "tether.toml").write_text(
        '[runs]\ncolumns = ["name", "metrics.train/loss", "config.lr"]\n'
    )
    for width in (80, None):
        if width is None:
            text = run_cli("runs", cwd=project, check=True).stdout
        else:
            code, text, err = tty_cli("runs", width=width, cwd=project)
            assert code == 0, err
        header, rows, _ = _table(text)
        assert header == ["#", "id", "name", "metrics.train/loss", "config.lr"]
        assert [r[3:] for r in rows] == [
            ["12.35", "0.03"],
            ["0.2015", "0.003"],
            ["0.05346", "0.01"],
        ]
    # --columns still chooses; --json carries the project's columns.
    header, _, _ = _table(run_cli("runs", "--columns", "status", cwd=project, check=True).stdout)
    assert header == ["#", "id", "status"]
    listing = json.loads(run_cli("runs", "--json", cwd=project, check=True).stdout)
    assert listing[0]["columns"] == {
        "name": "train",
        "metrics.train/loss": 12.3456789,
        "config.lr": 0.03,
    }
    rows = list(csv.DictReader(io.StringIO(run_cli("runs", "--csv", cwd=project).stdout)))
    assert rows[0]["config.lr"] == "0.03"


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('[runs]\ncolumns = "name"\n', "runs.columns: expected a list of fields"),
        ('[runs]\ncolumns = ["name", "colour"]\n', "runs.columns: 'colour': unknown field"),
        ('runs = ["name"]\n', "runs: expected a table such as `[runs] columns = "),
    ],
)
def test_a_bad_project_columns_setting_is_one_line(made, tmp_path: Path, toml, expected):
    (tmp_path / "tether.toml").write_text(toml)
    proc = run_cli("runs", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    [line] = proc.stderr.splitlines()
    assert line.startswith(f"tether: error: {tmp_path / 'tether.toml'}: ") and expected in line


def test_an_unknown_key_of_the_runs_table_is_a_warning(made, tmp_path: Path):
    (tmp_path / "tether.toml").write_text('[runs]\ncolums = ["name"]\n')
    proc = run_cli("runs", cwd=tmp_path, check=True)
    assert proc.stderr == (
        f"tether: warning: {tmp_path / 'tether.toml'}: runs.colums: unknown key, ignored; "
        "expected columns (did you mean 'columns'?)\n"
    )
    assert _table(proc.stdout)[0][:3] == ["#", "id", "name"]  # the default columns


def test_the_runs_key_is_a_known_top_level_key(made, tmp_path: Path):
    (tmp_path / "tether.toml").write_text('[runs]\ncolumns = ["name"]\n')
    proc = run_cli("check", cwd=tmp_path)
    assert "unknown top-level key" not in proc.stderr


# -- tether compare ---------------------------------------------------------------------------
@pytest.mark.parametrize("width", [*WIDTHS, None])
def test_compare_keeps_numbers_and_header_words_whole(made, width):
    if width is None:
        code, text, err = 0, run_cli("compare", "1:3", env={"COLUMNS": "80"}).stdout, ""
    else:
        code, text, err = tty_cli("compare", "1:3", width=width)
    assert code == 0, err
    header, rows, notes = _table(text)
    every = ["id", "name", "status", "config.lr", "config.model.kind"]
    every += [f"metrics.{k}" for k in sorted(METRICS[0])]
    assert header == every[: len(header)]  # whole words, in order; the rest named in the note
    left_out = every[len(header) :]
    if left_out:
        assert width is not None and all(name in " ".join(notes) for name in left_out[:6])
    if width is None or width == 200:
        assert left_out == []
    _check_numbers_whole(text, width, [h[len("metrics.") :] for h in header if "/" in h])
    assert len(rows) == 3


def test_compare_tsv(made):
    lines = run_cli("compare", "1:3", "--tsv", check=True).stdout.splitlines()
    assert lines[0].split("\t")[:4] == ["id", "name", "status", "config.lr"]
    assert lines[1].split("\t")[:4] == [made[2], "train", "completed", "0.03"]
    assert "1234.5678" in lines[1].split("\t")
