"""Reconcile on read: the listing never lags the run folders after a crash, on a local disk too.

A writer announces each change in the runs root's change journal before it writes the run's
records, and every read first applies the entries its index has not applied yet by reading just
those run folders. Here real writers are SIGKILLed between their records and the index (the
child replaces `Index.upsert` with one that stops there: no hook in tether itself), and
`tether runs --json` must show what the folders say with no reindex; an ordinary listing must
open no run folder; the journal must stay bounded."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tether import mounts
from tether.ids import is_run_id
from tether.store import RunState, Store
from tether.store import journal as journal_mod
from tether.store.attrs import add_event
from tether.store.journal import Journal
from tether.store.records import RunRecord
from tether.store.state import write_state

from ._support import World, wait_for

# A writer killed (by the test) inside the index update of the change `sys.argv[2]` names, its
# run's records already written: what a SIGKILL at the worst moment leaves.
KILLED_WRITER = """
import os, sys, threading
from pathlib import Path
import tether
from tether.store import Store
from tether.store.index import Index

marker, when = Path(sys.argv[1]), sys.argv[2]
upsert = Index.upsert

def stopped_upsert(self, record, kind="update", **kw):
    if kind == when and (when != "state" or record.state.status == "completed"):
        marker.write_text(record.id)
        threading.Event().wait()  # the test kills this process here
    return upsert(self, record, kind, **kw)

Index.upsert = stopped_upsert
if when == "attrs":
    store = Store(os.environ["TETHER_RUNS"])
    store.add_attr(store.resolve_one("1"), "label", "best")
elif when == "changing":  # how the roll-up, archive import and attach write: Store.changing
    import json
    store = Store(os.environ["TETHER_RUNS"])
    record = store.resolve_one("1")
    with store.changing(record, "changing"):
        summary = dict(record.summary or {})
        summary["metrics"] = {**summary.get("metrics", {}), "tb/acc": {"last": 0.75, "step": 3}}
        (record.dir / "summary.json").write_text(json.dumps(summary))
        record.summary = summary
else:
    with tether.start_run({"lr": 0.5}, name="killed", snapshot=False) as run:
        run.log_metrics({"loss": 0.25}, step=1)
        if when == "summary":
            run.flush()
            threading.Event().wait()
"""

MAKE_RUN = """
import tether
with tether.start_run({"lr": 0.1}, name="first", snapshot=False) as run:
    run.log_metrics({"loss": 0.5})
"""


def _killed_writer(world: World, when: str) -> str:
    marker = world.tmp / f"stopped-{when}"
    proc = world.popen("-c", KILLED_WRITER, str(marker), when)
    run_id = wait_for(
        lambda: marker.exists() and marker.read_text(), f"the {when} write", proc=proc
    )
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    return str(run_id)


def _row(world: World, run_id: str) -> dict[str, Any]:
    rows = {r["id"]: r for r in world.listing()}
    assert run_id in rows, rows
    return rows[run_id]


@pytest.mark.parametrize("when", ["created", "summary", "state"])
def test_a_run_of_a_killed_writer_is_listed_as_its_folder_says(world: World, when: str) -> None:
    run_id = _killed_writer(world, when)
    # What the index alone says (the writer never reached it): not what the folder says.
    indexed = world.index_rows("SELECT status FROM runs WHERE id = ?", (run_id,))
    assert indexed in ([], [("pending",)], [("running",)])
    row = _row(world, run_id)
    if when == "created":  # killed before its first index row: a pending run whose creator died
        assert (row["status"], row["metrics"]) == ("unknown", {})
    elif when == "summary":  # killed before the row had its live metrics
        assert (row["status"], row["metrics"]) == ("unknown", {"loss": 0.25})
    else:  # killed after its final state.json, before the row said so
        assert (row["status"], row["metrics"]) == ("completed", {"loss": 0.25})
    assert world.index_rows("SELECT count(*) FROM runs WHERE id = ?", (run_id,)) == [(1,)]
    # Applied once: the index now holds it, and its position is the journal's end.
    store = Store(world.runs)
    assert store.index.position() == (store.journal.ident(), store.journal.end())


def test_a_label_of_a_killed_writer_is_listed(world: World) -> None:
    proc = world.python("-c", MAKE_RUN)
    assert proc.returncode == 0, proc.stderr
    run_id = _killed_writer(world, "attrs")
    assert world.index_rows("SELECT label FROM runs WHERE id = ?", (run_id,)) == [(None,)]
    assert _row(world, run_id)["label"] == "best"
    shown = json.loads(world.tether_ok("show", "1", "--json"))
    assert shown["id"] == run_id


def test_a_change_made_through_store_changing_is_listed(world: World) -> None:
    proc = world.python("-c", MAKE_RUN)
    assert proc.returncode == 0, proc.stderr
    run_id = _killed_writer(world, "changing")
    indexed = "SELECT count(*) FROM vals WHERE run = ? AND key LIKE '%tb/acc'"
    assert world.index_rows(indexed, (run_id,)) == [(0,)]  # the writer never reached the index
    assert _row(world, run_id)["metrics"]["tb/acc"] == 0.75


# A batch worker's recorder (store rows written by its thread every quarter second) killed
# after a task's final state.json, before its thread wrote the row.
KILLED_WORKER = """
import os, signal, sys
from tether.batches import children
from tether.store import RunState, Store

children.FLUSH_EVERY_S = 3600.0  # the row would wait for the thread: it never comes
store = Store(os.environ["TETHER_RUNS"])
record = store.create(store.new_lock("task"))
assert [r.status for r in store.list()] == ["pending"]  # the index has applied all entries
recorder = children.Recorder(store.root)
record.state = RunState(status="completed", exit_code=0, started=record.lock.created)
recorder.ended(record)
print(record.id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_task_of_a_killed_batch_worker_is_listed_completed(world: World) -> None:
    proc = world.python("-c", KILLED_WORKER)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    run_id = proc.stdout.strip()
    assert world.index_rows("SELECT status FROM runs WHERE id = ?", (run_id,)) == [("pending",)]
    assert _row(world, run_id)["status"] == "completed"


# -- what an ordinary listing reads --------------------------------------------------------------
_opened: list[str] | None = None  # paths opened or listed while a test watches (audit hook)
_EVENTS = ("open", "os.scandir", "os.listdir", "sqlite3.connect")


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _opened is None or event not in _EVENTS or not args:
        return
    if isinstance(args[0], (str, bytes, os.PathLike)):
        _opened.append(os.fsdecode(args[0]))


_HOOKED: list[bool] = []


def _watch() -> list[str]:
    global _opened
    if not _HOOKED:
        sys.addaudithook(_audit)  # a hook stays for the process: inert while _opened is None
        _HOOKED.append(True)
    _opened = []
    return _opened


def _stop_watching() -> None:
    global _opened
    _opened = None


def _run_folders_read(opened: list[str], root: Path) -> set[str]:
    """The run ids whose folders (or files inside them) were opened or listed."""
    out = set()
    for path in opened:
        try:
            rel = Path(os.path.abspath(path)).relative_to(root)
        except ValueError:
            continue
        if rel.parts and is_run_id(rel.parts[0]):
            out.add(rel.parts[0])
    return out


def _list_in_process(root: Path) -> list[str]:
    from click.testing import CliRunner

    from tether.cli.main import cli

    result = CliRunner().invoke(cli, ["--runs-dir", str(root), "runs", "-n", "20", "--json"])
    assert result.exit_code == 0, result.output
    return [r["name"] for r in json.loads(result.output)]


def test_an_ordinary_listing_opens_no_run_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(mounts.SHARED_ENV, "0")
    root = (tmp_path / "runs").resolve()
    store = Store(root)
    records = [store.create(store.new_lock(f"r{i}", config={"i": i})) for i in range(300)]
    for record in records[:100]:
        store.set_state(record, RunState(status="completed", exit_code=0))
    store.close_index()
    assert len(_list_in_process(root)) == 20  # applies the 400 entries made above
    opened = _watch()
    try:
        _list_in_process(root)
        assert _run_folders_read(opened, root) == set()
        assert any(p.endswith("index.db") for p in opened)  # the hook did see the listing
        # Two runs changed by another process on this host: its writes moved the index's
        # position past its own entries, so the next listing reads no folder either.
        other = Store(root)
        other.set_state(records[6], RunState(status="failed", exit_code=1))
        other.add_attr(records[251], "label", "y")
        other.close_index()
        opened.clear()
        assert _list_in_process(root)
        assert _run_folders_read(opened, root) == set()
        # Two runs changed where this index did not see it (another host of a shared root:
        # the records and a journal entry, no row): the listing reads those two folders only.
        write_state(records[5].dir, RunState(status="failed", exit_code=1))
        Journal(root).append(records[5].id, "state")
        add_event(records[250].dir, "label", "x")
        Journal(root).append(records[250].id, "attrs")
        opened.clear()
        _list_in_process(root)
        assert _run_folders_read(opened, root) == {records[5].id, records[250].id}
        opened.clear()
        _list_in_process(root)
        assert _run_folders_read(opened, root) == set()
    finally:
        _stop_watching()
    # Read from state.json and attrs/ only (run.lock was not read again): all of the row holds.
    rows = {r.id: r for r in Store(root).list()}
    assert rows[records[5].id].status == "failed" and rows[records[250].id].label == "x"
    assert rows[records[6].id].status == "failed" and rows[records[251].id].label == "y"
    assert [r.id for r in Store(root).query("config.i = 250 and name = r250")] == [records[250].id]


def test_live_metrics_of_a_listed_run_are_applied_without_its_run_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(mounts.SHARED_ENV, "0")
    store = Store(tmp_path / "runs")
    record = store.create(store.new_lock("fit", config={"lr": 0.1}))
    assert [r.metrics for r in store.list()] == [{}]
    # What History does, killed before its index row: the entry, then summary.json.
    writer = Store(store.root).open_index()
    writer.intend(record.id, "summary")
    (record.dir / "summary.json").write_text(json.dumps({"metrics": {"loss": {"last": 0.5}}}))
    import tether.lock

    def no_lock(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("run.lock read again")

    monkeypatch.setattr(tether.lock, "read_lock", no_lock)
    monkeypatch.setattr("tether.store.store.read_lock", no_lock)
    (row,) = Store(store.root).query("metrics.loss < 1 and config.lr = 0.1")
    assert (row.id, row.metrics, row.name) == (record.id, {"loss": 0.5}, "fit")


# -- a bounded journal ---------------------------------------------------------------------------
def _shards(root: Path) -> list[str]:
    return sorted(n for n in os.listdir(root / ".journal") if n.isdigit())


def test_the_journal_is_compacted_once_applied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(mounts.SHARED_ENV, "0")
    monkeypatch.setattr(journal_mod, "SHARD", 4)
    root = tmp_path / "runs"
    store = Store(root)
    records = []
    for i in range(40):
        records.append(store.create(store.new_lock(f"r{i}")))
        store.set_state(records[-1], RunState(status="completed", exit_code=0))
        assert len(store.list()) == i + 1
        assert len(_shards(root)) <= journal_mod.KEEP_SHARDS + 2
    assert _shards(root)[0] != "000000"  # the oldest shards are gone
    assert store.journal.first() > 1 and store.journal.end() == 80
    # A new process (no known end) appends after the end, not into a compacted shard.
    journal_mod._known_end.clear()
    fresh = Store(root)
    fresh.add_attr(fresh.load(records[0].id), "label", "kept")
    assert store.journal.end() == 81
    rows = {r.name: r for r in Store(root).list()}
    assert len(rows) == 40 and rows["r0"].label == "kept"
    assert all(r.status == "completed" for r in rows.values())


def test_a_cache_behind_the_compacted_shards_rebuilds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(mounts.SHARED_ENV, "1")
    monkeypatch.setattr(journal_mod, "SHARD", 4)
    root = tmp_path / "runs"

    def host(name: str) -> Store:
        monkeypatch.setenv(mounts.CACHE_DIR_ENV, str(tmp_path / f"cache-{name}"))
        return Store(root)

    a = host("a")
    first = a.create(a.new_lock("first"))
    assert [r.name for r in host("b").list()] == ["first"]  # host b applies entry 1
    a = host("a")
    for _ in range(30):
        a.set_state(first, RunState(status="running"))
        a.list()  # host a applies, and compacts what it applied
    a.set_state(first, RunState(status="completed", exit_code=0))
    assert journal_mod.Journal(root).first() > 2  # host b's last entry is gone
    scans: list[int] = []
    real_scan = Store.scan

    def counting_scan(self: Store) -> Iterator[RunRecord]:
        scans.append(1)
        return real_scan(self)

    monkeypatch.setattr(Store, "scan", counting_scan)
    rows = host("b").list()
    assert [(r.name, r.status) for r in rows] == [("first", "completed")]
    assert scans == [1]  # rebuilt from the folders, once
    assert [(r.name, r.status) for r in host("b").list()] == [("first", "completed")]
    assert scans == [1]


def test_an_index_of_the_previous_version_gains_its_status_index_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    monkeypatch.setenv(mounts.SHARED_ENV, "0")
    store = Store(tmp_path / "runs")
    record = store.create(store.new_lock("old"))
    store.close_index()
    conn = sqlite3.connect(store.index_path)
    conn.execute("DROP INDEX runs_status")
    conn.execute("UPDATE schema_version SET version = 2")
    conn.commit()
    conn.close()
    scans: list[int] = []
    real_scan = Store.scan

    def counting_scan(self: Store) -> Iterator[RunRecord]:
        scans.append(1)
        return real_scan(self)

    monkeypatch.setattr(Store, "scan", counting_scan)
    assert [r.id for r in Store(store.root).list()] == [record.id]
    assert scans == []  # upgraded in place, not rebuilt from the folders
    conn = sqlite3.connect(store.index_path)
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "runs_status" in names
    assert conn.execute("SELECT version FROM schema_version").fetchone() == (3,)
    conn.close()
