"""The run contract in one process: run.lock schema 2 (`flags`), the variables, attaching with
`start_run` and `History()`, the rank records (the subprocess cases are in
tests/integration/test_attach.py and test_launch_mpi.py)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import tether
from tether import context
from tether.errors import TetherError
from tether.jobenv import global_rank
from tether.lock import RunLock, read_lock, update_lock, write_lock
from tether.session import attach
from tether.store import open_store
from tether.store.ranks import RankRecord, failed_rank, read_ranks, write_rank
from tether.track.history import History


@pytest.fixture(autouse=True)
def _forget_attached() -> Iterator[None]:
    """A bare History attaches for the life of the process: one test's run is not the next's."""
    yield
    attach._bare = None


def owned_run(runs_root: Path, monkeypatch: pytest.MonkeyPatch, **flags: object) -> RunLock:
    """A pending run made by an "owner", and this process started for it."""
    store = open_store()
    lock = store.new_lock("op", flags=dict(flags), config=dict(flags))
    record = store.create(lock)
    for key, value in context.run_env(record.dir, lock.id, store.root).items():
        monkeypatch.setenv(key, value)
    return lock


# -- run.lock schema 2 ------------------------------------------------------------------------
def test_schema_1_is_read_and_keeps_its_digest(tmp_path: Path) -> None:
    lock = RunLock(id="r1", name="train", created="t", config={"lr": 0.1, "save_dir": "x"})
    write_lock(tmp_path, lock)
    text = (tmp_path / "run.lock").read_text().replace("schema: 2", "schema: 1")
    text = text.replace("flags: {}\n", "")
    (tmp_path / "run.lock").write_text(text)
    old = read_lock(tmp_path)
    assert old.schema == 1 and old.flags == {}
    assert "flags" not in old.identity() and old.identity()["config"] == {"lr": 0.1}
    assert old.digest() == lock.digest()
    (tmp_path / "run.lock").write_text(text.replace("schema: 1", "schema: 3"))
    with pytest.raises(TetherError, match="schema 3 is newer than this tether knows"):
        read_lock(tmp_path)


def test_an_operation_counts_by_its_flags() -> None:
    a = RunLock(id="a", name="op", created="t", flags={"lr": 0.1}, config={"lr": 0.1})
    b = RunLock(id="b", name="op", created="t", flags={"lr": 0.1}, config={"script": "own"})
    c = RunLock(id="c", name="op", created="t", flags={"lr": 0.2}, config={"lr": 0.1})
    # An attached script's config does not change the digest --needed compares; the flags do.
    assert a.digest() == b.digest() != c.digest()


# -- the variables ----------------------------------------------------------------------------
def test_run_env_and_its_consumption(tmp_path: Path) -> None:
    env = context.run_env(tmp_path / "r", "id1", tmp_path)
    assert env == {
        "TETHER_RUN_DIR": str(tmp_path / "r"),
        "TETHER_RUN_ID": "id1",
        "TETHER_RUNS": str(tmp_path),
    }
    assert context.run_env_of(env) == env and context.run_env_of({"TETHER_RUNS": "x"}) is None
    context.consume_run_env(env)
    assert env == {"TETHER_RUNS": str(tmp_path)}


def test_global_rank_from_the_launchers_variables() -> None:
    assert global_rank({}) == (0, 1)
    assert global_rank({"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2"}) == (1, 2)
    assert global_rank({"SLURM_PROCID": "3", "SLURM_NTASKS": "4"}) == (0, 1)  # not in a step


# -- attaching --------------------------------------------------------------------------------
def test_start_run_attaches_and_the_owner_keeps_the_status(
    runs_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = owned_run(runs_root, monkeypatch, lr=0.1)
    run_dir = runs_root / lock.id
    with tether.start_run({"lr": 0.5, "save_dir": None}, name="ignored") as run:
        assert run.id == lock.id and run.attached
        assert "TETHER_RUN_DIR" not in os.environ and "TETHER_RUN_ID" not in os.environ
        assert os.environ["TETHER_RUNS"] == str(runs_root)
        run.log_metrics({"loss": 0.25}, step=1)
        with tether.start_run({}, name="inner", snapshot=False, capture_output=False) as inner:
            assert inner.record.lock.parent == lock.id  # a run started inside is its child
    store = open_store()
    record = store.load(lock.id)
    assert record.state.status == "pending"  # the owner's to change, not the script's
    assert record.lock.flags == {"lr": 0.1}
    assert record.lock.config == {"lr": 0.5, "save_dir": str(run_dir)}
    assert record.lock.name == "op" and record.lock.sources == []  # no second snapshot
    assert [r.id for r in store.query("metrics.loss = 0.25 and config.lr = 0.5")] == [lock.id]
    assert not (run_dir / "output.log").exists()  # the owner's, not copied again
    assert not (run_dir / "ranks").exists()


def test_attaching_merges_data_and_keeps_what_the_owner_recorded(
    runs_root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lock = owned_run(runs_root, monkeypatch)
    data = tmp_path / "data.txt"
    data.write_text("rows\n")

    def owner_adds(current: RunLock) -> None:
        current.env["owner"] = "kept"

    update_lock(runs_root / lock.id, owner_adds)
    with tether.start_run({"path": str(data)}, data=["path"]):
        pass
    merged = read_lock(runs_root / lock.id)
    assert merged.env == {"owner": "kept"}
    assert [(d.path, d.key, d.status) for d in merged.data] == [(str(data), "path", "done")]


def test_a_bare_history_attaches_and_open_run_too(
    runs_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = owned_run(runs_root, monkeypatch)
    history = History()
    assert history.run is not None and history.run.id == lock.id
    history.update({"acc": 0.5}, step=0)
    history.close()
    with tether.open_run() as run:
        assert run.id == lock.id
        run.log_metrics({"extra": 2.0})
    store = open_store()
    assert store.load(lock.id).state.status == "pending"
    assert [r.id for r in store.query("metrics.acc = 0.5 and metrics.extra = 2")] == [lock.id]


def test_a_missing_or_finished_run_is_an_error(
    runs_root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TETHER_RUN_DIR", str(tmp_path / "nothing"))
    with pytest.raises(TetherError, match="no run there"), tether.start_run({}):
        pass
    lock = owned_run(runs_root, monkeypatch)
    store = open_store()
    record = store.load(lock.id)
    record.state.status = "completed"
    store.set_state(record, record.state)
    with pytest.raises(TetherError, match=r"\(op\) is completed"), tether.start_run({}):
        pass
    monkeypatch.setenv("TETHER_RUN_ID", "someone-else")
    with pytest.raises(TetherError, match="not TETHER_RUN_ID=someone-else"), tether.start_run({}):
        pass


def test_a_rank_other_than_0_writes_only_its_folder(
    runs_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = owned_run(runs_root, monkeypatch)
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "1")
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    run_dir = runs_root / lock.id
    with tether.start_run({"lr": 9}) as run:
        assert run.rank_dir == run_dir / "ranks" / "1"
        run.log_metrics({"loss": 3.0}, step=0)
        print("from rank 1")
    assert read_lock(run_dir).config == {}  # rank 0 records the config
    assert not (run_dir / "metrics.jsonl").exists()
    rows = [
        json.loads(line) for line in (run_dir / "ranks/1/metrics.jsonl").read_text().splitlines()
    ]
    assert [r["loss"] for r in rows] == [3.0]
    assert "from rank 1" in (run_dir / "ranks/1/output.log").read_text()
    (rank,) = read_ranks(run_dir)
    assert (rank.rank, rank.world_size, rank.status, rank.exit_code) == (1, 2, "completed", 0)


def test_rank_records_name_the_rank_to_blame(tmp_path: Path) -> None:
    write_rank(tmp_path, RankRecord(0, 2, "a", status="terminated", exit_code=143))
    write_rank(tmp_path, RankRecord(1, 2, "b", status="failed", exit_code=3, error="E: x"))
    (tmp_path / "ranks" / "2").mkdir()
    records = read_ranks(tmp_path)
    assert [r.status for r in records] == ["terminated", "failed", "unknown"]
    blamed = failed_rank(records)
    assert blamed is not None and blamed.describe() == "rank 1 on b failed (exit 3): E: x"
    assert failed_rank([records[0], records[2]]) is records[0]
    assert records[2].describe() == "rank 2 stopped without recording how it ended"
