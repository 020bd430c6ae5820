"""The decorated main of `tether.experiment` in-process: the listed bad values (save_dir
included) answer in one line, exit 2, and leave no run behind."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

import tether

from ._support import chdir, check_answer


@tether.experiment(defaults={"lr": 0.1, "save_dir": "out", "name": "x"})
def train(cfg: object) -> None:
    raise AssertionError("bad input must not reach the function")


@pytest.mark.parametrize(
    "item",
    [
        "save_dir=/proc/self",
        "save_dir=/",
        "save_dir=.",
        "lr=[1,2",
        "lr=]",
        "lr={",
        "name=a#b",  # Hydra's grammar: `a: b: c` and `*a` are strings, `#` must be quoted
        "name=(x",
        "name=!!binary AAA",
        "lr=" + "9" * 5000,
    ],
)
def test_listed_inputs_of_a_decorated_main(
    item: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TETHER_DEBUG", raising=False)
    monkeypatch.setenv("TETHER_RUNS", str(tmp_path / "runs"))
    (tmp_path / "keep.txt").write_text("mine\n")
    err = io.StringIO()
    code = 0
    with (
        chdir(tmp_path),
        contextlib.redirect_stderr(err),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        try:
            train.cli([item])  # type: ignore[attr-defined]
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    check_answer(code, err.getvalue(), item)
    assert code == 2, err.getvalue()
    assert item.partition("=")[0] in err.getvalue()
    runs = tmp_path / "runs"
    assert not runs.exists() or not [p for p in runs.iterdir() if len(p.name) > 30]
