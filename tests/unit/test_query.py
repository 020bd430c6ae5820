"""The --where language and --sort keys: tokenizer, parser, SQL compiler, semantics, errors."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tether.errors import TetherError
from tether.lock import DataRecord, RunLock, SourceRecord
from tether.store.fields import WhereError, parse_field
from tether.store.index import Index
from tether.store.records import Attributes, RunRecord
from tether.store.select import select_ids
from tether.store.sorting import compile_sort, parse_columns, parse_sort
from tether.store.state import RunState
from tether.store.where import MAX_CONDITIONS, MAX_DEPTH, compile_where

# Four runs, oldest first. Ids are UUIDv7-shaped; r1..r4 share the prefix 01930000-0000-7.
IDS = {f"r{i}": f"01930000-0000-7{i}00-8000-00000000000{i}" for i in range(1, 5)}
NAME = {v: k for k, v in IDS.items()}


def _record(
    key: str,
    name: str,
    status: str,
    config: dict,
    *,
    started: str | None = None,
    label: str | None = None,
    tags: tuple[str, ...] = (),
    metrics: dict | None = None,
    host: str | None = None,
    parent: str | None = None,
    commit: str | None = None,
    data: str | None = None,
    created: str,
) -> RunRecord:
    lock = RunLock(
        id=IDS[key],
        name=name,
        created=created,
        config=config,
        parent=parent,
        sources=[SourceRecord(path=".", commit=commit)] if commit else [],
        data=[DataRecord(path="data/train", digest=data)] if data else [],
    )
    state = RunState(status=status, host=host, started=started)
    summary = {"metrics": metrics or {}}
    return RunRecord(
        IDS[key], Path("/nowhere") / key, lock, state, Attributes(label, list(tags)), summary
    )


def _stats(last: float) -> dict:
    return {"last": last, "min": last / 2, "max": last * 2, "step": 9}


RECORDS = [
    _record(
        "r1",
        "train",
        "completed",
        {"lr": 0.1, "model": {"name": "resnet"}, "flag": True, "epochs": 10},
        started="2026-11-01T10:00:00.000000Z",
        label="resnet baseline",
        tags=("baseline", "gpu"),
        metrics={"loss": _stats(0.5), "acc": _stats(0.7)},
        host="h1",
        commit="deadbeef" * 5,
        data="abc123",
        created="2026-11-01T09:59:59.000000Z",
    ),
    _record(
        "r2",
        "train",
        "failed",
        {"lr": 0.01, "model": {"name": "vit"}, "flag": False},
        started="2026-11-02T12:30:00.000000Z",
        tags=("broken",),
        metrics={"loss": _stats(0.1), "acc": _stats(0.9)},
        host="h2",
        created="2026-11-02T12:29:59.000000Z",
    ),
    _record(
        "r3",
        "eval",
        "completed",
        {"lr": 0.001, "model": {"name": "1' or 1=1 --"}},
        label="vit small",
        parent=IDS["r1"],
        created="2026-11-03T00:00:00.000000Z",
    ),
    _record(
        "r4",
        "prepare",
        "running",
        {"lr": "0.1"},
        started="2026-10-31T23:59:59.000000Z",
        tags=("gpu",),
        metrics={"acc": _stats(0.5)},
        host="h1",
        created="2026-11-04T00:00:00.000000Z",
    ),
]


@pytest.fixture(scope="module")
def conn(tmp_path_factory: pytest.TempPathFactory) -> sqlite3.Connection:
    index = Index(tmp_path_factory.mktemp("query") / "index.db")
    index.rebuild(RECORDS)
    return index._connect()


def names(conn: sqlite3.Connection, where: str | None = None, sort: str | None = None, limit=None):
    return [NAME[i] for i in select_ids(conn, where, sort, limit)]


# -- compiling ------------------------------------------------------------------------------
def test_compiles_to_parameterised_sql():
    sql, params = compile_where("op = train and config.lr >= 0.01")
    assert sql == (
        "((+runs.name = ?) AND EXISTS (SELECT 1 FROM vals v WHERE v.run = runs.id "
        "AND v.key = ? AND v.num >= ?))"
    )
    assert params == ["train", "config.lr", 0.01]


def test_bare_metric_means_last_and_stats_are_kept():
    assert compile_where("metrics.loss < 1")[1] == ["metrics.loss.last", 1.0]
    for stat in ("last", "min", "max", "step"):
        assert compile_where(f"metrics.loss.{stat} < 1")[1] == [f"metrics.loss.{stat}", 1.0]
    # A dotted metric name keeps its dots; only a final stat is split off.
    assert compile_where("metrics.train.loss < 1")[1] == ["metrics.train.loss.last", 1.0]
    assert compile_where("metrics.train.loss.min < 1")[1] == ["metrics.train.loss.min", 1.0]


def test_injection_is_data():
    sql, params = compile_where("""config.x = "1' or 1=1 --" """)
    assert "1=1" not in sql and "'" not in sql
    assert params == ["config.x", "1' or 1=1 --"]


@pytest.mark.parametrize(
    "expr",
    [
        "status = completed and config.lr >= 0.01 and metrics.loss.last < 0.2",
        'tag = baseline or label ~ "resnet"',
        "started > 2026-11-01 and op in (train, eval) and not tag = broken",
    ],
)
def test_the_design_examples_compile(conn, expr):
    sql, params = compile_where(expr)
    conn.execute(f"SELECT id FROM runs WHERE {sql}", params).fetchall()


# -- semantics over an index ----------------------------------------------------------------
@pytest.mark.parametrize(
    "expr, expected",
    [
        # every operator on a column
        ("op = train", {"r1", "r2"}),
        ("op == train", {"r1", "r2"}),
        ("name != train", {"r3", "r4"}),
        ("op < prepare", {"r3"}),
        ("op <= prepare", {"r3", "r4"}),
        ("op > prepare", {"r1", "r2"}),
        ("op >= prepare", {"r1", "r2", "r4"}),
        ("op ~ ^tr", {"r1", "r2"}),
        ("op !~ ^tr", {"r3", "r4"}),
        ("op in (train, eval)", {"r1", "r2", "r3"}),
        ("op not in (train, eval)", {"r4"}),
        ("status = completed", {"r1", "r3"}),
        ("status in (failed, running)", {"r2", "r4"}),
        ("host = h1", {"r1", "r4"}),
        # missing values: false for every comparison but = null; `not` is the complement
        ("label = null", {"r2", "r4"}),
        ("label != null", {"r1", "r3"}),
        ("label ~ resnet", {"r1"}),
        ("label ~ '^vit'", {"r3"}),
        ("label !~ resnet", {"r3"}),
        ("not label ~ resnet", {"r2", "r3", "r4"}),
        ("label != 'vit small'", {"r1"}),
        ("host = null", {"r3"}),
        # tags are a set
        ("tag = gpu", {"r1", "r4"}),
        ("tag != gpu", {"r2", "r3"}),
        ("tag ~ '^gp'", {"r1", "r4"}),
        ("tag !~ gpu", {"r2", "r3"}),
        ("tag in (broken, baseline)", {"r1", "r2"}),
        ("tag not in (broken, baseline)", {"r3", "r4"}),
        ("tag = null", {"r3"}),
        ("tag != null", {"r1", "r2", "r4"}),
        # config values: numbers compare with numbers, text with text
        ("config.lr = 0.1", {"r1"}),
        ("config.lr = 1e-1", {"r1"}),
        ("config.lr = '0.1'", {"r4"}),
        ("config.lr != 0.1", {"r2", "r3", "r4"}),
        ("config.lr < 0.05", {"r2", "r3"}),
        ("config.lr <= 0.01", {"r2", "r3"}),
        ("config.lr > 0.01", {"r1"}),
        ("config.lr >= 0.01", {"r1", "r2"}),
        ("config.lr in (0.1, 0.01)", {"r1", "r2"}),
        ("config.lr in (0.1, '0.1')", {"r1", "r4"}),
        ("config.lr not in (0.1, 0.01)", {"r3", "r4"}),
        ("config.epochs = 10", {"r1"}),
        ("config.epochs = 10.0", {"r1"}),
        ("config.epochs ~ '^10$'", {"r1"}),
        ("config.lr ~ '^0.0'", {"r2", "r3"}),
        ("config.model.name = vit", {"r2"}),
        ("config.model.name != vit", {"r1", "r3"}),
        ("config.model.name ~ '^(resnet|vit)$'", {"r1", "r2"}),
        ("config.model.name !~ res", {"r2", "r3"}),
        ("config.model.name = null", {"r4"}),
        ("config.model.name != null", {"r1", "r2", "r3"}),
        ("config.flag = true", {"r1"}),
        ("config.flag = False", {"r2"}),
        ("config.flag = 1", {"r1"}),
        # an unknown key is no error: it matches nothing, and `not` gives everything
        ("config.nothing = 1", set()),
        ("config.nothing != 1", set()),
        ("not config.nothing = 1", {"r1", "r2", "r3", "r4"}),
        # metrics
        ("metrics.loss < 0.2", {"r2"}),
        ("metrics.loss.last < 0.2", {"r2"}),
        ("metrics.acc.max >= 1.4", {"r1", "r2"}),
        ("metrics.acc.min = 0.25", {"r4"}),
        ("metrics.acc.step = 9", {"r1", "r2", "r4"}),
        ("metrics.acc = null", {"r3"}),
        # ids, parents and commits: `=` takes a prefix
        (f"id = {IDS['r2']}", {"r2"}),
        (f"id = {IDS['r2'][:16].upper()}", {"r2"}),
        ("id = 01930000", {"r1", "r2", "r3", "r4"}),
        (f"id != {IDS['r2'][:16]}", {"r1", "r3", "r4"}),
        (f"id in ({IDS['r1'][:16]}, {IDS['r4']})", {"r1", "r4"}),
        (f"parent = {IDS['r1'][:16]}", {"r3"}),
        ("parent = null", {"r1", "r2", "r4"}),
        ("source.commit = deadbeef", {"r1"}),
        ("source.commit = DEADBEEFD", {"r1"}),
        ("source.commit != deadbeef", set()),
        ("source.commit = null", {"r2", "r3", "r4"}),
        ("data.data/train = abc123", {"r1"}),
        # times: a date stands for its whole day, 10:30 for its minute, in UTC
        ("started > 2026-11-01", {"r2"}),
        ("started >= 2026-11-01", {"r1", "r2"}),
        ("started = 2026-11-01", {"r1"}),
        ("started <= 2026-11-01", {"r1", "r4"}),
        ("started < 2026-11-01", {"r4"}),
        ("started != 2026-11-01", {"r2", "r4"}),
        ("started = null", {"r3"}),
        ("started = 2026-11-01T10:00", {"r1"}),
        ("started = '2026-11-01 10:00:00'", {"r1"}),
        ("started = 2026-11-01T10:00:00.000000Z", {"r1"}),
        ("started = 2026-11-01T12:00+02:00", {"r1"}),
        ("started = 2026-11-01T11:00+02:00", set()),
        ("started = 2026-11", {"r1", "r2"}),
        ("started = 2026", {"r1", "r2", "r4"}),
        ("started in (2026-11-01, 2026-10-31)", {"r1", "r4"}),
        ("started ~ '^2026-10'", {"r4"}),
        ("created >= 2026-11-03", {"r3", "r4"}),
        ("stopped = null", {"r1", "r2", "r3", "r4"}),
        # quoting
        ('label = "resnet baseline"', {"r1"}),
        ("label = 'resnet baseline'", {"r1"}),
        ("""config.model.name = '1\\' or 1=1 --'""", {"r3"}),
        ("""config.model.name = "1' or 1=1 --" """, {"r3"}),
        ("label = \"x' OR '1'='1\"", set()),
        ("label = 'and'", set()),
        # keywords in any case, operators without spaces
        ("op = train AND NOT tag = broken Or op = eval", {"r1", "r3"}),
        ("op=train and config.lr>=0.01", {"r1", "r2"}),
    ],
)
def test_semantics(conn, expr, expected):
    assert set(names(conn, expr)) == expected


@pytest.mark.parametrize(
    "expr, expected",
    [
        # not > and > or
        ("op = eval or op = train and tag = broken", {"r2", "r3"}),
        ("(op = eval or op = train) and tag = broken", {"r2"}),
        ("not op = train and host = h1", {"r4"}),
        ("not (op = train and host = h1)", {"r2", "r3", "r4"}),
        ("not not op = eval", {"r3"}),
        ("tag = gpu or tag = broken and not op = train", {"r1", "r4"}),
        ("((((op = eval))))", {"r3"}),
        ("op = train and (tag = gpu or tag = broken) and config.lr >= 0.1", {"r1"}),
    ],
)
def test_precedence(conn, expr, expected):
    assert set(names(conn, expr)) == expected


def test_a_key_with_sql_in_its_name_is_only_a_key(conn):
    assert names(conn, "config.a;DROP_TABLE_runs;-- = 1") == []
    assert len(names(conn)) == 4


# -- sorting --------------------------------------------------------------------------------
def test_compile_sort():
    sql, params = compile_sort("-metrics.acc, op")
    sub = "(SELECT coalesce(v.num, v.txt) FROM vals v WHERE v.run = runs.id AND v.key = ?)"
    assert sql == f"{sub} IS NULL, {sub} DESC, runs.name, runs.id DESC"
    assert params == ["metrics.acc.last", "metrics.acc.last"]


@pytest.mark.parametrize("limit", [None, 2, 10])
@pytest.mark.parametrize(
    "sort, expected",
    [
        (None, ["r4", "r3", "r2", "r1"]),
        # numbers, then text, then missing; descending reverses all but the missing
        ("config.lr", ["r3", "r2", "r1", "r4"]),
        ("-config.lr", ["r4", "r1", "r2", "r3"]),
        ("metrics.acc", ["r4", "r1", "r2", "r3"]),
        ("-metrics.acc", ["r2", "r1", "r4", "r3"]),
        ("-metrics.acc.last", ["r2", "r1", "r4", "r3"]),
        ("metrics.loss", ["r2", "r1", "r4", "r3"]),
        ("-metrics.loss", ["r1", "r2", "r4", "r3"]),
        ("op", ["r3", "r4", "r2", "r1"]),
        ("-op, metrics.acc", ["r1", "r2", "r4", "r3"]),
        ("op,-metrics.acc", ["r3", "r4", "r2", "r1"]),
        ("started", ["r4", "r1", "r2", "r3"]),
        ("-started", ["r2", "r1", "r4", "r3"]),
        ("label", ["r1", "r3", "r4", "r2"]),
        ("+created", ["r1", "r2", "r3", "r4"]),
        ("config.model.name", ["r3", "r1", "r2", "r4"]),
        ("-config.flag", ["r1", "r2", "r4", "r3"]),
    ],
)
def test_sort(conn, sort, expected, limit):
    assert names(conn, None, sort, limit) == expected[:limit]


def test_sort_with_a_filter_and_a_limit(conn):
    assert names(conn, "tag != null", "-metrics.acc", 2) == ["r2", "r1"]
    assert names(conn, "op = train and config.lr >= 0.01", "-metrics.acc", 20) == ["r2", "r1"]
    assert names(conn, "tag = gpu", "metrics.loss", 1) == ["r1"]
    assert names(conn, "tag = gpu", "metrics.loss", 5) == ["r1", "r4"]


@pytest.mark.parametrize(
    "spec, message",
    [
        (
            "-metric.loss",
            "invalid sort keys at column 2: unknown field 'metric.loss'; "
            "did you mean 'metrics.loss'?\n  -metric.loss\n   ^",
        ),
        (
            "op,,name",
            "invalid sort keys at column 4: expected a field, found nothing\n  op,,name\n     ^",
        ),
        ("-", "invalid sort keys at column 2: expected a field after the sign\n  -\n   ^"),
        (
            "op, tag",
            "invalid sort keys at column 5: cannot sort by tag (a run has several)\n"
            "  op, tag\n      ^",
        ),
        (
            "op name",
            "invalid sort keys at column 3: expected ',' or the end, found ' '\n  op name\n    ^",
        ),
    ],
)
def test_sort_errors(spec, message):
    with pytest.raises(WhereError) as info:
        compile_sort(spec)
    assert str(info.value) == message


def test_columns():
    fields = parse_columns("config.lr, metrics.loss,host,tag")
    assert [(f.name, f.kind, f.key) for f in fields] == [
        ("config.lr", "val", "config.lr"),
        ("metrics.loss", "val", "metrics.loss.last"),
        ("host", "column", ""),
        ("tag", "tag", ""),
    ]
    with pytest.raises(WhereError, match="invalid column list at column 1: unknown field 'lr'"):
        parse_columns("lr")


# -- errors ---------------------------------------------------------------------------------
def _err(expr: str) -> str:
    with pytest.raises(WhereError) as info:
        compile_where(expr)
    assert isinstance(info.value, TetherError)
    return str(info.value)


@pytest.mark.parametrize(
    "expr, detail, column",
    [
        ("", "expected a condition such as `status = completed`, found the end", 1),
        ("   ", "expected a condition such as `status = completed`, found the end", 4),
        ("lable = x", "unknown field 'lable'; did you mean 'label'?", 1),
        ("Status = failed", "unknown field 'Status'; did you mean 'status'?", 1),
        ("op = a and confg.lr = 1", "unknown field 'confg.lr'; did you mean 'config.lr'?", 12),
        ("metric.loss < 1", "unknown field 'metric.loss'; did you mean 'metrics.loss'?", 1),
        ("source.comit = ab", "unknown field 'source.comit'; did you mean 'source.commit'?", 1),
        ("source = ab", "unknown field 'source'; did you mean 'source.commit'?", 1),
        ("config = 1", "unknown field 'config'; did you mean 'config.<key>'?", 1),
        ("config. = 1", "expected a key after 'config.'", 8),
        ("data. = 1", "expected a path after 'data.'", 6),
        ("metrics.loss. < 1", "expected a key after 'metrics.'", 14),
        (
            "xyz = 1",
            "unknown field 'xyz'; fields: id, name, op, status, label, tag, started, stopped, "
            "created, host, parent, source.commit, project, config.<key>, flags.<name>, "
            "metrics.<key>[.last|.min|.max|.step], data.<path>",
            1,
        ),
        ("config.lr >=", "expected a value, found the end", 13),
        ("op = train and config.lr >=", "expected a value, found the end", 28),
        ("op = )", "expected a value, found ')'", 6),
        ("op = and", "expected a value, found 'and' (quote it to use it as text)", 6),
        ("op train", "expected an operator (= != < <= > >= ~ !~ in) after op, found 'train'", 4),
        ("op", "expected an operator (= != < <= > >= ~ !~ in) after op, found the end", 3),
        ("op ! train", "expected '!=' or '!~', found '! '", 4),
        ("op = train extra", "expected 'and', 'or' or the end, found 'extra'", 12),
        (
            "op = train and",
            "expected a field such as status, config.<key> or metrics.<key>, found the end",
            15,
        ),
        ("= train", "expected a field such as status, config.<key> or metrics.<key>, found '='", 1),
        (
            "and = 1",
            "expected a field such as status, config.<key> or metrics.<key>, found 'and'",
            1,
        ),
        ("(op = train", "expected ')' or 'and'/'or', found the end", 12),
        ("op = train)", "found ')' without a matching '('", 11),
        ("()", "expected a field such as status, config.<key> or metrics.<key>, found ')'", 2),
        ("op in train", "expected '(' after 'in', found 'train'", 7),
        ("op in (a b)", "expected ',' or ')', found 'b'", 10),
        ("op in ()", "expected a value, found ')'", 8),
        ("op in (a, null)", "null cannot be in a list; use `= null`", 11),
        ("op not = a", "expected 'in' after 'not', found '='", 8),
        ("label = 'open", "unterminated string: expected a closing '", 9),
        ('label = "a\\"', 'unterminated string: expected a closing "', 9),
        ("label < null", "null goes with = or !=, found '<'", 7),
        ("tag > a", "tag takes =, !=, ~, !~ or in, found '>'", 5),
        ("status = complted", "unknown status 'complted'; did you mean 'completed'?", 10),
        (
            "status in (failed, nope)",
            "unknown status 'nope'; statuses: pending, queued, running, completed, failed, "
            "terminated, unknown",
            20,
        ),
        ("label ~ '('", "invalid regular expression: missing ), unterminated subpattern", 9),
        ("config.x ~ '[a-'", "invalid regular expression: unterminated character set", 12),
        (
            "started > yesterday",
            "expected a date or time like 2026-11-01 or 2026-11-01T10:30, found 'yesterday'",
            11,
        ),
        (
            "started = 2026-13-01",
            "expected a date or time like 2026-11-01 or 2026-11-01T10:30, found '2026-13-01'",
            11,
        ),
        (
            "stopped in (2026-11-01, 2026-11-31)",
            "expected a date or time like 2026-11-01 or 2026-11-01T10:30, found '2026-11-31'",
            25,
        ),
    ],
)
def test_error_messages(expr, detail, column):
    shown = expr
    assert _err(expr) == (
        f"invalid where expression at column {column}: {detail}\n  {shown}\n  {' ' * (column - 1)}^"
    )


def test_the_caret_sits_under_the_position():
    message = _err("op = train and config.lr >=")
    lines = message.splitlines()
    assert lines[1] == "  op = train and config.lr >="
    assert lines[2] == "  " + " " * 27 + "^"
    assert lines[2].index("^") == len(lines[1])  # at the end: just past the last character


def test_control_characters_keep_the_caret_aligned():
    message = _err("op = a and\n\tlable = b")
    assert message.splitlines()[1:] == ["  op = a and  lable = b", "  " + " " * 12 + "^"]


def test_nesting_and_size_limits(conn):
    deep = "(" * MAX_DEPTH + "op = train" + ")" * MAX_DEPTH
    assert set(names(conn, deep)) == {"r1", "r2"}
    nots = "not " * MAX_DEPTH + "op = train"
    assert set(names(conn, nots)) == {"r1", "r2"}
    mixed = ""
    for i in range(MAX_DEPTH // 2 - 1):
        mixed += f"not (tag = t{i} or "
    mixed += "config.x.y ~ 'z' and not label in (a, b)" + ")" * (MAX_DEPTH // 2 - 1)
    names(conn, mixed)
    # The deepest the grammar allows, with every kind of condition inside, still executes.
    worst = "not (op = a or " * (MAX_DEPTH // 2 - 1) + "not (tag in (a) and config.x !~ 'y'"
    worst += " and started != 2026-11 and metrics.m.max in (1, 'a'))" + ")" * (MAX_DEPTH // 2 - 1)
    names(conn, worst)
    assert "nested too deeply: at most 24 levels" in _err("(" * (MAX_DEPTH + 1) + "op = a)")
    chain = " or ".join(f"config.k{i} = {i}" for i in range(MAX_CONDITIONS))
    assert names(conn, chain) == []
    assert "too many conditions: at most 256" in _err(chain + " or op = a")
    names(conn, "op in (" + ", ".join(str(i) for i in range(4000)) + ")")
    assert "too many values" in _err("op in (" + ", ".join(str(i) for i in range(5000)) + ")")


def test_parse_field_alone():
    assert parse_field("op").column == "runs.name"
    assert parse_field("metrics.acc").key == "metrics.acc.last"
    with pytest.raises(WhereError, match="did you mean 'host'"):
        parse_field("hots")


# -- fuzzing --------------------------------------------------------------------------------
PIECES = [
    "id", "name", "op", "status", "label", "tag", "started", "stopped", "created", "host",
    "parent", "source.commit", "config.lr", "config.a.b", "metrics.loss", "metrics.acc.max",
    "data.x/y", "config.", "metrics", "and", "or", "not", "in", "null", "NULL", "(", ")", ",",
    "=", "==", "!=", "<", "<=", ">", ">=", "~", "!~", "!", "0.1", "-3", "1e5", "train",
    "completed", "2026-11-01", "2026-11-01T10:30", "2026-02-30", "'quoted'", '"dq"', "'",
    '"', "\\", "'a\\'b'", "(a|b", "[", ".*", "true", "x'; DROP TABLE runs; --", "\x00", "é",
]  # fmt: skip

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check(conn: sqlite3.Connection, expr: str) -> None:
    try:
        sql, params = compile_where(expr)
    except WhereError as exc:
        assert isinstance(exc, TetherError)
        assert 0 <= exc.pos <= len(expr)
        assert str(exc).count("\n") == 2
        return
    assert all(isinstance(p, (str, float)) for p in params)
    conn.execute(f"SELECT id FROM runs WHERE {sql} LIMIT 5", params).fetchall()


@FUZZ
@given(expr=st.text(max_size=80))
def test_fuzz_any_text(conn, expr):
    _check(conn, expr)


@FUZZ
@given(parts=st.lists(st.sampled_from(PIECES), max_size=14), glue=st.sampled_from([" ", ""]))
def test_fuzz_token_soup(conn, parts, glue):
    _check(conn, glue.join(parts))


comparison = st.builds(
    lambda f, o, v: f"{f} {o} {v}",
    st.sampled_from(PIECES[:17]),
    st.sampled_from(["=", "!=", "<", "<=", ">", ">=", "~", "!~", "in"]),
    st.sampled_from(["0.1", "train", "'x y'", "null", "(a, 2)", "2026-11-01", "'^t'", "1e400"]),
)
expressions = st.recursive(
    comparison,
    lambda inner: st.one_of(
        st.builds(lambda a, b: f"{a} and {b}", inner, inner),
        st.builds(lambda a, b: f"{a} or {b}", inner, inner),
        st.builds(lambda a: f"not {a}", inner),
        st.builds(lambda a: f"({a})", inner),
    ),
    max_leaves=12,
)


@FUZZ
@given(expr=expressions)
def test_fuzz_grammar(conn, expr):
    _check(conn, expr)


@FUZZ
@given(
    spec=st.one_of(
        st.text(max_size=40),
        st.lists(
            st.sampled_from([*PIECES[:17], "-op", "-config.lr", "+metrics.acc"]),
            min_size=1,
            max_size=4,
        ).map(",".join),
    )
)
def test_fuzz_sort(conn, spec):
    try:
        order, params = compile_sort(spec)
        parse_sort(spec)
    except WhereError:
        return
    conn.execute(f"SELECT id FROM runs ORDER BY {order}", params).fetchall()
    # The index-driven plan (with a limit) and the plain ORDER BY give the same runs.
    full = select_ids(conn, None, spec)
    for limit in (1, 3, 10):
        assert select_ids(conn, None, spec, limit) == full[:limit]


@FUZZ
@given(
    expr=expressions,
    sort=st.sampled_from(["-metrics.acc", "config.lr", "-config.lr", "metrics.loss.min"]),
)
def test_fuzz_driven_plan_matches_plain_sort(conn, expr, sort):
    try:
        full = select_ids(conn, expr, sort)
    except WhereError:
        return
    assert select_ids(conn, expr, sort, 2) == full[:2]
