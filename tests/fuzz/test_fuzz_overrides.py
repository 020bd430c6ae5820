"""Fuzz the new input surfaces of a decorated main: Hydra's override grammar, the sweep
functions of `-m`, and config groups. Every input gives a config or one ConfigError of one
line; nothing else escapes, and nothing hangs (inputs are bounded, the seed fixed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tether.config.argv import CliArgs
from tether.config.compose import build_config
from tether.config.multirun import plan_multirun
from tether.config.overrides import parse_override
from tether.config.sweeps import grid_points, parse_sweep, split_multirun
from tether.errors import ConfigError

from ._support import CORPUS

# The grammar's own characters, weighted towards the ones with a meaning.
ALPHABET = st.sampled_from(
    [*"abcxyz019_-.:,=+~[]{}()'\"\\$@%*?|/ #!é", "${", "}", "\t", "inf", "null", "true"]
)
TEXT = st.lists(ALPHABET, max_size=24).map("".join)
KEYS = [
    "a",
    "b",
    "lst",
    "section",
    "section.x",
    "model",
    "model.width",
    "+new",
    "++a",
    "~a",
    "~model",
]
FUNCS = [
    "range",
    "choice",
    "interval",
    "glob",
    "sort",
    "shuffle",
    "tag",
    "linspace",
    "logspace",
    "uniform",
    "loguniform",
    "int",
    "float",
    "str",
    "bool",
    "nope",
]
CALL = st.builds(lambda f, args: f"{f}({args})", st.sampled_from(FUNCS), TEXT)
VALUE = st.one_of(TEXT, CALL, st.sampled_from(CORPUS))
WORD = st.one_of(st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS), VALUE), TEXT)


@pytest.fixture(scope="module")
def conf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz-conf")
    (root / "config.yaml").write_text(
        "defaults: [{model: small}, _self_]\na: 1\nb: x\nlst: [1, 2]\nsection: {x: 1}\n"
    )
    (root / "model").mkdir()
    (root / "model" / "small.yaml").write_text("width: 8\n")
    (root / "model" / "wide.yaml").write_text("width: 64\n")
    return root / "config.yaml"


def _one_line(exc: ConfigError) -> None:
    text = str(exc)
    assert text and "\n" not in text and "Traceback" not in text
    assert len(text) < 2000


def _answer(fn: object, *args: object, **kwargs: object) -> None:
    try:
        fn(*args, **kwargs)  # type: ignore[operator]
    except ConfigError as exc:
        _one_line(exc)


SETTINGS = settings(
    derandomize=True,
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@SETTINGS
@given(word=WORD)
def test_one_override_word(word: str) -> None:
    _answer(parse_override, word)


@SETTINGS
@given(words=st.lists(WORD, max_size=4))
def test_overrides_compose_or_refuse(conf: Path, words: list[str]) -> None:
    _answer(build_config, conf, CliArgs(overrides=words))


@SETTINGS
@given(key=st.sampled_from(["a", "model", "lst"]), text=VALUE)
def test_sweep_texts(key: str, text: str) -> None:
    _answer(parse_sweep, key, text)


def _plan(conf: Path, words: list[str]) -> None:
    fixed, sweeps = split_multirun(words)
    if not sweeps:
        return
    total = 1
    for s in sweeps:
        total *= len(s.values or [1])
    if total > 64:  # bounded: a large grid composes one config per point
        _answer(grid_points, sweeps)
        return
    plan_multirun(conf, CliArgs(overrides=fixed), sweeps)


@settings(
    derandomize=True,
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    words=st.lists(
        st.one_of(
            WORD,
            st.builds(
                lambda k, v: f"{k}={v}",
                st.sampled_from(["model", "a", "b", "model.width"]),
                st.sampled_from(
                    [
                        "small,wide",
                        "glob(*)",
                        "glob(s*)",
                        "smal,wide",
                        "range(3)",
                        "1,x",
                        "choice(small)",
                        "glob(zz)",
                        "sort(wide,small)",
                        "{a: 1},{b: 2}",
                    ]
                ),
            ),
        ),
        max_size=3,
    )
)
def test_multirun_plans_or_refuse(conf: Path, words: list[str]) -> None:
    _answer(_plan, conf, words)
