"""Fuzz the command line of a decorated main (tether.config): overrides and flags."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tether.config.cli import clicfg

from ._support import CORPUS, VALUE, WORD, check_answer

DEFAULTS = {"lr": 0.1, "epochs": 3, "name": "mlp", "save_dir": "out", "model": {"depth": 2}}
KEYS = ["lr", "epochs", "name", "save_dir", "model", "model.depth", "+new", "", "+", "a..b"]
FLAGS = ["--config", "-c", "--experiment", "-e", "--overrides-path", "-o", "--print-config", "--"]

ran: list[object] = []


@clicfg(defaults=DEFAULTS)
def train(cfg: object) -> None:
    ran.append(cfg)


def run_main(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            train.cli(argv)  # type: ignore[attr-defined]
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    check_answer(code, err.getvalue(), argv)
    return code, err.getvalue()


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TETHER_DEBUG", raising=False)


@pytest.mark.parametrize("value", CORPUS)
@pytest.mark.parametrize("key", ["lr", "name", "save_dir", "model"])
def test_listed_values_answer_in_one_line(key: str, value: str) -> None:
    run_main([f"{key}={value}"])


@pytest.mark.parametrize("item", ["lr=[1,2", "lr=]", "lr={", "name=a#b", "name=(x"])
def test_invalid_override_names_the_input(item: str) -> None:
    # Hydra's grammar (tether.config.overrides): the error names the word and how to quote.
    code, err = run_main([item])
    assert code == 2 and repr(item) in err and ("quote" in err or "expected" in err)


word = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS), VALUE),
    st.sampled_from(FLAGS),
    VALUE,
    WORD,
)


@settings(
    derandomize=True,
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(argv=st.lists(word, max_size=4))
def test_fuzz_decorated_main(argv: list[str], tmp_path: Path) -> None:
    run_main(argv)
