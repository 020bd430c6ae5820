"""The search space and options of `tether run OP --optimize` (tether.search.space)."""

from __future__ import annotations

import pytest

from tether.errors import TetherError
from tether.ops.flags import parse_flags
from tether.project.model import FlagDef, OpDef
from tether.search.runner import batch_config, sample_flags
from tether.search.space import SearchSpec, check_options, dimensions, grid_size


def _op() -> OpDef:
    op = OpDef(name="train", exec="python train.py")
    op.flags = {
        "lr": FlagDef("lr", 0.1),
        "depth": FlagDef("depth", 3),
        "opt": FlagDef("opt", "sgd"),
        "epochs": FlagDef("epochs", 2),
    }
    return op


def test_sweep_functions_become_dimensions() -> None:
    op = _op()
    spec = parse_flags(
        op, ["lr=loguniform(1e-4,1e-1)", "depth=uniform(2,8)", "opt=[sgd,adam]", "epochs=5"]
    )
    dims = {d.name: d for d in dimensions(op, spec)}
    assert (dims["lr"].kind, dims["lr"].log, dims["lr"].low, dims["lr"].high) == (
        "float",
        True,
        1e-4,
        1e-1,
    )
    assert (dims["depth"].kind, dims["depth"].low, dims["depth"].high) == ("int", 2, 8)
    assert dims["opt"].kind == "categorical" and dims["opt"].choices == ["sgd", "adam"]
    assert "epochs" not in dims and spec.fixed == {"epochs": 5}


def test_a_float_range_on_an_int_flag_stays_float_and_bounds_are_floats() -> None:
    op = _op()
    [dim] = dimensions(op, parse_flags(op, ["depth=uniform(2.5,8)"]))
    assert dim.kind == "float" and dim.low == 2.5


def test_no_searched_flag_is_one_line_with_a_suggestion() -> None:
    op = _op()
    with pytest.raises(TetherError, match="needs a flag to search") as info:
        dimensions(op, parse_flags(op, ["lr=0.1"]))
    assert "loguniform" in (info.value.hint or "")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("bayes", 3, "loss", None, None), "expected one of tpe, random, cmaes, grid"),
        (("tpe", None, "loss", None, None), "needs --trials N"),
        (("tpe", 0, "loss", None, None), "at least 1"),
        (("tpe", 3, None, None, None), "one objective"),
        (("tpe", 3, "loss", "acc", None), "one objective"),
        (("tpe", 3, "loss", None, "early"), "--prune 'early'"),
    ],
)
def test_bad_options(args: tuple, message: str) -> None:
    with pytest.raises(TetherError, match=message):
        check_options(*args)


def test_options_give_the_objective() -> None:
    assert check_options("tpe", 3, None, "acc", "median") == ("acc", "maximize")
    assert check_options("grid", None, "loss", None, None) == ("loss", "minimize")


def test_a_grid_counts_its_points_and_refuses_ranges() -> None:
    op = _op()
    assert grid_size(dimensions(op, parse_flags(op, ["opt=[sgd,adam]", "depth=[1,2,3]"]))) == 6
    with pytest.raises(TetherError, match="not lr's range"):
        grid_size(dimensions(op, parse_flags(op, ["lr=uniform(0.1,0.2)"])))


def test_the_spec_round_trips_and_reads_well_as_a_config() -> None:
    op = _op()
    parsed = parse_flags(op, ["lr=loguniform(1e-4,1e-1)", "opt=[sgd,adam]", "epochs=5"])
    spec = SearchSpec("tpe", 20, "loss", "minimize", dimensions(op, parsed), dict(parsed.fixed))
    assert SearchSpec.from_dict(spec.to_dict()) == spec
    config = batch_config("train", spec)
    assert config["minimize"] == "loss" and config["space"]["opt"] == ["sgd", "adam"]
    assert config["space"]["lr"] == "loguniform(0.0001, 0.1)"
    assert sample_flags(spec) == {"epochs": 5, "lr": 1e-4, "opt": "sgd"}


def test_a_multiruns_sweeps_are_a_search_space() -> None:
    from tether.config.sweeps import parse_sweep
    from tether.search.space import from_sweeps

    sweeps = [
        parse_sweep("optim.lr", "interval(0.1,1)"),
        parse_sweep("lr2", "loguniform(1e-4,1e-1)"),
        parse_sweep("model", "small,wide"),
        parse_sweep("seed", "range(3)"),
    ]
    dims = {d.name: d for d in from_sweeps(sweeps)}
    assert (dims["optim.lr"].kind, dims["optim.lr"].low, dims["optim.lr"].log) == (
        "float",
        0.1,
        False,
    )
    assert dims["lr2"].log and dims["lr2"].high == 0.1
    assert dims["model"].choices == ["small", "wide"] and dims["seed"].choices == [0, 1, 2]
