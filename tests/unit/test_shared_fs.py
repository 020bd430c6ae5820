"""Shared filesystems without a network: mount detection, exclusive creation, the change journal,
the index as a per-host cache, and the task pool of files (TETHER_SHARED_FS=1 on a local disk;
tests/integration/test_sshfs.py does the same through two real FUSE mounts)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tether import mounts
from tether.executors.taskpool import Outcome, TaskPool, has_pool
from tether.store import RunState, Store
from tether.store import journal as journal_mod
from tether.store.journal import Journal


@pytest.fixture
def fake_mounts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def write(text: str) -> None:
        table = tmp_path / "mounts"
        table.write_text(textwrap.dedent(text))
        monkeypatch.setattr(mounts, "MOUNTS_FILE", str(table))
        mounts.forget_mounts()

    yield write
    mounts.forget_mounts()


@pytest.fixture
def shared(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(mounts.SHARED_ENV, "1")


def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, root: Path) -> Store:
    """A Store as a process on host `name` sees it: its own local cache folder."""
    monkeypatch.setenv(mounts.CACHE_DIR_ENV, str(tmp_path / f"cache-{name}"))
    store = Store(root)
    assert store.index_path.is_relative_to(tmp_path / f"cache-{name}")
    return store


# -- detection ----------------------------------------------------------------------------------
def test_the_longest_mount_point_decides(fake_mounts, tmp_path: Path, monkeypatch):
    monkeypatch.delenv(mounts.SHARED_ENV, raising=False)
    nfs = tmp_path / "nfs"
    local = nfs / "scratch"
    spaced = tmp_path / "my runs"
    for folder in (local, spaced):
        folder.mkdir(parents=True)
    escaped = str(spaced).replace(" ", "\\040")  # as /proc/mounts writes a space
    fake_mounts(
        f"""\
        overlay / overlay rw 0 0
        server:/export {nfs} nfs4 rw 0 0
        /dev/sda1 {local} ext4 rw 0 0
        host:/x {escaped} fuse.sshfs rw 0 0
        """
    )
    assert mounts.fstype(nfs / "runs") == "nfs4"  # not made yet: its parent decides
    assert mounts.is_shared(nfs / "runs")
    assert mounts.fstype(local / "runs") == "ext4" and not mounts.is_shared(local)
    assert mounts.fstype(spaced) == "fuse.sshfs" and mounts.is_shared(spaced / "a" / "b")
    assert mounts.fstype(tmp_path) == "overlay" and not mounts.is_shared(tmp_path)
    # A path that merely starts like a mount point is not under it.
    assert mounts.fstype(tmp_path / "nfsish") == "overlay"
    monkeypatch.setenv(mounts.SHARED_ENV, "0")
    assert not mounts.is_shared(nfs)
    monkeypatch.setenv(mounts.SHARED_ENV, "1")
    assert mounts.is_shared(local)


@pytest.mark.parametrize("kind", ["nfs", "lustre", "gpfs", "beegfs", "cifs", "fuse.s3fs"])
def test_network_types(kind: str):
    assert mounts.is_network_type(kind)


def test_local_types():
    for kind in ("ext4", "xfs", "btrfs", "tmpfs", "overlay", "fuseblk", None):
        assert not mounts.is_network_type(kind)


def test_a_cache_on_a_network_home_moves_to_the_temp_folder(
    fake_mounts, tmp_path: Path, monkeypatch
):
    home = tmp_path / "home"
    home.mkdir()
    fake_mounts(f"server:/home {home} nfs rw 0 0\n")
    monkeypatch.delenv(mounts.CACHE_DIR_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    assert mounts.default_cache_dir() == home / ".cache" / "tether"
    local = mounts.local_cache_dir()
    assert local == tmp_path / "tmp" / f"tether-{os.getuid()}" / "cache"
    assert (local.parent.stat().st_mode & 0o777) == 0o700
    monkeypatch.setenv(mounts.CACHE_DIR_ENV, str(home / "mine"))  # explicit: taken as it is
    assert mounts.local_cache_dir() == home / "mine"


# -- exclusive creation -------------------------------------------------------------------------
def test_exclusive_creation_has_one_winner(tmp_path: Path):
    target = tmp_path / "x"
    assert mounts.create_exclusive(target, b"first\n")
    assert not mounts.create_exclusive(target, b"second\n")
    assert target.read_bytes() == b"first\n"
    assert mounts.create_small(tmp_path / "s", "one") and not mounts.create_small(
        tmp_path / "s", "two"
    )
    assert mounts.read_small(tmp_path / "s") == "one"
    assert mounts.read_small(tmp_path / "missing") is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s", "x"]  # no temporary file left


def test_without_links_exclusive_creation_falls_back_to_o_excl(tmp_path: Path, monkeypatch):
    def refuse(*_args, **_kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", refuse)
    monkeypatch.setattr(os, "symlink", refuse)
    assert mounts.create_small(tmp_path / "s", "text")
    assert not mounts.create_small(tmp_path / "s", "other")
    assert not (tmp_path / "s").is_symlink() and mounts.read_small(tmp_path / "s") == "text"
    assert mounts.create_exclusive(tmp_path / "x", b"data")
    assert not mounts.create_exclusive(tmp_path / "x", b"more")
    assert (tmp_path / "x").read_bytes() == b"data"


# -- the journal --------------------------------------------------------------------------------
def test_journal_numbers_entries_without_gaps(tmp_path: Path):
    journal = Journal(tmp_path)
    assert journal.ident() is None and journal.end() == 0 and journal.read(0) == ([], 0)
    seqs = [journal.append(f"run-{i}", "state") for i in range(25)]
    assert seqs == list(range(1, 26))
    assert journal.ident() is not None
    entries, end = journal.read(20)
    assert end == 25 and [e.run for e in entries] == [f"run-{i}" for i in range(20, 25)]
    assert entries[0].seq == 21 and entries[0].kind == "state"
    assert Journal(tmp_path).end() == 25 and Journal(tmp_path).end(hint=3) == 25
    assert journal.read(25) == ([], 25) and not journal.has_after(25)


def test_journal_shards(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(journal_mod, "SHARD", 4)
    journal = Journal(tmp_path)
    for i in range(10):
        journal.append(f"r{i}", "state")
    assert sorted(p.name for p in journal.dir.iterdir()) == ["000000", "000001", "000002", "id"]
    assert [e.run for e in journal.read(0)[0]] == [f"r{i}" for i in range(10)]
    journal_mod._known_end.clear()
    assert Journal(tmp_path).end() == 10


def test_summary_entries_are_coalesced(tmp_path: Path, monkeypatch):
    journal = Journal(tmp_path)
    assert journal.append("a", "summary") == 1
    assert journal.append("a", "summary") is None  # within COALESCE_S: the next state covers it
    assert journal.append("b", "summary") == 2
    assert journal.append("a", "state") == 3
    monkeypatch.setitem(journal_mod.COALESCE_S, "summary", 0.0)
    assert journal.append("a", "summary") == 4


def test_a_half_written_entry_is_waited_for_then_skipped(tmp_path: Path):
    journal = Journal(tmp_path)
    journal.append("a", "state")
    stuck = journal.path(2)
    stuck.write_text("")  # the no-symlink fallback, killed between create and write
    journal.path(3).symlink_to("c state host 2026-01-01T00:00:00.000000Z")
    assert journal.read(1) == ([], 1)  # it may still be written
    old = stuck.stat().st_mtime - 2 * journal_mod.INCOMPLETE_GRACE_S
    os.utime(stuck, (old, old))
    entries, end = journal.read(1)
    assert [e.run for e in entries] == ["c"] and end == 3


APPENDER = textwrap.dedent(
    """
    import sys
    from tether.store.journal import Journal
    root, me, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    journal = Journal(root)
    for i in range(n):
        journal.append(f"{me}-{i}", "state")
    """
)


def test_concurrent_writers_lose_no_entry_and_leave_no_gap(tmp_path: Path):
    script = tmp_path / "append.py"
    script.write_text(APPENDER)
    procs = [
        subprocess.Popen([sys.executable, str(script), str(tmp_path), f"w{w}", "40"])
        for w in range(8)
    ]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    journal = Journal(tmp_path)
    entries, end = journal.read(0)
    assert end == 320 and [e.seq for e in entries] == list(range(1, 321))
    assert sorted(e.run for e in entries) == sorted(
        f"w{w}-{i}" for w in range(8) for i in range(40)
    )


# -- the store on a shared filesystem ----------------------------------------------------------
def test_on_a_local_disk_the_index_is_in_the_runs_root(tmp_path: Path, monkeypatch):
    monkeypatch.setenv(mounts.SHARED_ENV, "0")
    store = Store(tmp_path / "runs")
    record = store.create(store.new_lock("train"))
    assert store.index_path == store.root / "index.db" and store.index_path.is_file()
    # The same change journal as on a shared filesystem: reads reconcile with it.
    assert [e.run for e in store.journal.read(0)[0]] == [record.id]
    assert [r.id for r in store.list()] == [record.id]
    assert store.index.position() == (store.journal.ident(), 1)


def test_each_host_keeps_its_own_cache_and_learns_from_the_journal(
    shared, tmp_path: Path, monkeypatch
):
    root = tmp_path / "runs"
    a = host(tmp_path, monkeypatch, "a", root)
    first = a.create(a.new_lock("first", config={"lr": 0.1}))
    assert not (root / "index.db").exists()  # no SQLite in the shared folder
    b = host(tmp_path, monkeypatch, "b", root)
    assert [r.name for r in b.list()] == ["first"]  # a cold cache: rebuilt from the folders
    second = a.create(a.new_lock("second"))
    a.set_state(first, RunState(status="completed", exit_code=0))
    a.add_attr(second, "tag", "seen")
    rows = {r.name: r for r in b.list()}
    assert rows["first"].status == "completed" and rows["second"].tags == ["seen"]
    assert [r.name for r in b.query("config.lr = 0.1")] == ["first"]
    # A second process of host b shares b's cache: nothing to catch up.
    again = host(tmp_path, monkeypatch, "b", root)
    assert again.index.position() == b.index.position()
    from tether.store.lifecycle import delete, restore, trashed

    delete(a, first.id, force=True)
    assert [r.name for r in b.list()] == ["second"]
    restore(a, trashed(a)[0])
    assert sorted(r.name for r in b.list()) == ["first", "second"]


def test_an_ordinary_listing_reads_only_the_runs_that_changed(shared, tmp_path: Path, monkeypatch):
    root = tmp_path / "runs"
    a = host(tmp_path, monkeypatch, "a", root)
    records = [a.create(a.new_lock(f"r{i}")) for i in range(30)]
    b = host(tmp_path, monkeypatch, "b", root)
    assert len(b.list(limit=100)) == 30
    loaded: list[Path] = []
    scans: list[int] = []
    real_load, real_scan = Store.load_dir, Store.scan

    def counting_load(self, run_dir, lock=None):
        loaded.append(run_dir)
        return real_load(self, run_dir, lock)

    def counting_scan(self):
        scans.append(1)
        return real_scan(self)

    monkeypatch.setattr(Store, "load_dir", counting_load)
    monkeypatch.setattr(Store, "scan", counting_scan)
    fresh = host(tmp_path, monkeypatch, "b", root)
    assert len(fresh.list(limit=100)) == 30 and loaded == [] and scans == []
    a.set_state(records[3], RunState(status="running"))
    a.set_state(records[3], RunState(status="completed", exit_code=0))
    a.add_attr(records[7], "label", "x")
    rows = {r.name: r for r in host(tmp_path, monkeypatch, "b", root).list(limit=100)}
    assert rows["r3"].status == "completed" and rows["r7"].label == "x"
    assert sorted(p.name for p in loaded) == sorted([records[3].id, records[7].id])
    assert scans == []


def test_a_remade_runs_root_rebuilds_the_cache(shared, tmp_path: Path, monkeypatch):
    import shutil

    root = tmp_path / "runs"
    a = host(tmp_path, monkeypatch, "a", root)
    a.create(a.new_lock("old"))
    b = host(tmp_path, monkeypatch, "b", root)
    assert [r.name for r in b.list()] == ["old"]
    shutil.rmtree(root)
    a = host(tmp_path, monkeypatch, "a", root)
    a.create(a.new_lock("new"))
    assert [r.name for r in host(tmp_path, monkeypatch, "b", root).list()] == ["new"]


def test_reindex_rebuilds_the_local_cache(shared, tmp_path: Path, monkeypatch):
    root = tmp_path / "runs"
    a = host(tmp_path, monkeypatch, "a", root)
    record = a.create(a.new_lock("one"))
    a.index.close()
    a.index_path.unlink()
    store = host(tmp_path, monkeypatch, "a", root)
    assert store.reindex() == 1
    assert store.index.position() == (store.journal.ident(), 1)
    assert [r.id for r in store.list()] == [record.id]


# -- the task pool of files ---------------------------------------------------------------------
def test_on_a_shared_filesystem_the_pool_is_files(shared, tmp_path: Path):
    pool = TaskPool.create(tmp_path, ["a", "b"], meta={"k": [1], "odd/key": 2}, lease_s=0.2)
    assert pool.kind == "files" and has_pool(tmp_path) and not (tmp_path / "tasks.db").exists()
    assert TaskPool.open(tmp_path).kind == "files"
    assert pool.meta() == {"k": [1], "odd/key": 2}
    pool.set_meta("jobs", ["12"])
    assert pool.meta()["jobs"] == ["12"]
    with pytest.raises(Exception, match="task pool already"):
        TaskPool.create(tmp_path, ["c"])


def test_file_pool_claims_leases_and_results(shared, tmp_path: Path):
    pool = TaskPool.create(tmp_path, ["a", "b"], lease_s=0.2)
    first = pool.claim("w1", new_run="r1")
    second = pool.claim("w2", new_run="r2")
    assert (first.item, second.item) == ("a", "b") and pool.claim("w3") is None
    assert pool.wait_hint() is not None
    assert pool.counts()["running"] == 2
    import time

    time.sleep(0.3)  # w1 stops renewing: its lease runs out
    assert pool.heartbeat([second]) == []
    taken = pool.claim("w3", new_run="r3")
    assert taken.index == 0 and taken.attempt == 2 and taken.run == "r3"
    assert pool.heartbeat([first]) == [first]
    assert pool.finish(first, Outcome("completed", "r1")) is False  # too late: w3 holds it
    assert pool.finish(taken, Outcome("completed", "r3", result={"x": 1}))
    assert pool.finish(second, Outcome("failed", "r2", error="Traceback ..."))
    rows = pool.rows()
    assert [(r.status, r.run, r.result, r.error) for r in rows] == [
        ("completed", "r3", {"x": 1}, None),
        ("failed", "r2", None, "Traceback ..."),
    ]
    assert [a["status"] for a in pool.attempts()] == ["lost", "completed", "failed"]
    assert pool.reset_for_retry() == 1 and pool.counts()["pending"] == 1
    again = pool.claim("w4", new_run="r4")
    assert (again.index, again.attempt, again.run, again.prepared) == (1, 2, "r4", False)
    assert pool.finish(again, Outcome("completed", "r4"))
    assert pool.counts() == {
        "pending": 0,
        "running": 0,
        "completed": 2,
        "failed": 0,
        "total": 2,
    }
    assert pool.unfinished() == 0 and pool.wait_hint() is None


def test_file_pool_hands_back_prepares_and_stops(shared, tmp_path: Path):
    pool = TaskPool.create(tmp_path, [0, 1, 2])
    pool.set_prepared({0: "q0", 2: "q2"})
    claim = pool.claim("w", new_run="n0")
    assert (claim.index, claim.run, claim.prepared) == (0, "q0", True)
    # Handed back (preempted): the next attempt continues the same run.
    assert pool.finish(claim, Outcome("terminated", "q0"))
    assert pool.rows()[0].status == "pending"
    again = pool.claim("w", new_run="n1")
    assert (again.index, again.attempt, again.run, again.prepared) == (1, 1, "n1", False)
    third = pool.claim("w", new_run="n2")
    assert (third.index, third.run, third.prepared) == (2, "q2", True)
    resumed = pool.claim("w", new_run="n3")
    assert (resumed.index, resumed.attempt, resumed.run, resumed.prepared) == (0, 2, "q0", True)
    assert sorted(pool.release_all()) == ["n1", "q0", "q2"]
    assert pool.finish(third, Outcome("completed", "q2")) is False  # the batch was stopped
    assert pool.counts()["pending"] == 3
    # A pickled pool (sent to a worker process) works the same.
    import pickle

    copy = pickle.loads(pickle.dumps(pool))
    assert copy.kind == "files" and copy.counts()["pending"] == 3


WORKER = textwrap.dedent(
    """
    import os, sys, time
    from tether.executors.taskpool import Outcome, TaskPool
    from tether.executors.worker import Worker

    class Runner:
        def __init__(self, log):
            self.log = log
        def setup(self): pass
        def teardown(self): pass
        def interrupted(self, claim): return False
        def run(self, claim):
            with open(self.log, "a") as fh:
                fh.write(f"{claim.index}\\n")
            return Outcome("completed", claim.run)

    folder, log, ready, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    # A start barrier: every worker is up before any claims, so the pool is really shared
    # (a loaded machine may start one interpreter long after another has drained the pool).
    open(os.path.join(ready, str(os.getpid())), "w").close()
    deadline = time.monotonic() + 60
    while len(os.listdir(ready)) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    open(log, "a").close()
    print(Worker(TaskPool.open(folder), Runner(log))().done)
    """
)


def test_file_pool_workers_claim_every_task_once(shared, tmp_path: Path):
    folder = tmp_path / "batch"
    folder.mkdir()
    pool = TaskPool.create(folder, list(range(150)))
    assert pool.kind == "files"
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    ready = tmp_path / "ready"
    ready.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(folder), str(tmp_path / f"log{w}"), str(ready), "4"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for w in range(4)
    ]
    done = [int(p.communicate(timeout=120)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    ran = [int(x) for w in range(4) for x in (tmp_path / f"log{w}").read_text().split()]
    assert sorted(ran) == list(range(150)) and sum(done) == 150  # each task once, none twice
    assert sum(1 for d in done if d) >= 2  # the work was shared
    assert pool.counts()["completed"] == 150
    assert [a["attempt"] for a in pool.attempts()] == [1] * 150
    assert json.loads((folder / "tasks" / "items.json").read_text()) == list(range(150))
