"""`tether runs --where/--sort/--columns` and `Store.query` over a real store of created runs."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

import tether
from tests.conftest import run_cli
from tether.store import Store
from tether.store.fields import WhereError

# (name, lr, accuracy or None, tags, label)
RUNS = [
    ("prepare", None, None, (), None),
    ("train", 0.1, 0.80, ("baseline",), "big lr"),
    ("train", 0.01, 0.92, (), None),
    ("train", 0.001, 0.95, ("broken",), None),
    ("evaluate", 0.1, 0.99, (), None),
    ("train", 0.03, None, (), "no metrics"),
    ("train", 0.05, 0.85, (), None),
]


def _make() -> dict[str, str]:
    """The runs above, oldest first: {"<name>-<lr>": id}."""
    ids = {}
    for name, lr, acc, tags, label in RUNS:
        cfg = {"lr": lr, "model": {"name": "resnet" if lr != 0.01 else "vit"}}
        with tether.start_run(cfg, name=name, snapshot=False, capture_output=False) as run:
            if acc is not None:
                run.log_metrics({"accuracy": acc, "loss": 1 - acc}, step=3)
            if tags:
                run.add_tag(*tags)
            if label:
                run.set_label(label)
        ids[f"{name}-{lr}"] = run.id
    return ids


@pytest.fixture
def made() -> dict[str, str]:
    return _make()


def _ids(proc) -> list[str]:
    assert proc.returncode == 0, proc.stderr
    return [r["id"] for r in json.loads(proc.stdout)]


def test_acceptance_where_and_sort(made):
    proc = run_cli(
        "runs",
        "--where",
        "op = train and config.lr >= 0.01",
        "--sort",
        "-metrics.accuracy.last",
        "--json",
    )
    # By accuracy, highest first; the run without metrics last; lr 0.001 and evaluate left out.
    assert _ids(proc) == [
        made["train-0.01"],
        made["train-0.05"],
        made["train-0.1"],
        made["train-0.03"],
    ]


def test_store_query(made, runs_root: Path):
    store = Store(runs_root)
    rows = store.query(where="op = train and config.lr >= 0.01", sort="-metrics.accuracy", limit=2)
    assert [r.id for r in rows] == [made["train-0.01"], made["train-0.05"]]
    assert rows[0].metrics["accuracy"] == pytest.approx(0.92)
    assert [r.id for r in store.query()] == list(made.values())[::-1]
    assert [r.id for r in store.query(limit=2)] == [r.id for r in store.list(limit=2)]
    assert store.query(where="tag = baseline")[0].tags == ["baseline"]
    assert [r.name for r in store.query(where="label ~ lr")] == ["train"]
    assert store.query(where="config.nothing = 1") == []
    with pytest.raises(WhereError):
        store.query(where="op = ")


def test_store_query_rebuilds_a_missing_index(made, runs_root: Path):
    (runs_root / "index.db").unlink()
    for suffix in ("-wal", "-shm"):
        Path(f"{runs_root}/index.db{suffix}").unlink(missing_ok=True)
    rows = Store(runs_root).query(where="op = evaluate")
    assert [r.id for r in rows] == [made["evaluate-0.1"]]


def test_store_query_on_an_empty_root_still_checks_the_expression(tmp_path: Path):
    store = Store(tmp_path / "none")
    assert store.query(where="op = a") == []
    assert not (tmp_path / "none").exists()
    with pytest.raises(WhereError):
        store.query(where="nope = a")
    with pytest.raises(WhereError):
        store.query(sort="nope")


def test_injection_attempt_is_data(made, runs_root: Path):
    with tether.start_run(
        {"x": "1' or 1=1 --"}, name="inject", snapshot=False, capture_output=False
    ) as run:
        pass
    proc = run_cli("runs", "--where", """config.x = "1' or 1=1 --" """, "--json")
    assert _ids(proc) == [run.id]
    for attempt in (
        'config.x = "1\' or 1=1 --" or op = nothing',
        "label = \"x' OR '1'='1\"",
        'config.x = "\'; DROP TABLE runs; --"',
    ):
        proc = run_cli("runs", "--where", attempt, "--json")
        assert _ids(proc) == ([run.id] if "nothing" in attempt else [])
    # The index is intact.
    assert len(_ids(run_cli("runs", "--all", "--json"))) == len(RUNS) + 1


def test_columns_in_json_csv_and_table(made):
    args = ("runs", "--where", "op = train", "--sort", "config.lr")
    cols = ("--columns", "config.lr,metrics.accuracy,config.model.name,tag,host")
    listing = json.loads(run_cli(*args, *cols, "--json", check=True).stdout)
    assert [r["columns"]["config.lr"] for r in listing] == [0.001, 0.01, 0.03, 0.05, 0.1]
    assert listing[0]["columns"]["metrics.accuracy"] == pytest.approx(0.95)
    assert listing[2]["columns"]["metrics.accuracy"] is None
    assert listing[1]["columns"]["config.model.name"] == "vit"
    assert listing[0]["columns"]["tag"] == ["broken"]
    assert listing[0]["columns"]["host"] == listing[0]["host"]
    # Positions in this listing, not RUN numbers.
    assert [r["index"] for r in listing] == [1, 2, 3, 4, 5]

    rows = list(csv.DictReader(io.StringIO(run_cli(*args, *cols, "--csv", check=True).stdout)))
    assert [r["config.lr"] for r in rows] == ["0.001", "0.01", "0.03", "0.05", "0.1"]
    assert rows[2]["metrics.accuracy"] == ""
    assert rows[1]["config.model.name"] == "vit"
    header = run_cli(*args, *cols, "--csv", check=True).stdout.splitlines()[0].split(",")
    assert header.count("host") == 1 and header[-3:] == ["config.lr", "config.model.name", "tag"]

    table = run_cli(*args, *cols, "-n", "3", env={"COLUMNS": "200"}, check=True).stdout
    lines = table.splitlines()
    # The columns chosen replace the default ones; # and id stay.
    assert lines[0].split() == [
        "#", "id", "config.lr", "metrics.accuracy", "config.model.name", "tag", "host",
    ]  # fmt: skip
    assert "0.001" in lines[1] and "0.95" in lines[1] and "broken" in lines[1]
    assert "3 of 5 matching runs shown (-n N or --all for more)" in table
    assert "# numbers this listing only: pass ids to other commands" in table


def test_plain_listing_numbers_are_run_numbers(made):
    table = run_cli("runs", env={"COLUMNS": "200"}, check=True).stdout
    assert "numbers this listing only" not in table
    listing = json.loads(run_cli("runs", "--json", check=True).stdout)
    assert [r["index"] for r in listing] == list(range(1, len(RUNS) + 1))
    # `tether show 2` is the second of the unfiltered listing, whatever a filter showed.
    filtered = json.loads(run_cli("runs", "--where", "op = evaluate", "--json").stdout)
    assert filtered[0]["index"] == 1
    shown = json.loads(run_cli("show", "1", "--json", check=True).stdout)
    assert shown["id"] == made["train-0.05"]


def test_list_subcommand_and_all(made):
    assert _ids(run_cli("runs", "list", "--where", "tag = broken", "--json")) == [
        made["train-0.001"]
    ]
    assert len(_ids(run_cli("runs", "--where", "op = train", "--all", "--json"))) == 5
    assert len(_ids(run_cli("runs", "--where", "op = train", "-n", "2", "--json"))) == 2


def test_short_ids_match_the_plain_listing(made):
    plain = {r["id"]: r["short_id"] for r in json.loads(run_cli("runs", "--json").stdout)}
    sorted_ = json.loads(run_cli("runs", "--sort", "config.lr", "--json").stdout)
    assert {r["id"]: r["short_id"] for r in sorted_} == plain


def test_no_match_and_empty_store(made, tmp_path: Path):
    proc = run_cli("runs", "--where", "op = nothing", check=True)
    assert proc.stdout.startswith("no runs match 'op = nothing' in ")
    assert run_cli("runs", "--where", "op = nothing", "--json", check=True).stdout.strip() == "[]"
    empty = run_cli("runs", "--where", "op = x", env={"TETHER_RUNS": str(tmp_path / "e")})
    assert empty.returncode == 0 and empty.stdout.startswith("no runs in ")


def test_bad_where_exits_2_with_a_caret():
    proc = run_cli("runs", "--where", "op = train and lable ~ x")
    assert proc.returncode == 2
    assert proc.stderr == (
        "tether: error: invalid where expression at column 16: unknown field 'lable'; "
        "did you mean 'label'?\n"
        "  op = train and lable ~ x\n"
        "                 ^\n"
    )
    proc = run_cli("runs", "--sort", "-metrics.acc,colour")
    assert proc.returncode == 2
    assert "invalid sort keys at column 14: unknown field 'colour'" in proc.stderr
    assert proc.stderr.splitlines()[-1] == "               ^"
    proc = run_cli("runs", "--columns", "config.lr,,host")
    assert proc.returncode == 2
    assert "invalid column list at column 11: expected a field, found nothing" in proc.stderr


def test_dates_through_the_cli(made):
    assert len(_ids(run_cli("runs", "--where", "started > 2000-01-01", "--json"))) == len(RUNS)
    assert _ids(run_cli("runs", "--where", "started < 2000-01-01", "--json")) == []
    assert _ids(run_cli("runs", "--where", "stopped = null", "--json")) == []
