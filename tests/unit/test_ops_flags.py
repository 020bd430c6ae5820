"""`k=v` flags of `tether run`: YAML typing, checks against the op, batch functions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.errors import TetherError
from tether.ops.flags import (
    FlagError,
    Sampler,
    fit,
    flag_words,
    load_value,
    parse_flags,
    parse_function,
)
from tether.project.model import FlagDef, OpDef


def make_op(**defaults: object) -> OpDef:
    flags = {k: FlagDef(k, v) for k, v in defaults.items()}
    return OpDef(name="train", exec="python train.py", flags=flags)


OP = make_op(lr=0.1, epochs=10, opt="adam", debug=False, layers=[64, 64], extra=None)


def error_of(words: list[str], op: OpDef = OP) -> str:
    with pytest.raises(FlagError) as info:
        parse_flags(op, words)
    return str(info.value)


# -- typing -----------------------------------------------------------------------------------
def test_values_are_typed_like_yaml_and_fitted_to_the_default():
    spec = parse_flags(OP, ["lr=0.5", "epochs=3", "opt=sgd", "debug=true", "extra=[1, 2]"])
    assert spec.fixed == {"lr": 0.5, "epochs": 3, "opt": "sgd", "debug": True}
    # A flag without a default takes any value; its list is a batch like any other.
    assert spec.grid == {"extra": [1, 2]}
    assert not spec.sampled


def test_numbers_interchange_int_and_float():
    spec = parse_flags(OP, ["lr=1", "epochs=5.0"])
    assert spec.fixed["lr"] == 1.0 and isinstance(spec.fixed["lr"], float)
    assert spec.fixed["epochs"] == 5 and isinstance(spec.fixed["epochs"], int)
    assert parse_flags(OP, ["epochs=2.5"]).fixed["epochs"] == 2.5
    assert parse_flags(OP, ["lr=[1.0,2]"]).grid["lr"] == [1.0, 2.0]
    assert all(isinstance(v, float) for v in parse_flags(OP, ["lr=[1.0,2]"]).grid["lr"])
    assert parse_flags(OP, ["epochs=linspace(10,20,3)"]).grid["epochs"] == [10, 15, 20]


def test_exponent_floats_are_numbers():
    # PyYAML reads 1e-4 as a string (YAML 1.1 wants 1.0e-4); a flag value should not.
    assert parse_flags(OP, ["lr=1e-4"]).fixed["lr"] == 0.0001
    assert parse_flags(OP, ["lr=[1e-3,1E-2]"]).grid["lr"] == [0.001, 0.01]


def test_strings_keep_what_was_typed():
    spec = parse_flags(OP, ["opt=1.0"])
    assert spec.fixed["opt"] == "1.0"  # not 1.0, not "1.0" reformatted
    assert parse_flags(OP, ["opt="]).fixed["opt"] == ""
    assert parse_flags(OP, ["opt='a b'"]).fixed["opt"] == "a b"


def test_list_flag_takes_a_list_as_its_value_not_a_batch():
    spec = parse_flags(OP, ["layers=[128, 32]"])
    assert spec.fixed == {"layers": [128, 32]}
    assert not spec.is_batch


def test_wrong_type_names_flag_op_default_and_value():
    assert error_of(["lr=abc"]) == (
        "flag 'lr' of op 'train' expects a number (default 0.1), got 'abc'"
    )
    assert error_of(["lr=true"]) == (
        "flag 'lr' of op 'train' expects a number (default 0.1), got 'true'"
    )
    assert error_of(["debug=1"]) == (
        "flag 'debug' of op 'train' expects a boolean (true or false) (default false), got '1'"
    )
    assert error_of(["layers=3"]) == (
        "flag 'layers' of op 'train' expects a list (default [64,64]), got '3'"
    )
    assert error_of(["epochs=[1,x]"]) == (
        "flag 'epochs' of op 'train' expects a number (default 10), got 'x'"
    )


def test_choices_are_enforced_with_a_suggestion():
    op = OpDef("train", "x", flags={"opt": FlagDef("opt", "adam", choices=["adam", "sgd"])})
    with pytest.raises(FlagError) as info:
        parse_flags(op, ["opt=adma"])
    assert str(info.value) == (
        "flag 'opt' of op 'train' expects one of adam, sgd, got 'adma' (did you mean 'adam'?)"
    )
    assert parse_flags(op, ["opt=[adam,sgd]"]).grid == {"opt": ["adam", "sgd"]}


# -- names ------------------------------------------------------------------------------------
def test_unknown_flag_suggests_and_lists_the_flags():
    assert error_of(["lrr=0.1"]) == (
        "unknown flag 'lrr' (did you mean 'lr'?); "
        "flags of op 'train': debug, epochs, extra, layers, lr, opt"
    )
    assert error_of(["zzz=1"]) == (
        "unknown flag 'zzz'; flags of op 'train': debug, epochs, extra, layers, lr, opt"
    )
    assert error_of(["x=1"], OpDef("prepare", "x")) == (
        "unknown flag 'x'; op 'prepare' has no flags"
    )


def test_malformed_words():
    assert error_of(["lr"]) == (
        "expected a flag assignment k=v, got 'lr'; "
        "flags of op 'train': debug, epochs, extra, layers, lr, opt"
    )
    assert error_of(["=1"]).startswith("expected a flag assignment k=v, got '=1'")
    assert error_of(["+lr=1"]) == (
        "'+lr=1': ops take only the flags they declare ('+' adds keys to a script's config, "
        "not to an op); declare it in [ops.train.config] of the project file"
    )
    assert error_of(["lr=1", "lr=2"]) == "flag 'lr' is given twice ('1' and '2')"
    assert error_of(["lr=[1,"]).startswith("flag 'lr': cannot read '[1,' as a value")
    assert error_of(["lr=[]"]) == "flag 'lr': an empty list gives no trials"


# -- batch functions --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("range(3)", [0, 1, 2]),
        ("range(1,4)", [1, 2, 3]),
        ("range(0,10,4)", [0, 4, 8]),
        ("range(5,0,-2)", [5, 3, 1]),
        ("range(0,0.5,0.1)", [0.0, 0.1, 0.2, 0.3, 0.4]),
        ("linspace(0,1,5)", [0.0, 0.25, 0.5, 0.75, 1.0]),
        ("linspace(0, 1, 1)", [0.0]),
        ("logspace(-4,-1,4)", [0.0001, 0.001, 0.01, 0.1]),
        ("choice(adam, sgd)", ["adam", "sgd"]),
    ],
)
def test_batch_functions_expand(text: str, values: list[object]):
    assert parse_function("x", text) == values


def test_samplers():
    assert parse_function("lr", "uniform(0, 1)") == Sampler("uniform", (0, 1), "uniform(0, 1)")
    assert parse_function("lr", "loguniform(1e-4,1e-1)") == Sampler(
        "loguniform", (0.0001, 0.1), "loguniform(1e-4,1e-1)"
    )
    assert parse_function("lr", "rangee(1,2)") is None
    assert parse_function("lr", "0.1") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("range(1,2,0)", "flag 'x': range step must not be 0"),
        ("range(5,1)", "flag 'x': range(5,1) is empty"),
        (
            "range()",
            "flag 'x': range takes (stop), (start, stop) or (start, stop, step), got 0 values",
        ),
        ("range(a,3)", "flag 'x': range(...) takes numbers, got 'a'"),
        ("range(0,1e9)", "flag 'x': range(0,1e9) gives more than 10000 values"),
        ("linspace(0,1)", "flag 'x': linspace takes (start, stop, num), got 2 values"),
        ("linspace(0,1,0)", "flag 'x': linspace num must be a whole number >= 1, got 0"),
        ("logspace(0,400,2)", "flag 'x': logspace exponents must lie within -300..300"),
        ("uniform(1,0)", "flag 'x': uniform(low, high) needs low < high, got 1, 0"),
        ("loguniform(0,1)", "flag 'x': loguniform(low, high) needs 0 < low, got 0"),
        ("choice()", "flag 'x': choice takes at least one value"),
        ("uniform(.inf,1)", "flag 'x': uniform(...) takes numbers, got 'inf'"),
    ],
)
def test_batch_function_errors(text: str, message: str):
    with pytest.raises(FlagError) as info:
        parse_function("x", text)
    assert str(info.value) == message


def test_grid_and_sampled_flags_are_kept_apart():
    spec = parse_flags(OP, ["lr=loguniform(1e-4,1e-1)", "epochs=range(1,3)", "opt=sgd"])
    assert spec.sampled["lr"].kind == "loguniform"
    assert spec.grid == {"epochs": [1, 2]}
    assert spec.fixed == {"opt": "sgd"}
    assert list(spec.words) == ["lr", "epochs", "opt"]
    assert spec.is_batch


def test_flag_words_round_trip():
    flags = {"lr": 0.5, "opt": "1", "debug": True, "layers": [1, 2], "extra": "range(1,2)"}
    words = flag_words(flags)
    assert words == ["lr=0.5", "opt='1'", "debug=true", "layers=[1,2]", "extra='range(1,2)'"]
    assert parse_flags(OP, words).fixed == flags


def test_fit_typed_values_from_files():
    assert fit(OP, "lr", 1) == 1.0
    assert fit(OP, "opt", 3) == "3"
    with pytest.raises(FlagError):
        fit(OP, "opt", [1])


def test_load_value_never_evaluates():
    assert load_value("__import__('os').system('false')", "x") == (
        "__import__('os').system('false')"
    )
    assert load_value("2024-01-01", "x") == "2024-01-01"  # dates stay text
    with pytest.raises(FlagError, match="could not determine a constructor"):
        load_value("!!python/object:os.system x", "x")  # no arbitrary tags either


# -- fuzzing ----------------------------------------------------------------------------------
WORDS = st.one_of(
    st.text(max_size=40),
    st.builds(
        lambda k, v: f"{k}={v}",
        st.sampled_from(["lr", "epochs", "opt", "debug", "layers", "extra", "lrr", "", "+lr"]),
        st.one_of(
            st.text(max_size=30),
            st.builds(
                lambda f, a: f"{f}({a})",
                st.sampled_from(
                    ["range", "linspace", "logspace", "uniform", "loguniform", "choice"]
                ),
                st.text(alphabet="0123456789.,-+eE []abinf'\"", max_size=20),
            ),
        ),
    ),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(WORDS, max_size=4))
def test_only_tether_errors_escape_the_flag_parser(words: list[str]):
    try:
        spec = parse_flags(OP, words)
    except TetherError:
        return
    for values in spec.grid.values():
        assert values
