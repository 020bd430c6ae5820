import json
import sqlite3
from pathlib import Path

import pytest

from tether.errors import AmbiguousRun, RunNotFound, StoreError
from tether.store import RunState, Store
from tether.store.values import flatten
from tether.workspace import resolve_runs_root


def make(store: Store, name: str = "train", config: dict | None = None):
    lock = store.new_lock(name, config=config or {"lr": 0.1, "model": {"width": 4}})
    return store.create(lock)


def test_create_writes_lock_state_and_index(tmp_path: Path):
    store = Store(tmp_path / "runs")
    record = make(store)
    assert (record.dir / "run.lock").is_file()
    state = json.loads((record.dir / "state.json").read_text())
    assert state["status"] == "pending"
    rows = store.list()
    assert [r.id for r in rows] == [record.id]
    values = store.index.values(record.id)
    assert values["config.lr"] == 0.1 and values["config.model.width"] == 4


def test_state_changes_reach_the_index(tmp_path: Path):
    store = Store(tmp_path / "runs")
    record = make(store)
    store.set_state(record, RunState(status="completed", exit_code=0))
    store.add_attr(record, "label", "baseline")
    store.add_attr(record, "tag", "a")
    store.add_attr(record, "tag", "b")
    store.add_attr(record, "untag", "a")
    row = store.list()[0]
    assert row.status == "completed"
    assert row.label == "baseline"
    assert row.tags == ["b"]


def test_reindex_rebuilds_exactly(tmp_path: Path):
    store = Store(tmp_path / "runs")
    for i in range(5):
        rec = make(store, config={"i": i})
        store.add_attr(rec, "tag", f"t{i}")
    before = [(r.id, r.name, r.status, r.tags) for r in store.list()]
    store.index.close()
    (store.root / "index.db").unlink()
    fresh = Store(store.root)
    after = [(r.id, r.name, r.status, r.tags) for r in fresh.list()]
    assert after == before
    assert fresh.reindex() == 5


def test_an_old_index_schema_is_replaced(tmp_path: Path):
    store = Store(tmp_path / "runs")
    rec = make(store)
    store.index.close()
    con = sqlite3.connect(store.root / "index.db")
    con.execute("UPDATE schema_version SET version = 0")
    con.commit()
    con.close()
    fresh = Store(store.root)
    # The stale cache is dropped; a reindex brings the run back.
    fresh.reindex()
    assert [r.id for r in fresh.list()] == [rec.id]


def test_resolve_by_index_slice_prefix_and_name(tmp_path: Path):
    store = Store(tmp_path / "runs")
    a = make(store, "prep")
    b = make(store, "train")
    c = make(store, "train")
    assert store.resolve("1")[0].id == c.id
    assert [r.id for r in store.resolve("1:2")] == [c.id, b.id]
    assert [r.id for r in store.resolve(":")] == [c.id, b.id, a.id]
    assert store.resolve(a.id[:30])[0].id == a.id
    assert store.resolve("prep")[0].id == a.id
    assert store.resolve("train")[0].id == c.id  # a name picks its newest run
    with pytest.raises(RunNotFound, match="no run number 9"):
        store.resolve("9")
    with pytest.raises(RunNotFound, match="no run matches"):
        store.resolve("zzz")
    with pytest.raises(AmbiguousRun, match="matches 3 runs"):
        store.resolve(a.id[:6])


def test_explicit_save_dir_is_linked_from_the_root(tmp_path: Path):
    store = Store(tmp_path / "runs")
    outside = tmp_path / "elsewhere" / "out"
    lock = store.new_lock("x", config={"save_dir": str(outside)})
    rec = store.create(lock, run_dir=outside)
    assert (outside / "run.lock").exists()
    assert (store.root / rec.id).resolve() == outside.resolve()
    assert store.reindex() == 1
    with pytest.raises(StoreError, match="already holds run"):
        store.create(store.new_lock("y"), run_dir=outside)


def test_unwritable_root_is_a_clear_error(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="cannot be created"):
        Store(blocker / "runs").ensure_root()


def test_runs_root_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("TETHER_RUNS")
    project = tmp_path / "proj"
    (project / "sub").mkdir(parents=True)
    assert resolve_runs_root("x/y", cwd=project).name == "y"
    (project / "tether.toml").write_text('runs-dir = "my-runs"\n')
    assert resolve_runs_root(cwd=project / "sub") == project / "my-runs"
    (project / "tether.toml").write_text("")
    assert resolve_runs_root(cwd=project / "sub") == project / ".tether" / "runs"
    monkeypatch.setenv("TETHER_RUNS", str(tmp_path / "env"))
    assert resolve_runs_root(cwd=project) == tmp_path / "env"


def test_flatten():
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": {}}) == {"a.b": 1, "a.c": [1, 2], "d": {}}


def test_a_damaged_index_is_rebuilt(tmp_path: Path):
    store = Store(tmp_path / "runs")
    rec = make(store)
    store.index.close()
    (store.root / "index.db").write_bytes(b"this is not sqlite" * 100)
    for suffix in ("-wal", "-shm"):
        (store.root / f"index.db{suffix}").unlink(missing_ok=True)
    fresh = Store(store.root)
    assert [r.id for r in fresh.list()] == [rec.id]
    assert (store.root / "index.db.damaged").exists()
