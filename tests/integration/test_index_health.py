"""The index heals itself and never hides the store: each broken state of index.db (0-byte,
schema-only, a damaged page, a rebuild killed midway, a read-only runs root, a full disk) still
lists every run on disk, rebuilt or intact; trouble that is no damage never touches the file."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._support import World, wait_for

IN_CI = os.environ.get("CI") == "true"

MAKE_RUNS = """
import sys, tether
for i in range(int(sys.argv[1])):
    with tether.start_run({"i": i, "lr": 0.1 * (i + 1)}, name=f"fit{i}", snapshot=False) as run:
        run.log_metrics({"loss": 1.0 / (i + 1)})
"""

# A rebuild that stops after its first run folder until it is killed (SIGKILL, by the test).
KILLED_REBUILD = """
import os, sys
from pathlib import Path
from tether.store import Store

scan = Store.scan
def slow_scan(self):
    for n, record in enumerate(scan(self)):
        yield record
        if n == 0:
            Path(sys.argv[1]).write_text("mid-way")
            sys.stdin.read()  # blocks: the test kills this process here
Store.scan = slow_scan
store = Store(os.environ["TETHER_RUNS"])
store.reindex() if sys.argv[2] == "reindex" else store.list()
"""


def _make_runs(world: World, n: int = 3, env: dict[str, str] | None = None) -> None:
    proc = world.python("-c", MAKE_RUNS, str(n), env=env)
    assert proc.returncode == 0, proc.stderr


def _ids(listing: list[dict]) -> list[str]:
    return [row["id"] for row in listing]


def _checkpoint(path: Path) -> None:
    """Fold the WAL into index.db, so the file alone holds the index."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def _drop_wal(path: Path) -> None:
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr


def test_a_zero_byte_index_is_rebuilt(world: World) -> None:
    _make_runs(world)
    before = world.listing()
    world.index_path().write_bytes(b"")
    _drop_wal(world.index_path())
    assert world.listing() == before
    assert world.index_rows("SELECT count(*) FROM runs") == [(3,)]


def test_a_schema_only_index_is_rebuilt_while_run_folders_exist(world: World) -> None:
    _make_runs(world)
    before = world.listing()
    conn = sqlite3.connect(world.index_path())
    for table in ("runs", "tags", "vals", "stages"):
        conn.execute(f"DELETE FROM {table}")
    conn.commit()
    conn.close()
    check = world.tether("check")
    assert check.returncode == 1 and "(schema-only)" in check.stdout, check.stdout
    assert "lists no run while run folders exist" in check.stderr
    assert world.listing() == before  # not "no runs"
    assert world.tether("check").returncode == 0


def test_an_empty_runs_root_with_a_schema_only_index_lists_nothing(world: World) -> None:
    world.runs.mkdir()
    assert world.listing() == []
    assert world.listing() == []
    assert not list(world.runs.glob("index.db.damaged*"))


@pytest.mark.parametrize("where", ["all pages past the first", "the last page"])
def test_a_damaged_page_is_set_aside_and_rebuilt(world: World, where: str) -> None:
    _make_runs(world, 4)
    before = world.listing()
    path = world.index_path()
    _checkpoint(path)
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big") or 65536
    assert len(data) >= 3 * page
    start = page if where == "all pages past the first" else len(data) - page
    data[start:] = b"\xa5" * (len(data) - start)  # the header (page 1) stays intact
    path.write_bytes(bytes(data))
    _drop_wal(path)
    check = world.tether("check")
    assert check.returncode == 1 and "(damaged)" in check.stdout, check.stdout
    _no_traceback(check)
    listed = world.tether("runs", "--all", "--json")
    _no_traceback(listed)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == before
    if where == "all pages past the first":  # a page the listing reads: healed at once
        assert Path(f"{path}.damaged").is_file()  # kept for inspection
        assert world.tether("check").returncode == 0
    # The documented fix makes a sound file whatever page is hit; a new run works too.
    reindex = world.tether("runs", "reindex")
    assert reindex.returncode == 0, reindex.stderr
    assert world.tether("check").returncode == 0
    _make_runs(world, 1)
    assert len(world.listing()) == 5


def test_reindex_and_start_run_heal_a_damaged_index(world: World) -> None:
    _make_runs(world, 2)
    before = world.listing()
    path = world.index_path()
    _checkpoint(path)
    data = bytearray(path.read_bytes())
    data[4096:] = b"\x00\xff" * ((len(data) - 4096) // 2)
    path.write_bytes(bytes(data))
    _drop_wal(path)
    reindex = world.tether("runs", "reindex")
    assert reindex.returncode == 0, reindex.stderr
    _no_traceback(reindex)
    assert world.listing() == before
    path.write_bytes(bytes(data))
    _drop_wal(path)
    _make_runs(world, 1)  # start_run meets the damage first
    assert _ids(world.listing())[1:] == _ids(before)


@pytest.mark.parametrize("how", ["reindex", "heal"])
def test_a_rebuild_killed_midway_leaves_the_old_state(world: World, how: str) -> None:
    _make_runs(world)
    before = world.listing()
    path = world.index_path()
    if how == "heal":  # a damaged file: set aside, then rebuilt as a new file
        _checkpoint(path)
        path.write_bytes(b"\x00" * 100 + b"not a database" * 400)
        _drop_wal(path)
    marker = world.tmp / "midway"
    proc = world.popen("-c", KILLED_REBUILD, str(marker), how, stdin=subprocess.PIPE)
    wait_for(marker.exists, "the rebuild to be mid-way", proc=proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    if how == "reindex":  # one transaction: the old rows are all still there
        assert world.index_rows("SELECT count(*) FROM runs") == [(3,)]
    else:
        assert Path(f"{path}.damaged").is_file()  # the copy stays until a rebuild succeeds
        assert (
            not path.exists()
            or path.stat().st_size == 0
            or b"not a database" in (path.read_bytes())
        )
    assert world.listing() == before  # never empty while runs exist on disk
    assert not list(world.runs.glob(".index.db.rebuild-*")) or how == "heal"


MANY_RUNS = """
import sys
from tether.store import Store
store = Store(sys.argv[1])
for i in range(int(sys.argv[2])):
    store.create(store.new_lock(f"fit{i}", config={"i": i, "note": "x" * 40}))
"""


def _runs_leaf_pages(path: Path, needle: bytes) -> list[int]:
    """The pages of index.db that are leaves of the `runs` table (a rowid table: b-tree page
    type 13; the other tables are WITHOUT ROWID, index b-trees) holding `needle`."""
    data = path.read_bytes()
    size = int.from_bytes(data[16:18], "big") or 65536
    return [
        n
        for n in range(1, len(data) // size)  # 0-based: page 1 (the header) is never chosen
        if data[n * size] == 13 and needle in data[n * size : (n + 1) * size]
    ]


def test_a_damaged_page_met_midway_by_a_run_spec_is_healed(world: World) -> None:
    """A page past the checks of opening (diagnose, probe): `tether show NAME` reads the runs
    table to its end and meets it mid-query; the index is set aside, rebuilt, and answers."""
    made = world.python("-c", MANY_RUNS, str(world.runs), "300")
    assert made.returncode == 0, made.stderr
    path = world.index_path()
    _checkpoint(path)
    _drop_wal(path)
    pages = _runs_leaf_pages(path, b"fit150")
    assert pages and pages[0] > 2, pages  # in the middle of the table, not its first leaf
    size = int.from_bytes(path.read_bytes()[16:18], "big") or 65536
    with open(path, "r+b") as fh:
        fh.seek(pages[0] * size + 8)
        fh.write(b"\xa5" * (size - 8))  # the page header stays: only its cells are garbage
    conn = sqlite3.connect(path)
    with pytest.raises(sqlite3.DatabaseError, match="malformed"):
        conn.execute("SELECT * FROM runs").fetchall()
    conn.close()
    from tether.store.index_health import diagnose

    assert diagnose(path) == ("ok", None)  # what every command checks first: passes
    shown = world.tether("show", "fit150", "--json")
    _no_traceback(shown)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["name"] == "fit150"
    assert Path(f"{path}.damaged").is_file()
    assert world.tether("check").returncode == 0
    assert len(world.listing()) == 300


def test_the_set_aside_copy_outlives_a_second_damage_before_a_rebuild(world: World) -> None:
    _make_runs(world)
    before = world.listing()
    path = world.index_path()
    _checkpoint(path)
    first = b"\x00" * 100 + b"first damage" * 400
    path.write_bytes(first)
    _drop_wal(path)
    marker = world.tmp / "midway"
    proc = world.popen("-c", KILLED_REBUILD, str(marker), "heal", stdin=subprocess.PIPE)
    wait_for(marker.exists, "the rebuild to be mid-way", proc=proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    damaged = Path(f"{path}.damaged")
    assert damaged.read_bytes() == first  # set aside, and the rebuild did not succeed
    second = b"\x00" * 100 + b"second damage" * 400
    path.write_bytes(second)  # damage again before any rebuild succeeded
    assert world.listing() == before
    assert damaged.read_bytes() == first  # never replaced by the second copy
    assert Path(f"{path}.damaged.1").read_bytes() == second
    assert world.tether("check").returncode == 0


@contextlib.contextmanager
def _read_only(folder: Path) -> Iterator[Path]:
    """`folder` made read-only: chmod for a user, a read-only bind mount (or chattr +i) as
    root, whom chmod does not stop."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)
        return
    view = folder.with_name(folder.name + "-ro")
    view.mkdir()
    bound = subprocess.run(["mount", "--bind", str(folder), str(view)], capture_output=True)
    if bound.returncode == 0:
        try:
            ro = subprocess.run(
                ["mount", "-o", "remount,ro,bind", str(view)], capture_output=True, text=True
            )
            assert ro.returncode == 0, ro.stderr
            yield view
        finally:
            subprocess.run(["umount", str(view)], check=True)
        return
    chattr = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
    if chattr.returncode != 0:
        if IN_CI:
            raise AssertionError(f"cannot make {folder} read-only as root: {chattr.stderr}")
        pytest.skip(f"no read-only bind mount nor chattr +i here: {chattr.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_read_commands_work_on_a_read_only_runs_root(world: World) -> None:
    _make_runs(world)
    before = world.listing()
    _checkpoint(world.index_path())
    index_bytes = world.index_path().read_bytes()
    with _read_only(world.runs) as root:
        env = {"TETHER_RUNS": str(root)}
        listed = world.tether("runs", "--all", "--json", env=env)
        assert listed.returncode == 0, listed.stderr
        assert _ids(json.loads(listed.stdout)) == _ids(before)
        assert listed.stderr == (
            f"tether: notice: runs root {root} is read-only: listing from the run folders "
            "(index in memory)\n"
        )
        shown = world.tether("show", before[0]["id"], "--json", env=env)
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["id"] == before[0]["id"]
        label = world.tether("label", "1", "x", env=env)
        assert label.returncode != 0
        _no_traceback(label)
    assert world.index_path().read_bytes() == index_bytes
    assert world.listing() == before


def test_an_immutable_index_file_is_reported_by_check(world: World) -> None:
    _make_runs(world, 1)
    path = world.index_path()
    _checkpoint(path)
    if os.geteuid() == 0:
        made = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
        if made.returncode != 0:
            if IN_CI:
                raise AssertionError(made.stderr)
            pytest.skip(f"chattr +i is not supported here: {made.stderr.strip()}")
    else:
        path.chmod(0o444)
    try:
        check = world.tether("check")
        assert check.returncode == 1, check.stdout
        assert "(read-only)" in check.stdout
        assert f"index {path} is not writable" in check.stderr
        assert len(world.listing()) == 1
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(0o644)


FILL_DISK = """
import os, sys, tether
with tether.start_run({"lr": 0.5}, name="filler", snapshot=False) as run:
    run.log_metrics({"loss": 0.5})
    with open(sys.argv[1], "wb") as fh:
        while True:
            fh.write(b"x" * 65536)
            fh.flush()
            os.fsync(fh.fileno())
"""


@pytest.fixture
def small_disk(world: World) -> Iterator[Path]:
    if os.geteuid() != 0:
        if IN_CI:
            raise AssertionError("the full-disk test runs as root in CI")
        pytest.skip("mounting a small tmpfs needs root")
    disk = world.tmp / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def test_a_full_disk_is_reported_and_the_index_survives(world: World, small_disk: Path) -> None:
    env = {"TETHER_RUNS": str(small_disk / "runs")}
    _make_runs(world, 2, env=env)
    before = json.loads(world.tether_ok("runs", "--all", "--json", env=env))
    filler = small_disk / "filler"
    run = world.python("-c", FILL_DISK, str(filler), env=env)
    assert run.returncode == 1
    assert "No space left on device" in run.stderr
    assert "During handling of the above exception" not in run.stderr, run.stderr
    assert "lost sys.stderr" not in run.stderr
    # The run that hit the full disk is recorded as failed, not left running.
    states = [
        json.loads((d / "state.json").read_text())
        for d in (small_disk / "runs").iterdir()
        if (d / "run.lock").is_file() and "name: filler" in (d / "run.lock").read_text()
    ]
    assert [s["status"] for s in states] == ["failed"]
    # With the disk still full: reads work, writes fail in one line, the index stays.
    listed = world.tether("runs", "--all", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert _ids(json.loads(listed.stdout))[1:] == _ids(before)
    label = world.tether("label", "1", "x" * 5000, env=env)
    _no_traceback(label)
    assert label.returncode == 2 or label.returncode == 0, label.stderr
    assert not list((small_disk / "runs").glob("index.db.damaged*"))
    filler.unlink()
    after = json.loads(world.tether_ok("runs", "--all", "--json", env=env))
    assert _ids(after)[1:] == _ids(before) and after[0]["status"] == "failed"
