"""Batch expansion: grids, random search and batch files (CSV, JSON, YAML)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.errors import TetherError
from tether.ops.batch import expand, read_batch_file
from tether.ops.flags import parse_flags
from tether.project.model import FlagDef, OpDef


def make_op(**defaults: object) -> OpDef:
    return OpDef("train", "python train.py", flags={k: FlagDef(k, v) for k, v in defaults.items()})


OP = make_op(lr=0.1, C=1.0, max_iter=100, opt="adam")


def batch_of(words: list[str], **kw: object):
    return expand(OP, parse_flags(OP, words), **kw)  # type: ignore[arg-type]


def error_of(words: list[str], **kw: object) -> str:
    with pytest.raises(TetherError) as info:
        batch_of(words, **kw)
    return str(info.value)


def test_single_run_is_not_a_batch():
    assert batch_of(["lr=0.5"]) is None
    assert error_of(["lr=0.5"], max_runs=3) == (
        "--max-runs and --seed apply to batches; give a flag several values, --random or "
        "--batch FILE"
    )


def test_grid_is_the_product_first_flag_slowest():
    batch = batch_of(["C=[0.1,1,10]", "max_iter=[50,100]", "opt=sgd"])
    assert batch is not None and batch.mode == "grid"
    assert batch.trials == [
        {"C": 0.1, "max_iter": 50, "opt": "sgd"},
        {"C": 0.1, "max_iter": 100, "opt": "sgd"},
        {"C": 1.0, "max_iter": 50, "opt": "sgd"},
        {"C": 1.0, "max_iter": 100, "opt": "sgd"},
        {"C": 10.0, "max_iter": 50, "opt": "sgd"},
        {"C": 10.0, "max_iter": 100, "opt": "sgd"},
    ]
    assert batch.spec == {
        "op": "train",
        "mode": "grid",
        "flags": {"C": "[0.1,1,10]", "max_iter": "[50,100]", "opt": "sgd"},
        "trials": 6,
    }


def test_grid_max_runs_keeps_the_first_trials():
    batch = batch_of(["lr=linspace(0,1,5)"], max_runs=2)
    assert batch is not None
    assert batch.trials == [{"lr": 0.0}, {"lr": 0.25}]
    assert batch.notes == ["--max-runs 2: the first 2 of 5 grid trials"]


def test_grid_refuses_samplers_and_huge_grids():
    assert error_of(["lr=uniform(0,1)"]) == (
        "flag lr samples values (uniform(0,1)); add --random (and --max-runs N) to draw "
        "trials from it"
    )
    assert error_of(["lr=range(1000)", "C=range(1000)"]) == (
        "the grid has 1000000 trials (more than 10000); narrow the values or pass --max-runs N"
    )
    assert len(batch_of(["lr=range(1000)", "C=range(1000)"], max_runs=3).trials) == 3  # type: ignore[union-attr]


def test_random_is_seeded_and_in_range():
    words = ["lr=loguniform(1e-4,1e-1)", "C=uniform(0.5,2)", "opt=[adam,sgd]", "max_iter=7"]
    a = batch_of(words, random_mode=True, max_runs=25, seed=3)
    b = batch_of(words, random_mode=True, max_runs=25, seed=3)
    assert a is not None and b is not None
    assert a.trials == b.trials and len(a.trials) == 25
    for trial in a.trials:
        assert list(trial) == ["lr", "C", "opt", "max_iter"]
        assert 1e-4 <= trial["lr"] <= 0.1
        assert 0.5 <= trial["C"] <= 2
        assert trial["opt"] in ("adam", "sgd")
        assert trial["max_iter"] == 7
    assert {t["opt"] for t in a.trials} == {"adam", "sgd"}
    assert a.spec["seed"] == 3 and a.spec["mode"] == "random" and a.spec["max_runs"] == 25
    c = batch_of(words, random_mode=True, max_runs=25, seed=4)
    assert c is not None and c.trials != a.trials


def test_random_picks_and_records_a_seed_and_defaults_to_20_runs():
    batch = batch_of(["lr=uniform(0,1)"], random_mode=True)
    assert batch is not None
    assert len(batch.trials) == 20
    assert isinstance(batch.spec["seed"], int)


def test_random_needs_something_to_sample():
    assert error_of(["lr=0.1"], random_mode=True) == (
        "--random needs a flag to sample; give one a list, range(...), uniform(a,b), "
        "loguniform(a,b) or choice(...)"
    )
    assert error_of(["lr=[1,2]"], random_mode=True, batch_file="x.csv") == (
        "--random and --batch cannot be combined"
    )
    assert error_of(["lr=[1,2]"], max_runs=0) == "--max-runs must be at least 1"


# -- batch files ------------------------------------------------------------------------------
def test_csv_rows_are_typed_and_empty_cells_keep_defaults(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("batch.csv").write_text("lr,opt,max_iter\n0.1,sgd,\n1e-3,,50\n\n")
    assert read_batch_file(OP, "batch.csv") == [
        {"lr": 0.1, "opt": "sgd"},
        {"lr": 0.001, "max_iter": 50},
    ]


def test_batch_file_rows_combine_with_command_line_flags(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("rows.json").write_text('[{"lr": 0.1}, {"lr": 0.2, "opt": "sgd"}]')
    batch = batch_of(["opt=rmsprop", "C=[1,2]"], batch_file="rows.json")
    assert batch is not None and batch.mode == "file"
    assert batch.trials == [
        {"opt": "rmsprop", "C": 1.0, "lr": 0.1},
        {"opt": "rmsprop", "C": 2.0, "lr": 0.1},
        {"opt": "sgd", "C": 1.0, "lr": 0.2},
        {"opt": "sgd", "C": 2.0, "lr": 0.2},
    ]
    assert batch.spec["file"] == "rows.json"


def test_yaml_rows(tmp_path: Path):
    path = tmp_path / "rows.yaml"
    path.write_text("- {lr: 1e-2, max_iter: 10}\n- lr: 0.5\n")
    assert read_batch_file(OP, str(path)) == [{"lr": 0.01, "max_iter": 10}, {"lr": 0.5}]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "batch.csv",
            "lr,lrr\n0.1,\n0.2,\n0.3,5\n",
            "batch.csv row 3: unknown flag 'lrr' (did you mean 'lr'?); "
            "flags of op 'train': C, lr, max_iter, opt",
        ),
        (
            "batch.csv",
            "lr\n0.1\nabc\n",
            "batch.csv row 2: flag 'lr' of op 'train' expects a number (default 0.1), got 'abc'",
        ),
        ("batch.csv", "lr\n0.1\n0.2,3\n", "batch.csv row 2: 2 values for 1 columns"),
        ("batch.csv", "lr,\n1,2\n", "batch.csv: column 2 of the header has no flag name"),
        ("batch.csv", "lr,lr\n1,2\n", "batch.csv: column 'lr' appears twice in the header"),
        ("batch.csv", "lr\n", "batch.csv: no rows (one trial per row)"),
        (
            "batch.json",
            '[{"lr": 0.1}, {"lr": "x"}]',
            "batch.json row 2: flag 'lr' of op 'train' expects a number (default 0.1), got 'x'",
        ),
        (
            "batch.json",
            '[{"lr": 0.1}, [1]]',
            "batch.json row 2: expected an object of flag values, got a list",
        ),
        (
            "batch.json",
            '{"lr": 0.1}',
            "batch.json: expected a JSON list of objects (one per trial), got a mapping",
        ),
        (
            "batch.json",
            "[{",
            "batch.json: not valid JSON (Expecting property name enclosed in double quotes: "
            "line 1 column 3 (char 2))",
        ),
        (
            "batch.yaml",
            "- {lr: 0.1}\n- {max_iterr: 3}\n",
            "batch.yaml row 2: unknown flag 'max_iterr' (did you mean 'max_iter'?); "
            "flags of op 'train': C, lr, max_iter, opt",
        ),
        ("batch.txt", "", "batch.txt: a batch file ends in .csv, .json, .yaml or .yml"),
    ],
)
def test_batch_file_errors_name_file_and_row(
    tmp_path: Path, monkeypatch, name: str, text: str, message: str
):
    monkeypatch.chdir(tmp_path)
    Path(name).write_text(text)
    with pytest.raises(TetherError) as info:
        read_batch_file(OP, name)
    assert str(info.value) == message


def test_yaml_syntax_error_has_a_position(tmp_path: Path):
    path = tmp_path / "batch.yaml"
    path.write_text("- {lr: 0.1}\n- lr: [1\n")
    with pytest.raises(TetherError) as info:
        read_batch_file(OP, str(path))
    assert str(info.value).startswith(f"{path}: not valid YAML at line 3, column 1 (")


def test_missing_batch_file(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TetherError, match="^nope.csv: no such batch file$"):
        read_batch_file(OP, "nope.csv")


def test_max_runs_above_the_limit_needs_yes_unless_the_grid_is_small():
    assert "pass --yes" in error_of(["lr=uniform(0,1)"], random_mode=True, max_runs=20_000)
    big = batch_of(["lr=uniform(0,1)"], random_mode=True, max_runs=20_000, confirmed=True)
    assert big is not None and big.total == 20_000 and big.streamed  # drawn as it runs
    assert len(big.trials) == 1 and sum(1 for _ in big.all_trials()) == 20_000
    small = batch_of(["lr=[1,2]"], max_runs=20_000)
    assert small is not None and small.total == 2
    shown = batch_of(["lr=range(0,200)", "C=range(0,200)"], max_runs=30_000, shown=5)
    assert shown is not None and shown.total == 30_000 and len(shown.trials) == 5
