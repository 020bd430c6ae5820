"""What keeps a batch's per-task cost down stays correct: tasks claimed several at a time (and
handed back unstarted), child records written by hand (equal to the general writers'), the
task pool built in one transaction, and the wait at a batch's end bounded."""

from __future__ import annotations

import json
import os
import random
import string
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from tether import fsio
from tether.batches.childlock import ChildLock, LockParts
from tether.batches.childyaml import yaml_line, yaml_scalar
from tether.batches.tasks import check_task_to, set_leaf
from tether.clock import now_iso
from tether.executors import worker as worker_module
from tether.executors.sqlitepool import POOL_FILE
from tether.executors.taskpool import Claim, Outcome, TaskPool
from tether.executors.worker import MAX_BATCH, Worker
from tether.fsio import sweep_orphans
from tether.ids import new_id
from tether.lock import DataRecord, RunLock, SourceRecord, dump_yaml
from tether.store.state import start_attempt


# -- the pool: several claims in one transaction ---------------------------------------------
def test_claim_many_takes_tasks_in_order_and_unclaim_hands_them_back_unstarted(tmp_path: Path):
    pool = TaskPool.create(tmp_path, ["a", "b", "c", "d", "e"])
    pool.set_prepared({3: "q3"})
    claims = pool.claim_many("w", [], ["r0", "r1", "r2", "r3"])
    assert [(c.index, c.item, c.run, c.prepared) for c in claims] == [
        (0, "a", "r0", False),
        (1, "b", "r1", False),
        (2, "c", "r2", False),
        (3, "d", "q3", True),  # made ahead: its own run
    ]
    # The first ends; its end is recorded with the next claim, in the same transaction.
    more = pool.claim_many("w", [(claims[0], Outcome("completed", "r0", result=1))], ["r4"])
    assert [c.index for c in more] == [4]
    pool.unclaim(claims[1:] + more)  # never started: as if never claimed
    rows = pool.rows()
    assert [(r.status, r.attempts, r.run) for r in rows] == [
        ("completed", 1, "r0"),
        ("pending", 0, None),
        ("pending", 0, None),
        ("pending", 0, "q3"),
        ("pending", 0, None),
    ]
    assert [a["idx"] for a in pool.attempts()] == [0]
    again = pool.claim_many("w2", [], [new_id() for _ in range(4)])
    assert [(c.index, c.attempt) for c in again] == [(1, 1), (2, 1), (3, 1), (4, 1)]
    assert again[2].run == "q3" and again[2].prepared  # still the run made ahead
    assert pool.claim_many("w2", [], ["x"]) == []  # nothing left


def test_unclaim_leaves_a_claim_another_worker_took_over(tmp_path: Path):
    pool = TaskPool.create(tmp_path, ["a"], lease_s=0.05)
    [first] = pool.claim_many("w1", [], ["r1"])
    time.sleep(0.1)  # w1's lease runs out
    [taken] = pool.claim_many("w2", [], ["r2"])
    assert (taken.index, taken.attempt) == (0, 2)
    pool.unclaim([first])  # too late: w2 holds it
    [row] = pool.rows()
    assert (row.status, row.worker, row.run) == ("running", "w2", "r2")
    assert [a["status"] for a in pool.attempts()] == ["lost", "running"]


def test_the_pool_is_built_in_wal_mode_with_nothing_left_beside_it(tmp_path: Path):
    import sqlite3

    TaskPool.create(tmp_path, list(range(50)), meta={"k": [1, 2]})
    assert sorted(os.listdir(tmp_path)) == [POOL_FILE]
    conn = sqlite3.connect(tmp_path / POOL_FILE)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()
    pool = TaskPool.open(tmp_path)
    assert pool.meta() == {"k": [1, 2]} and pool.counts()["pending"] == 50


# -- the worker: short tasks in batches, long ones alone ---------------------------------------
class Tasks:
    """A TaskRunner whose tasks sleep for `seconds[index]` and return the index."""

    def __init__(self, seconds: dict[int, float] | None = None) -> None:
        self.seconds = seconds or {}
        self.ran: list[int] = []

    def setup(self) -> None:
        pass

    def run(self, claim: Claim) -> Outcome:
        self.ran.append(claim.index)
        pause = self.seconds.get(claim.index)
        if pause:
            time.sleep(pause)
        return Outcome("completed", claim.run, result=claim.index)

    def interrupted(self, claim: Claim) -> bool:
        return False

    def teardown(self) -> None:
        pass


def test_short_tasks_are_claimed_in_batches_each_once(tmp_path: Path, monkeypatch):
    pool = TaskPool.create(tmp_path, list(range(300)))
    calls: list[int] = []
    claim_many = pool.claim_many

    def counted(worker: str, finished: Any, new_runs: Any) -> list[Claim]:
        calls.append(len(new_runs))
        return claim_many(worker, finished, new_runs)

    monkeypatch.setattr(pool, "claim_many", counted)
    runner = Tasks()
    report = Worker(pool, runner)()
    assert report.done == 300 and runner.ran == list(range(300))
    assert calls[0] == 1 and max(calls) == MAX_BATCH  # one until timed, then as many as fit
    assert len(calls) < 300 / 4
    assert [r.status for r in pool.rows()] == ["completed"] * 300
    assert [r.result for r in pool.rows()] == list(range(300))
    attempts = pool.attempts()
    assert sorted(a["idx"] for a in attempts) == list(range(300))  # each claimed once
    assert {a["status"] for a in attempts} == {"completed"}


def test_max_tasks_bounds_a_batch_claim(tmp_path: Path):
    pool = TaskPool.create(tmp_path, list(range(20)))
    report = Worker(pool, Tasks(), max_tasks=5)()
    assert report.done == 5
    assert pool.counts()["completed"] == 5 and pool.counts()["pending"] == 15


def test_claims_waiting_behind_a_long_task_go_back_to_the_pool(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(worker_module, "HAND_BACK_S", 0.1)
    monkeypatch.setattr(worker_module, "BATCH_S", 60.0)  # claims: [0], then [1..32] at once
    pool = TaskPool.create(tmp_path, list(range(33)))
    runner = Tasks({2: 1.0})
    thread = threading.Thread(target=Worker(pool, runner))
    thread.start()
    other = TaskPool.open(tmp_path)
    deadline = time.monotonic() + 5
    while 2 not in runner.ran and time.monotonic() < deadline:
        time.sleep(0.002)
    assert other.claim_many("w2", [], ["x"]) == []  # all claimed: 3..32 wait behind task 2
    taken: list[int] = []
    deadline = time.monotonic() + 0.8
    while time.monotonic() < deadline and not taken:  # while task 2 runs
        for claim in other.claim_many("w2", [], ["x"] * 40):
            other.finish(claim, Outcome("completed", "x", result=claim.index))
            taken.append(claim.index)
        time.sleep(0.01)
    thread.join(10)
    assert taken == list(range(3, 33))  # handed back while task 2 ran, and run here
    assert runner.ran == [0, 1, 2]
    assert [r.status for r in pool.rows()] == ["completed"] * 33


def test_ctrl_c_hands_back_the_claims_not_started(tmp_path: Path):
    pool = TaskPool.create(tmp_path, list(range(100)))

    class Stops(Tasks):
        def run(self, claim: Claim) -> Outcome:
            if claim.index == 60:
                raise KeyboardInterrupt
            return super().run(claim)

    with pytest.raises(KeyboardInterrupt):
        Worker(pool, Stops())()
    rows = pool.rows()
    assert [r.status for r in rows[:60]] == ["completed"] * 60
    assert {r.status for r in rows[60:]} == {"pending"}
    assert [r.attempts for r in rows[61:]] == [0] * 39  # never started: no attempt recorded
    assert rows[60].attempts == 1  # the one in flight was an attempt, handed back


def test_a_lingering_worker_ends_soon_after_the_last_task(tmp_path: Path):
    pool = TaskPool.create(tmp_path, [0])
    [held] = pool.claim_many("other", [], ["r"])

    def finish_later() -> None:
        time.sleep(0.4)
        pool.finish(held, Outcome("completed", "r"))

    threading.Thread(target=finish_later).start()
    t0 = time.monotonic()
    Worker(TaskPool.open(tmp_path), Tasks())()  # nothing to claim: waits for "other"
    waited = time.monotonic() - t0
    assert 0.35 < waited < 0.4 * 1.1 + 0.05  # a tenth of its wait at most, not a 2 s back-off


# -- child records ------------------------------------------------------------------------------
def test_yaml_lines_are_what_pyyaml_writes():
    rng = random.Random(19)
    alphabet = string.ascii_letters + string.digits + "_./-:+ '#"
    values: list[Any] = [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 10))) for _ in range(20000)
    ]
    words = "y n yes No on OFF true False null ~ NaN .nan .inf 0x1F 0o7 1_0 1:20 2026-12-02"
    values += [*words.split(), "1e5", "+1", "-1", ".5", "5.", "007", "=", "<<"]
    values += (
        [new_id() for _ in range(200)] + [now_iso() for _ in range(50)] + [f"/runs/{new_id()}"]
    )
    values += [
        0,
        7,
        -3,
        10**30,
        True,
        False,
        None,
        0.1,
        -2.5,
        1e-5,
        1e20,
        3.0,
        float("nan"),
        float("inf"),
    ]
    values += [rng.uniform(-1e6, 1e6) for _ in range(2000)] + [[1], {"a": 1}, "a b"]
    fast = 0
    for value in values:
        line = yaml_line("key", value, "  ")
        if line is not None:
            fast += 1
            assert line == dump_yaml({"config": {"key": value}}).removeprefix("config:\n"), value
    assert fast > len(values) / 2
    assert yaml_scalar([1]) is None and yaml_line("yes", 1) is None  # left to PyYAML
    assert yaml_line("id", "01a235c3-6bda-735a-b806-b8d5e50110aa") == (
        "id: 01a235c3-6bda-735a-b806-b8d5e50110aa\n"
    )


def _lock(config: dict[str, Any], **kw: Any) -> RunLock:
    return RunLock(
        id="",
        name="train",
        created="",
        command=["python", "train.py"],
        config=config,
        sources=[SourceRecord(path=".", tree="t" * 40)],
        data=[DataRecord(path="data", digest="d" * 64)],
        env={"python": "3.11", "platform": "linux", "packages_digest": "p", "host": "h"},
        **kw,
    )


def test_child_locks_text_and_digest_equal_the_whole_lock_rendered_and_hashed():
    base = {
        "seed": 0,
        "grid": list(range(200)),
        "model": {"depth": 2, "name": "vit/b-16", "opts": {"lr": 0.1, "nan": float("nan")}},
        "long": "a long sentence that folds " * 8,
        "übung": "ünïcode",
    }
    shared = _lock({})
    parts = LockParts(shared, base)
    for seed, save_dir in [(1, "/r/a"), (2.5, "/r with space/b"), ("13", "/r/c"), (None, "")]:
        config = {**base, "seed": seed, "save_dir": save_dir}
        lock = ChildLock(**{**vars(shared), "id": new_id(), "created": now_iso(), "config": config})
        lock.parts = parts
        assert parts.text(lock) == lock.to_yaml()
        assert lock.digest() == RunLock.digest(lock)
        assert parts.digest(lock) is not None  # assembled, not the fallback
    other = ChildLock(**{**vars(shared), "config": {**base, "model": {"depth": 3}}})
    other.parts = parts  # a value that is not the shared one: rendered and hashed afresh
    assert parts.text(other) == other.to_yaml() and other.digest() == RunLock.digest(other)
    moved = ChildLock(**{**vars(shared), "name": "else", "config": dict(base)})
    moved.parts = parts
    assert parts.digest(moved) is None and moved.digest() == RunLock.digest(moved)
    keyed = ChildLock(**{**vars(shared), "config": {1: "a", "b": 2}})
    keyed.parts = parts
    assert parts.digest(keyed) is None  # json's own way with non-string keys


def test_start_attempt_reads_this_process_once(monkeypatch):
    from tether.store import state as state_mod

    reads: list[int] = []
    real = state_mod.proc_start_time
    monkeypatch.setattr(state_mod, "_own", None)
    monkeypatch.setattr(state_mod, "proc_start_time", lambda pid: reads.append(pid) or real(pid))
    states = [start_attempt(None) for _ in range(3)]
    assert reads == [os.getpid()]  # a worker's thousands of attempts: /proc read once
    assert {s.proc_start for s in states} == {real(os.getpid())}
    assert all(s.pid == os.getpid() and s.attempts[-1].pid == os.getpid() for s in states)


def test_a_quick_write_is_atomic_under_a_name_the_sweep_knows(tmp_path: Path, monkeypatch):
    target = tmp_path / "state.json"
    fsio.atomic_write_bytes(target, b"one", durable=False)
    fsio.atomic_write_bytes(target, b"two", durable=False)
    assert target.read_bytes() == b"two" and os.listdir(tmp_path) == ["state.json"]

    def fail(fd: int, data: Any) -> int:
        raise OSError("disk full")

    monkeypatch.setattr(fsio.os, "write", fail)
    with pytest.raises(OSError):
        fsio.atomic_write_bytes(target, b"three", durable=False)
    monkeypatch.undo()
    assert target.read_bytes() == b"two" and os.listdir(tmp_path) == ["state.json"]
    # A write killed mid-way leaves its temporary file: the sweep recognises the name.
    name = f".state.json.{2**22 + 1}.{0:012x}.tmp"  # a pid no process has
    (tmp_path / name).write_text("half")
    os.utime(tmp_path / name, (0, 0))
    assert sweep_orphans(tmp_path) == [name]


def test_set_leaf_sets_in_place_and_keeps_omegaconfs_checks():
    from omegaconf.errors import ReadonlyConfigError

    cfg = OmegaConf.create({"i": 0, "path": "???", "ref": "${i}", "sub": {"x": 1}})
    set_leaf(cfg, "i", 5)
    set_leaf(cfg, "path", "/runs/x")
    assert (cfg.i, cfg.ref, cfg.path) == (5, 5, "/runs/x")
    set_leaf(cfg, "i", "${sub.x}")  # an interpolation stays one
    assert cfg.i == 1 and OmegaConf.is_interpolation(cfg, "i")
    set_leaf(cfg, "new", 3)  # not there: OmegaConf's own way
    assert cfg.new == 3
    OmegaConf.set_readonly(cfg, True)
    with pytest.raises(ReadonlyConfigError):
        set_leaf(cfg, "i", 6)


def test_check_task_to_without_a_trial_copy_still_refuses_what_cannot_work():
    from tether.errors import ConfigError

    plain = OmegaConf.create({"seed": 0, "grid": list(range(200))})
    check_task_to(plain, "seed", 3)  # the fast answer
    interpolated = OmegaConf.create({"seed": 0, "name": "run-${seed}", "n": "${oops}"})
    with pytest.raises(ConfigError):
        check_task_to(interpolated, "seed", 3)  # the trial resolves the config, and fails
    OmegaConf.set_readonly(plain, True)
    with pytest.raises(ConfigError):
        check_task_to(plain, "seed", 3)


def test_state_json_of_a_child_is_compact_sorted_json(tmp_path: Path):
    from tether.batches.children import write_state
    from tether.store.state import read_state

    state = start_attempt(None)
    state.status, state.exit_code, state.stopped = "completed", 0, now_iso()
    write_state(tmp_path, state)
    text = (tmp_path / "state.json").read_text()
    assert json.loads(text)["status"] == "completed" and text.endswith("}\n")
    assert read_state(tmp_path).attempts[0].status == "completed"
