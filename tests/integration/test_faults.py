"""Faults a run store must survive: SIGKILL mid-write, many creators at once, processes that
vanish, signals, and a lost index. Real child processes, real SQLite, real git; no mocks."""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tether import fsio

from ._support import SCRIPTS, TIMEOUT, World, is_zombie, wait_for

pytestmark = pytest.mark.integration

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z "
# A line the user's own logging already stamped keeps its one stamp (no second one in front).
OWN_STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} "
KILLS = 30


def _seeded_rng() -> tuple[random.Random, int]:
    seed = int.from_bytes(os.urandom(4), "big")
    return random.Random(seed), seed


# -- 1. atomic writes under SIGKILL -----------------------------------------------------------
def _allowed(lines: list[str], kind: str, before: int | None) -> set[int | None]:
    """Values a file may hold after the writer died: the last finished write (or what it held
    before this writer started), plus the write in flight when the kill came, if any."""
    last_done: int | None = before
    in_flight: int | None = None
    for line in lines:
        parts = line.split()
        if len(parts) != 3 or parts[1] != kind:
            continue
        if parts[0] == "begin":
            in_flight = int(parts[2])
        elif parts[0] == "done":
            last_done = int(parts[2])
            in_flight = None
    return {last_done} if in_flight is None else {last_done, in_flight}


SIZE = 5000


def _writer_module() -> Any:
    """The writer script as a module, to build the exact contents it writes for each I."""
    spec = importlib.util.spec_from_file_location("atomic_writer", SCRIPTS / "atomic_writer.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Expected:
    """What state.json and run.lock hold after a complete write of number I, produced by the
    same tether writers into a scratch folder (so the test does not restate their format)."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.writer = _writer_module()
        scratch.mkdir()

    def state(self, i: int) -> bytes:
        from tether.fsio import atomic_write_json

        atomic_write_json(self.scratch / "state.json", self.writer.state_payload(i, SIZE))
        return (self.scratch / "state.json").read_bytes()

    def lock(self, i: int) -> bytes:
        from tether.lock import write_lock

        return write_lock(self.scratch, self.writer.lock_for(i, SIZE)).read_bytes()


def _held(path: Path, parse: Any, expected: Any) -> int | None:
    """The number a file holds, after checking it is byte for byte one complete write."""
    if not path.exists():
        return None
    data = path.read_bytes()
    assert data, f"{path.name} is empty"
    try:
        i = int(parse(data)["i"])
    except Exception as exc:
        raise AssertionError(f"{path.name} does not parse ({exc}): {data[-80:]!r}") from None
    assert data == expected(i), f"{path.name} is not exactly write {i} ({len(data)} bytes)"
    return i


def test_atomic_writers_survive_sigkill(world: World) -> None:
    """A writer rewriting state.json and run.lock is SIGKILLed 30 times at random moments; after
    each kill both files parse completely and hold the old or the new content, never a mix."""
    rng, seed = _seeded_rng()
    writer = world.script("atomic_writer.py")
    run_dir = world.tmp / "run"
    held: dict[str, int | None] = {"state": None, "lock": None}
    interrupted = 0
    errors = world.tmp / "writer.err"
    expected = Expected(world.tmp / "scratch")
    for k in range(KILLS):
        with open(errors, "w") as err:
            proc = world.popen(writer, str(run_dir), str(SIZE), stderr=err)
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        assert ready.startswith("ready"), f"writer did not start: {errors.read_text()}"
        time.sleep(rng.uniform(0.0, 0.08))
        proc.kill()
        # Read on from the same buffered stream: readline() may have buffered more lines.
        lines = proc.stdout.read().splitlines()
        proc.wait(timeout=TIMEOUT)
        assert proc.returncode == -signal.SIGKILL, f"writer ended: {errors.read_text()}"
        if lines and lines[-1].startswith("begin"):
            interrupted += 1
        where = f"kill {k + 1}/{KILLS} (seed {seed}), writer said: {lines[-3:]}"
        state = _held(run_dir / "state.json", json.loads, expected.state)
        lock = _held(run_dir / "run.lock", lambda b: yaml.safe_load(b)["config"], expected.lock)
        assert state in _allowed(lines, "state", held["state"]), where
        assert lock in _allowed(lines, "lock", held["lock"]), where
        held = {"state": state, "lock": lock}
    # The test must really have cut writes short and made progress, or it proved nothing.
    assert interrupted >= KILLS // 3, f"only {interrupted} kills landed inside a write"
    assert held["state"] is not None and held["state"] >= 5, held


def _check_run_folders(world: World) -> set[str]:
    """Every run folder that has a run.lock parses completely; returns their ids."""
    from tether.lock import read_lock
    from tether.store.state import STATUSES

    complete: set[str] = set()
    for run_dir in world.run_dirs():
        if not (run_dir / "run.lock").exists():
            continue  # killed between mkdir and run.lock: tether skips it
        lock = read_lock(run_dir)
        assert lock.id == run_dir.name
        assert lock.config["blob"] == "x" * 4000, f"{run_dir.name}: run.lock config cut short"
        state_file = run_dir / "state.json"
        if state_file.exists():
            state = json.loads(state_file.read_text(encoding="utf-8"))
            assert state["status"] in STATUSES, state
        complete.add(run_dir.name)
    return complete


def test_start_run_survives_sigkill(world: World) -> None:
    """Runs created with start_run in a loop, SIGKILLed 20 times: every run folder stays
    readable, the index stays a consistent SQLite database, and no dead run shows `running`."""
    rng, seed = _seeded_rng()
    script = world.script("create_loop.py")
    first = 0
    kills = 20
    for k in range(kills):
        proc = world.popen(script, str(first))
        assert proc.stdout is not None
        ready = proc.stdout.readline().strip()
        assert ready == "ready", f"creator did not start: {proc.communicate()}"
        time.sleep(rng.uniform(0.0, 0.1))
        proc.kill()
        proc.communicate(timeout=TIMEOUT)
        first += 1000
        complete = _check_run_folders(world)
        if k % 5 == 4:
            listed = world.listing()
            where = f"kill {k + 1} (seed {seed})"
            assert {r["id"] for r in listed} <= complete, where
            statuses = {r["status"] for r in listed}
            assert "running" not in statuses, f"{where}: a killed run still shows running"
            assert statuses <= {"completed", "unknown", "pending"}, (where, statuses)
    assert len(complete) >= kills, "too few runs were created to mean anything"
    assert world.index_rows("PRAGMA integrity_check") == [("ok",)]
    world.tether_ok("runs", "reindex")
    listed = world.listing()
    assert {r["id"] for r in listed} == complete
    assert sorted(r[0] for r in world.index_rows("SELECT id FROM runs")) == sorted(complete)


def test_run_killed_while_pending_is_not_left_pending(world: World) -> None:
    """A run whose process dies after run.lock is written but before it is marked running (here:
    held up by a busy index) is gone: it must list as `unknown`, never stay `pending` for ever."""
    script = world.script("exp_main.py")
    first = world.python(script)
    assert first.returncode == 0, first.stderr
    # Hold the index's write lock, so the next run blocks while indexing its new folder.
    conn = sqlite3.connect(world.index_path(), timeout=1, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        proc = world.popen(script, "mode=block")

        def new_state() -> bool:
            return sum((d / "state.json").exists() for d in world.run_dirs()) == 2

        wait_for(new_state, "the second run's state.json", proc=proc)
        proc.kill()
        proc.communicate(timeout=TIMEOUT)
    finally:
        conn.execute("ROLLBACK")
        conn.close()
    world.tether_ok("runs", "reindex")
    statuses = sorted(r["status"] for r in world.listing())
    assert statuses == ["completed", "unknown"], statuses


def test_atomic_files_get_umask_permissions(world: World) -> None:
    """state.json and run.lock are written through temp files; they must still get the
    permissions any new file gets (0644 under umask 022), so a team sharing a runs root can read
    them, like output.log next to them."""
    script = world.script("exp_main.py")
    proc = world.python(script, umask=0o022)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = world.run_dirs()
    modes = {
        name: oct((run_dir / name).stat().st_mode & 0o777)
        for name in ("output.log", "run.lock", "state.json")
    }
    assert modes == {"output.log": "0o644", "run.lock": "0o644", "state.json": "0o644"}, modes


# -- 2. many creators at once -----------------------------------------------------------------
def _create_together(world: World, n: int, cwd: Path) -> list[subprocess.Popen[str]]:
    folder = world.tmp / "proj"  # the script's own folder, apart from the runs root
    folder.mkdir()
    script = world.script("create_one.py", folder=folder)
    barrier = world.tmp / "barrier"
    barrier.mkdir()
    procs = [world.popen(script, str(i), str(barrier), cwd=cwd) for i in range(n)]

    def all_ready() -> bool:
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(f"a creator died before the barrier: {p.communicate()}")
        return len(list(barrier.glob("ready-*"))) == n

    wait_for(all_ready, f"{n} creators at the barrier")
    (barrier / "go").touch()
    return procs


def _finish(procs: list[subprocess.Popen[str]]) -> list[str]:
    def all_done() -> bool:
        return all(p.poll() is not None for p in procs)

    try:
        wait_for(all_done, "every creator to finish")
    except AssertionError:
        # Show where the stuck ones are (faulthandler prints their stacks on SIGABRT).
        stuck = [p for p in procs if p.poll() is None]
        for p in stuck:
            p.send_signal(signal.SIGABRT)
        stacks = "\n".join(p.communicate(timeout=10)[1] for p in stuck)
        raise AssertionError(f"{len(stuck)} creators hung:\n{stacks}") from None
    ids = []
    for i, p in enumerate(procs):
        out, err = p.communicate(timeout=TIMEOUT)
        assert "locked" not in err.lower(), f"creator {i}: {err}"
        assert p.returncode == 0, f"creator {i} exited {p.returncode}: {err}"
        assert "Traceback" not in err, err
        ids.append(out.strip().splitlines()[-1])
    return ids


def _overlapping_pairs(rows: list[dict[str, Any]]) -> int:
    spans = sorted((r["started"], r["stopped"]) for r in rows)
    return sum(1 for a, b in itertools.pairwise(spans) if b[0] < a[1])


def test_32_processes_create_runs_at_once(world: World) -> None:
    """32 processes released together by a barrier each create a run in one fresh store: 32
    folders, 32 index rows, and no `database is locked` anywhere."""
    procs = _create_together(world, 32, world.work)
    ids = _finish(procs)
    assert len(set(ids)) == 32
    dirs = world.run_dirs()
    assert sorted(d.name for d in dirs) == sorted(ids)
    for d in dirs:
        assert (d / "run.lock").is_file() and (d / "state.json").is_file()
    listed = world.listing()
    assert sorted(r["id"] for r in listed) == sorted(ids)
    assert {r["status"] for r in listed} == {"completed"}
    assert world.index_rows("SELECT count(*) FROM runs") == [(32,)]
    assert sorted(r[0] for r in world.index_rows("SELECT id FROM runs")) == sorted(ids)
    values = world.index_rows("SELECT num FROM vals WHERE key = 'config.i' ORDER BY num")
    assert [int(v[0]) for v in values] == list(range(32))
    assert world.index_rows("PRAGMA integrity_check") == [("ok",)]
    # They really ran together: some runs started before others had stopped.
    assert _overlapping_pairs(listed) > 0


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    )
    return proc.stdout.strip()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_parallel_runs_in_one_git_repo_each_get_a_snapshot(world: World) -> None:
    """8 runs started together in one git repository: each gets its own snapshot ref, and the
    user's index, branch and working tree are left as they were."""
    repo = world.tmp / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "t@example.invalid")
    _git(repo, "config", "user.name", "t")
    (repo / "model.py").write_text("W = 1\n")
    _git(repo, "add", "model.py")
    _git(repo, "-c", "commit.gpgsign=false", "commit", "-q", "-m", "first")
    (repo / "model.py").write_text("W = 2\n")  # a dirty working tree
    status_before = _git(repo, "status", "--porcelain")
    head = _git(repo, "rev-parse", "HEAD")

    procs = _create_together(world, 8, repo)
    ids = _finish(procs)

    refs = _git(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/tether/")
    by_ref = dict(line.split() for line in refs.splitlines())
    assert sorted(by_ref) == sorted(f"refs/tether/snapshots/{i}" for i in ids)
    from tether.lock import read_lock

    for rid in ids:
        lock = read_lock(world.runs / rid)
        (src,) = lock.sources
        assert src.commit == by_ref[f"refs/tether/snapshots/{rid}"]
        assert src.head == head and src.dirty is True and src.branch == "main"
        assert _git(repo, "show", f"{src.commit}:model.py") == "W = 2"
    assert _git(repo, "status", "--porcelain") == status_before
    assert _git(repo, "rev-parse", "HEAD") == head
    _git(repo, "fsck", "--no-progress")


def test_source_copy_leaves_the_runs_root_out(world: World) -> None:
    """Outside git, a run copies its script's folder into source/. When the runs root lies in
    that folder (TETHER_RUNS=./runs), the copy must leave the runs out: otherwise each run
    copies every earlier run's source/ again and the store grows exponentially."""
    project = world.tmp / "project"
    project.mkdir()
    script = world.script("exp_main.py", folder=project)
    runs = project / "runs"
    for token in ("a", "b", "c", "d"):
        proc = world.python(script, f"token={token}", cwd=project, env={"TETHER_RUNS": str(runs)})
        assert proc.returncode == 0, proc.stderr
    run_dirs = sorted(d for d in runs.iterdir() if d.is_dir() and not d.name.startswith("."))
    assert len(run_dirs) == 4
    for run_dir in run_dirs:
        copied = sorted(
            str(p.relative_to(run_dir / "source")) for p in (run_dir / "source").rglob("*")
        )
        assert copied == ["MANIFEST.json", "exp_main.py"], f"{run_dir.name}: {copied[:8]}"


# -- 3. a vanished process shows `unknown` ----------------------------------------------------
def _status_of(world: World, rid: str) -> str:
    (row,) = [r for r in world.listing() if r["id"] == rid]
    return str(row["status"])


def _start_blocking(world: World, token: str = "tok") -> tuple[subprocess.Popen[str], str]:
    script = world.script("exp_main.py")
    marker = world.tmp / f"marker-{token}"
    proc = world.popen(script, "mode=block", f"marker={marker}", f"token={token}")
    rid = wait_for(lambda: marker.exists() and marker.read_text(), "the run to start", proc=proc)
    return proc, rid


def test_sigkilled_run_shows_unknown(world: World) -> None:
    proc, rid = _start_blocking(world)
    assert _status_of(world, rid) == "running"
    proc.kill()
    # Not yet reaped: the process is a zombie, which is no longer running either.
    wait_for(lambda: is_zombie(proc.pid), "the killed run to become a zombie")
    assert _status_of(world, rid) == "unknown"
    proc.communicate(timeout=TIMEOUT)
    assert _status_of(world, rid) == "unknown"
    shown = json.loads(world.tether_ok("show", rid, "--json"))
    assert shown["state"]["status"] == "unknown"
    # The files still say running (nothing could write them): only the reading side knows.
    state = json.loads((world.runs / rid / "state.json").read_text())
    assert state["status"] == "running" and state["pid"] == proc.pid


def test_recorded_pid_reused_by_another_process_shows_unknown(world: World) -> None:
    """The pid in state.json now belongs to some other live process (pid reuse): the start
    time recorded with it tells them apart, so the run is still `unknown`."""
    proc, rid = _start_blocking(world)
    proc.kill()
    proc.communicate(timeout=TIMEOUT)
    other = world.popen("-c", "import time; time.sleep(60)")
    try:
        state_file = world.runs / rid / "state.json"
        state = json.loads(state_file.read_text())
        state["pid"] = other.pid  # proc_start stays the dead run's
        state_file.write_text(json.dumps(state))
        world.tether_ok("runs", "reindex")
        assert _status_of(world, rid) == "unknown"
        # ...whereas with that process's own start time it would count as alive.
        from tether.store.state import proc_start_time

        state["proc_start"] = proc_start_time(other.pid)
        state_file.write_text(json.dumps(state))
        world.tether_ok("runs", "reindex")
        assert _status_of(world, rid) == "running"
    finally:
        other.kill()
        other.communicate(timeout=TIMEOUT)


# -- 4. how a run ends ------------------------------------------------------------------------
def _state(world: World, rid: str) -> dict[str, Any]:
    return json.loads((world.runs / rid / "state.json").read_text(encoding="utf-8"))


def _log_lines(world: World, rid: str) -> list[str]:
    return (world.runs / rid / "output.log").read_text(encoding="utf-8").splitlines()


def _assert_output_captured(world: World, rid: str, token: str) -> list[str]:
    lines = _log_lines(world, rid)
    assert lines, "output.log is empty"
    for line in lines:
        assert re.match(STAMP, line) or re.match(OWN_STAMP, line), (
            f"output.log line without a time prefix: {line!r}"
        )
        assert not re.match(STAMP + OWN_STAMP, line), f"two time prefixes: {line!r}"
    for text in (f"stdout line {token}", f"stderr line {token}", f"logging line {token}"):
        hits = [line for line in lines if line.endswith(text)]
        assert len(hits) == 1, f"{text!r} appears {len(hits)} times in output.log:\n{lines}"
    return lines


@pytest.mark.parametrize(
    ("sig", "exit_code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["TERM", "INT"]
)
def test_signal_marks_run_terminated(world: World, sig: signal.Signals, exit_code: int) -> None:
    proc, rid = _start_blocking(world, token=sig.name)
    assert _status_of(world, rid) == "running"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == exit_code, err
    assert "Traceback" not in err, err
    state = _state(world, rid)
    assert state["status"] == "terminated"
    assert state["exit_code"] == exit_code
    assert state["stopped"] is not None
    assert _status_of(world, rid) == "terminated"
    assert f"stdout line {sig.name}" in out  # the console still gets the output
    _assert_output_captured(world, rid, sig.name)


def test_exception_marks_run_failed_with_traceback_in_log(world: World) -> None:
    script = world.script("exp_main.py")
    marker = world.tmp / "marker"
    proc = world.python(script, "mode=raise", "token=exc", f"marker={marker}")
    assert proc.returncode == 1
    assert "ValueError: boom exc" in proc.stderr
    rid = marker.read_text()
    state = _state(world, rid)
    assert state["status"] == "failed"
    assert state["exit_code"] == 1
    assert state["error"] == "ValueError: boom exc"
    assert _status_of(world, rid) == "failed"
    lines = _assert_output_captured(world, rid, "exc")
    text = "\n".join(lines)
    assert text.count("Traceback (most recent call last):") == 1, text
    assert "in main" in text and 'raise ValueError(f"boom {cfg.token}")' in text
    assert lines[-1].endswith("ValueError: boom exc")


@pytest.mark.parametrize("user_logging", [False, True], ids=["plain", "basicConfig"])
def test_normal_return_marks_run_completed(world: World, user_logging: bool) -> None:
    script = world.script("exp_main.py")
    marker = world.tmp / "marker"
    env = {"EXP_BASIC_LOGGING": "1"} if user_logging else None
    proc = world.python(script, "token=ok", f"marker={marker}", env=env)
    assert proc.returncode == 0, proc.stderr
    rid = marker.read_text()
    state = _state(world, rid)
    assert state["status"] == "completed"
    assert state["exit_code"] == 0
    assert state["error"] is None
    assert _status_of(world, rid) == "completed"
    assert "stdout line ok" in proc.stdout
    assert "stderr line ok" in proc.stderr
    _assert_output_captured(world, rid, "ok")
    if user_logging:
        # The user's own handler keeps printing to the console, once.
        assert proc.stderr.count("user-handler logging line ok") == 1, proc.stderr


# -- 6. the index is only a cache -------------------------------------------------------------
MAKE_RUNS = """
import sys, tether
from pathlib import Path
save_dir = Path(sys.argv[1])
with tether.start_run({"lr": 0.1, "model": {"depth": 2}}, name="train", tags=["base"]) as run:
    run.log_metrics({"loss": 0.5}, step=1)
    run.log_metrics({"loss": 0.25}, step=2)
    run.set_label("first")
    run.note("a note")
try:
    with tether.start_run({"lr": 0.2}, name="train") as run:
        raise RuntimeError("broken")
except RuntimeError:
    pass
try:
    with tether.start_run({"lr": 0.3}, name="eval", label="stopped") as run:
        raise KeyboardInterrupt
except KeyboardInterrupt:
    pass
with tether.start_run({"save_dir": str(save_dir), "lr": 0.4}, name="saved") as run:
    run.add_tag("kept", "x")
    (run.dir / "model.txt").write_text("weights")
"""


def _index_tables(world: World) -> dict[str, list[tuple[Any, ...]]]:
    return {
        "runs": world.index_rows("SELECT * FROM runs ORDER BY id"),
        "tags": world.index_rows("SELECT * FROM tags ORDER BY run, tag"),
        "vals": world.index_rows("SELECT * FROM vals ORDER BY run, key"),
    }


def _remove_index(world: World) -> None:
    world.index_path().unlink()
    assert not world.index_path().exists()


def test_deleted_index_is_rebuilt_identically(world: World) -> None:
    script = world.work / "make_runs.py"
    script.write_text(MAKE_RUNS)
    proc = world.python(script, str(world.tmp / "elsewhere" / "saved"))
    assert proc.returncode == 0, proc.stderr
    killed, _ = _start_blocking(world)  # and one that vanished
    killed.kill()
    killed.communicate(timeout=TIMEOUT)

    before = world.listing()
    tables = _index_tables(world)
    assert sorted(r["status"] for r in before) == [
        "completed",
        "completed",
        "failed",
        "terminated",
        "unknown",
    ]
    assert len(before) == 5 and any(r["metrics"] for r in before)

    _remove_index(world)
    out = world.tether_ok("runs", "reindex")
    assert "indexed 5 runs" in out
    assert world.listing() == before
    assert _index_tables(world) == tables

    _remove_index(world)  # plain `tether runs` rebuilds a missing index by itself
    assert world.listing() == before
    assert _index_tables(world) == tables
    _remove_index(world)
    shown = world.tether_ok("show", before[0]["id"], "--json")
    assert json.loads(shown)["id"] == before[0]["id"]


def test_corrupt_index_is_recovered_by_reindex(world: World) -> None:
    """A damaged index.db (a torn copy, a disk error) is only a cache: `tether runs reindex`
    must rebuild it rather than fail, and listing must not crash with a traceback."""
    script = world.script("exp_main.py")
    for token in ("a", "b"):
        assert world.python(script, f"token={token}").returncode == 0
    before = world.listing()
    world.index_path().write_bytes(b"this is not a database\n" * 200)
    listed = world.tether("runs", "--all", "--json")
    assert "Traceback" not in listed.stderr, listed.stderr
    assert listed.returncode in (0, 2), listed.stderr
    if listed.returncode == 2:
        assert len(listed.stderr.splitlines()) == 1 and "reindex" in listed.stderr
    else:
        assert json.loads(listed.stdout) == before
    reindex = world.tether("runs", "reindex")
    assert reindex.returncode == 0, reindex.stderr
    assert world.listing() == before


def test_orphan_temp_files_of_a_killed_write_are_cleaned_at_the_next_write(tmp_path: Path):
    """A writer SIGKILLed between its temp file and the rename leaves `.x.<pid>.<hex>.tmp`; the
    next atomic write of that folder (another process) removes it, and nothing of the user's."""
    folder = tmp_path / "run"
    folder.mkdir()
    killed = (
        "import os, signal, sys\n"
        "from tether import fsio\n"
        "os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)\n"
        "fsio.atomic_write_json(sys.argv[1], {'status': 'running'})\n"
    )
    proc = subprocess.run([sys.executable, "-c", killed, str(folder / "state.json")])
    assert proc.returncode == -signal.SIGKILL
    (orphan,) = folder.glob(".state.json.*.tmp")
    mine = [folder / n for n in ("notes.tmp", ".state.json.tmp", ".x.12.abc.tmp", "a.1.tmp")]
    young = folder / f".summary.json.{os.getpid() + 10**7}.{'0' * 12}.tmp"
    for path in [*mine, young]:
        path.write_text("the user's\n")
    old = time.time() - 2 * fsio.ORPHAN_AGE
    for path in [orphan, *mine]:
        os.utime(path, (old, old))
    write = "import sys\nfrom tether import fsio\nfsio.atomic_write_json(sys.argv[1], {})\n"
    subprocess.run([sys.executable, "-c", write, str(folder / "summary.json")], check=True)
    assert not orphan.exists()
    assert all(p.read_text() == "the user's\n" for p in [*mine, young])  # not ours, or too new


SECOND_SIGTERM = textwrap.dedent(
    """
    import os, signal, sys
    import tether
    from tether.track.sinks.base import Sink

    class SignalsAgain(Sink):
        name = "signals-again"

        def close(self, status, ctx):
            # What Slurm does to a preempted job: every process gets SIGTERM, the run's own
            # included, while the launcher's SIGTERM is already being handled.
            os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as a fresh process has it

    @tether.experiment(defaults={"a": 1}, snapshot=False)
    def main(cfg, run):
        history = tether.History(flush_every=60)
        history.add_sink(SignalsAgain())
        for step in range(10):
            history.update({"x": step}, step=step)
        os.kill(os.getpid(), signal.SIGTERM)  # the first: the run stops here

    main()
    """
)


def test_a_second_sigterm_while_the_run_ends_does_not_cut_its_ending(tmp_path: Path) -> None:
    script = tmp_path / "twice.py"
    script.write_text(SECOND_SIGTERM)
    runs = tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=dict(os.environ, TETHER_RUNS=str(runs)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 143, proc.stderr  # ended as terminated, not killed by the second
    (run_dir,) = [p for p in runs.iterdir() if (p / "run.lock").exists()]
    steps = [
        json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == list(range(10))  # every buffered row written
    state = json.loads((run_dir / "state.json").read_text())
    assert state["status"] == "terminated"
    assert (run_dir / "manifest.json").exists()  # the ending ran to its last step
