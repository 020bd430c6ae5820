"""Hydra's override grammar (tether.config.overrides) and the sweeps of `-m`
(tether.config.sweeps). What Hydra itself composes is compared in
tests/integration/test_hydra_parity.py; these check the reader and the sweep API alone."""

from __future__ import annotations

import math

import pytest

from tether.config.overrides import Call, Choices, OverrideError, parse_override
from tether.config.sweeps import (
    grid_points,
    parse_sweep,
    point_overrides,
    random_points,
    split_multirun,
)
from tether.errors import ConfigError


@pytest.mark.parametrize(
    ("word", "value"),
    [
        ("a=1", 1),
        ("a=-0", 0),
        ("a=1_000", 1000),
        ("a=010", "010"),
        ("a=12:30", "12:30"),
        ("a=yes", "yes"),
        ("a=", ""),
        ("a=  ", ""),
        ("a=-.5", -0.5),
        ("a=1e-3", 0.001),
        ("a=+inf", math.inf),
        ("a=TRUE", True),
        ("a=Null", None),
        ("a=infinity", "infinity"),
        ("a=1-2", "1-2"),
        ("a='1'", "1"),
        ('a="x, y"', "x, y"),
        ("a='it\\'s'", "it's"),
        ("a='ends\\\\'", "ends\\"),
        ("a=x\\,y", "x,y"),
        ("a=\\\\", "\\"),
        ("a=c:\\dir", "c:\\dir"),
        ("a=[1, [2, 'b c'], {k: v}]", [1, [2, "b c"], {"k": "v"}]),
        ("a={x:1}", {"x": 1}),
        ("a={x: y:z}", {"x": "y:z"}),
        ("a={1: 2, false: 3}", {1: 2, False: 3}),
        ("a=${b.c}", "${b.c}"),
        ("a=x${oc.env:H,d}y", "x${oc.env:H,d}y"),
        ("a=int(3.9)", 3),
        ("a=int('7')", 7),
        ("a=float(1)", 1.0),
        ("a=str(1.5)", "1.5"),
        ("a=str(false)", "false"),
        ("a=bool(0)", False),
        ("a=bool('True')", True),
        ("a=str([1, {b: 2}])", ["1", {"b": "2"}]),
    ],
)
def test_values_are_read_as_hydra_reads_them(word: str, value: object):
    got = parse_override(word).value
    if isinstance(value, float) and math.isnan(value):
        assert math.isnan(got)
    else:
        assert got == value and type(got) is type(value)


@pytest.mark.parametrize(
    ("word", "op", "key", "has_value"),
    [
        ("a.b=1", "set", "a.b", True),
        ("+a=1", "add", "a", True),
        ("++a.b-c=1", "force", "a.b-c", True),
        ("~a", "delete", "a", False),
        ("~a=3", "delete", "a", True),
        ("lst.0=1", "set", "lst.0", True),
        ("db/mysql=x", "set", "db/mysql", True),
    ],
)
def test_the_prefix_says_what_to_do(word: str, op: str, key: str, has_value: bool):
    ov = parse_override(word)
    assert (ov.op, ov.key, ov.has_value) == (op, key, has_value)


@pytest.mark.parametrize(
    ("word", "says"),
    [
        ("a", "'=' and a value"),
        ("=1", "a key"),
        (" a=1", "a key"),
        ("a..b=1", "'=' after the key"),
        ("a@pkg=1", "package overrides"),
        ("a=x#y", "column 4"),
        ("a=(1)", "column 3"),
        ("a=[1", "',' or ']'"),
        ("a={x}", "':' after a dict key"),
        ("a={x: }", "a value after ':'"),
        ("a=1,", "expected a value"),
        ("a='open", "a closing '"),
        ("a=${open", "closing the interpolation"),
        ("a=[1] ", "the end of the value"),
        ("a=foo(1)", "unknown function 'foo'"),
        ("a=int(1, 2)", "takes one value"),
        ("a=int(null)", "null cannot be cast"),
        ("a=int('x')", "invalid literal"),
        ("a=bool('yes')", "cannot cast 'yes' to bool"),
        ("a=" + "[" * 150, "nested"),
        ("a=" + "9" * 5000, "digits"),
    ],
)
def test_what_the_grammar_refuses_is_one_line_naming_it(word: str, says: str):
    with pytest.raises(OverrideError) as err:
        parse_override(word)
    text = str(err.value)
    assert says in text and "\n" not in text and len(text) < 400


def test_sweeps_are_values_of_their_own():
    assert parse_override("a=1,2").value == Choices((1, 2), "1,2")
    call = parse_override("a=range(1, 5, step=2)").value
    assert isinstance(call, Call) and call.name == "range" and call.kwargs == {"step": 2}
    assert parse_override("a='1,2'").value == "1,2"
    assert parse_override("a=[1,2]").value == [1, 2]


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("0.1,0.01", [0.1, 0.01]),
        ("small, wide", ["small", "wide"]),
        ("choice(a, [1, 2])", ["a", [1, 2]]),
        ("range(3)", [0, 1, 2]),
        ("range(1,10,4)", [1, 5, 9]),
        ("range(0,1,0.25)", [0.0, 0.25, 0.5, 0.75]),
        ("range(5,0,-2)", [5, 3, 1]),
        ("sort(3,1,2)", [1, 2, 3]),
        ("sort(3,1,2, reverse=true)", [3, 2, 1]),
        ("sort(choice(b,a))", ["a", "b"]),
        ("linspace(0,1,3)", [0.0, 0.5, 1.0]),
        ("logspace(-2,0,3)", [0.01, 0.1, 1.0]),
        ("7", [7]),
    ],
)
def test_parse_sweep_gives_the_grid_values(text: str, values: list[object]):
    sweep = parse_sweep("k", text)
    assert sweep.values == values and sweep.distribution is None


@pytest.mark.parametrize(
    ("text", "kind", "low", "high"),
    [
        ("interval(0, 1)", "uniform", 0.0, 1.0),
        ("uniform(-1,1)", "uniform", -1.0, 1.0),
        ("loguniform(1e-4,1e-1)", "loguniform", 1e-4, 0.1),
    ],
)
def test_parse_sweep_gives_distributions(text: str, kind: str, low: float, high: float):
    sweep = parse_sweep("lr", text)
    d = sweep.distribution
    assert sweep.values is None and d is not None
    assert (d.kind, d.low, d.high) == (kind, low, high)


def test_glob_is_left_for_the_group():
    sweep = parse_sweep("model", "glob([s*, w*], exclude=wide)")
    assert sweep.glob == (("s*", "w*"), ("wide",)) and sweep.values is None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("range(0)", "empty"),
        ("range(1,2,0)", "step must not be 0"),
        ("range(100000)", "more than 10000"),
        ("linspace(0,1,0)", "num must be"),
        ("logspace(0,400,2)", "-300..300"),
        ("interval(1,0)", "low < high"),
        ("loguniform(0,1)", "0 < low"),
        ("uniform(a,b)", "finite numbers"),
        ("choice()", "at least one"),
        ("shuffle(1,2)", "not supported"),
        ("tag(x, choice(1,2))", "not supported"),
        ("glob()", "glob takes"),
    ],
)
def test_bad_sweeps_are_one_line(text: str, says: str):
    with pytest.raises(ConfigError) as err:
        parse_sweep("k", text)
    assert says in str(err.value) and "\n" not in str(err.value)


def test_split_multirun_keeps_fixed_words_and_orders_sweeps():
    fixed, sweeps = split_multirun(["a=1", "optim.lr=0.1,0.01", "+b=x", "seed=range(2)"])
    assert fixed == ["a=1", "+b=x"]
    assert [(s.key, s.values) for s in sweeps] == [("optim.lr", [0.1, 0.01]), ("seed", [0, 1])]
    with pytest.raises(ConfigError, match="swept twice"):
        split_multirun(["a=1,2", "a=3,4"])
    with pytest.raises(ConfigError, match="cannot be swept"):
        split_multirun(["~a=1,2"])


def test_grid_points_vary_the_first_sweep_slowest():
    _, sweeps = split_multirun(["a=1,2", "b=x,y,z"])
    points = grid_points(sweeps)
    assert points[:3] == [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 1, "b": "z"}]
    assert len(points) == 6
    ovs = point_overrides(sweeps, points[-1])
    assert [(o.key, o.value) for o in ovs] == [("a", 2), ("b", "z")]


def test_a_distribution_needs_random_and_random_is_seeded():
    _, sweeps = split_multirun(["lr=loguniform(1e-4,1e-1)", "opt=adam,sgd"])
    with pytest.raises(ConfigError, match="add --random"):
        grid_points(sweeps)
    one, two = random_points(sweeps, 5, seed=3), random_points(sweeps, 5, seed=3)
    assert one == two and len(one) == 5
    assert all(1e-4 <= p["lr"] <= 0.1 and p["opt"] in ("adam", "sgd") for p in one)
    assert random_points(sweeps, 5, seed=4) != one


def test_a_huge_grid_is_refused():
    _, sweeps = split_multirun(["a=range(1000)", "b=range(1000)"])
    with pytest.raises(ConfigError, match="1000000 points"):
        grid_points(sweeps)
