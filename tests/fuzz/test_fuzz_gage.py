"""Fuzz the input surfaces gage projects add: gage files (`tether check`, `tether ops`), `config`
selections (`file#key`, `#key`, wildcards, excludes), flags that rewrite a source file, and the
rewrite itself (what is written reads back as the value given). Every answer is exit 0, or exit
2 with error lines and no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tether.project.sourcekeys import data_keys, python_keys, rewrite

from ._support import CORPUS, VALUE, WORD, call, chdir

BOUNDED = settings(
    derandomize=True,
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
TRAIN_PY = '# train\nlr = 0.1  # rate\nepochs = 3\nname = "mlp"\nprint(lr, epochs, name)\n'
CONF_YAML = "model:\n  depth: 2\n  name: cnn\nseed: 1\n"


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("TETHER_DEBUG", raising=False)
    monkeypatch.setenv("CI", "true")
    (tmp_path / "train.py").write_text(TRAIN_PY)
    (tmp_path / "conf.yaml").write_text(CONF_YAML)
    return tmp_path


selection = st.one_of(
    st.sampled_from(
        [
            "train.py",
            "train.py#lr",
            "#epochs",
            "train.py#*",
            "-train.py#e*",
            "conf.yaml#**",
            "conf.yaml#model.*",
            "*.yaml#**.name",
            "#",
            "-",
            "-#",
            "nofile.py#x",
            "../x.py#y",
            "train.py#a b",
            "train.txt",
        ]
    ),
    st.builds(lambda f, k: f"{f}#{k}", st.sampled_from(["train.py", "", "conf.yaml"]), WORD),
    VALUE,
)
config_value = st.one_of(
    selection,
    st.lists(selection, max_size=4),
    st.builds(
        lambda keys, prefix: {"keys": keys, "prefix": prefix},
        st.one_of(selection, st.lists(selection, max_size=3)),
        st.one_of(st.just("opt."), WORD),
    ),
)
op_key = st.sampled_from(
    ["exec", "config", "default", "version", "progress", "output-summary", "sourcecode", "bogus"]
)
op_value = st.one_of(
    config_value,
    st.booleans(),
    st.integers(-5, 5),
    st.dictionaries(
        st.sampled_from(["run", "stage-runtime", "finalize", "stage-nope", ""]), VALUE, max_size=3
    ),
)
settings_key = st.sampled_from(["$runs-dir", "$namespace", "$project-id", "$nope", "$"])


@BOUNDED
@given(
    ops=st.dictionaries(
        st.one_of(st.sampled_from(["train", "hello", "a.b", "x y"]), WORD),
        st.dictionaries(op_key, op_value, max_size=4),
        max_size=3,
    ),
    top=st.dictionaries(settings_key, VALUE, max_size=2),
)
def test_fuzz_gage_json_files(folder: Path, ops: dict, top: dict) -> None:
    (folder / "gage.json").write_text("// fuzzed\n" + json.dumps({**top, **ops}))
    with chdir(folder):
        call(["check"], multiline_ok=True)
        call(["ops"], multiline_ok=True)


@pytest.mark.parametrize("text", CORPUS[:30])
def test_listed_texts_as_gage_files(folder: Path, text: str) -> None:
    (folder / "gage.toml").write_text(text)
    with chdir(folder):
        call(["check"], multiline_ok=True)


@BOUNDED
@given(
    config=config_value,
    words=st.lists(
        st.builds(
            lambda k, v: f"{k}={v}",
            st.sampled_from(["lr", "epochs", "name", "model.depth", "opt.lr", "nope"]),
            VALUE,
        ),
        max_size=3,
    ),
)
def test_fuzz_selections_and_flags(folder: Path, config: object, words: list[str]) -> None:
    gage = {"train": {"exec": "python train.py", "config": config}}
    (folder / "gage.json").write_text(json.dumps(gage))
    with chdir(folder):
        call(["run", "train", *words, "--preview"], multiline_ok=True)
    assert (folder / "train.py").read_text() == TRAIN_PY  # the project's file stays as it was


scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(blacklist_categories=["Cs"]), max_size=20),
)
value = st.one_of(scalar, st.lists(scalar, max_size=3))


@BOUNDED
@given(new=value)
def test_fuzz_python_rewrite_reads_back(new: object) -> None:
    text = TRAIN_PY
    keys = python_keys(text)
    out = rewrite(text, "python", keys, {"name": new})
    assert python_keys(out)["name"].value == new
    assert out.splitlines()[0] == "# train" and "# rate" in out


@BOUNDED
@given(new=value, fmt=st.sampled_from(["json", "yaml", "toml"]))
def test_fuzz_data_rewrite_reads_back(new: object, fmt: str) -> None:
    texts = {
        "json": '{\n  // c\n  "a": {"b": 1}, "c": "x"\n}\n',
        "yaml": "# c\na:\n  b: 1  # one\nc: x\n",
        "toml": "# c\nc = 'x'\n[a]\nb = 1  # one\n",
    }
    text = texts[fmt]
    keys = data_keys(text, fmt)
    has_null = new is None or (isinstance(new, list) and None in new)
    if fmt == "toml" and has_null:
        with pytest.raises(ValueError):
            rewrite(text, fmt, keys, {"a.b": new})
        return
    out = rewrite(text, fmt, keys, {"a.b": new})
    assert data_keys(out, fmt)["a.b"].value == new
    assert data_keys(out, fmt)["c"].value == "x"
