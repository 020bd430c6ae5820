"""The run manifest (manifest.json): big files hashed in the background after the run's end,
the pending state consumers see meanwhile, rewrites through open_run, the refresh after a
background data hash, and purge refusing files the manifest does not list. Real processes,
real console script."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import tether
import tether.session.manifest as building
from tests.conftest import run_cli
from tether.capture.datahash import background, hash_data, hash_data_background, wait_for_data
from tether.capture.datahash.background import wait_for_manifest
from tether.errors import StoreError
from tether.store import lifecycle, open_store
from tether.store.manifest import read_manifest, write_manifest_file


def _listed(run_dir: Path) -> dict[str, dict]:
    return {f["path"]: f for f in json.loads((run_dir / "manifest.json").read_text())["files"]}


@pytest.fixture
def tiny_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every unknown big file goes to the background (the real limit is tens of MiB)."""
    monkeypatch.setattr(building, "INLINE_BYTES", 0)


def test_a_big_checkpoint_is_pending_at_the_end_then_filled_in(
    tiny_inline: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[Path] = []
    # Hold the detached hasher back until the pending manifest is seen, then run the real one.
    monkeypatch.setattr(background, "hash_manifest_background", started.append)
    with tether.start_run({"lr": 0.1}, name="big", snapshot=False) as run:
        (run.dir / "ckpt.bin").write_bytes(os.urandom(2 << 20))
        (run.dir / "small.txt").write_text("hello\n")
    assert started == [run.dir]
    first = json.loads((run.dir / "manifest.json").read_text())
    listed = {f["path"]: f for f in first["files"]}
    assert listed["ckpt.bin"]["blake3"] is None and listed["ckpt.bin"]["pending"] is True
    assert first["pending"] == 1 and listed["small.txt"]["blake3"]
    monkeypatch.undo()
    assert background.hash_manifest_background(run.dir).wait(timeout=120) == 0
    done = wait_for_manifest(run.dir, timeout=0)
    assert done.pending == []
    assert done.by_path()["ckpt.bin"].digest == hash_data(run.dir / "ckpt.bin")[0].digest
    assert json.loads((run.dir / "manifest.json").read_text())["pending"] == 0
    assert not (run.dir / "datahash.log").exists()  # nothing went wrong, so no log left


def test_a_file_changed_before_the_background_hash_gets_an_error_not_a_digest(
    tiny_inline: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[Path] = []
    monkeypatch.setattr(background, "hash_manifest_background", started.append)
    with tether.start_run({}, name="c", snapshot=False) as run:
        (run.dir / "ckpt.bin").write_bytes(os.urandom(2 << 20))
    (run.dir / "ckpt.bin").write_bytes(os.urandom(3 << 20))
    monkeypatch.undo()
    assert background.hash_manifest_background(run.dir).wait(timeout=120) == 0
    entry = wait_for_manifest(run.dir, timeout=0).by_path()["ckpt.bin"]
    assert entry.digest is None and entry.error and "changed" in entry.error


def test_a_pending_manifest_is_what_a_check_sees_until_it_is_filled(tiny_inline: None) -> None:
    """Consumers handle a pending entry: `tether check --run` notes it, purge counts it."""
    with tether.start_run({}, name="p", snapshot=False) as run:
        (run.dir / "ckpt.bin").write_bytes(os.urandom(2 << 20))
    manifest = read_manifest(run.dir)
    assert manifest is not None
    manifest.files[[f.path for f in manifest.files].index("ckpt.bin")].pending = True
    manifest.files[[f.path for f in manifest.files].index("ckpt.bin")].digest = None
    wait_for_manifest(run.dir, timeout=60)  # the real hasher first, so it cannot race us
    write_manifest_file(run.dir, manifest)  # as a hasher killed mid-way leaves it
    proc = run_cli("check", "--run", run.id, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["notes"] == [
        {
            "kind": "pending",
            "subject": "ckpt.bin",
            "detail": "digest still pending (hashed in the background)",
        }
    ]
    (run.dir / "ckpt.bin").write_bytes(b"truncated")
    proc = run_cli("check", "--run", run.id)
    assert proc.returncode == 1
    assert "modified: ckpt.bin: modified (size 2097152 -> 9)" in proc.stdout.splitlines()


def test_a_rewrite_keeps_digests_of_unchanged_files_and_lists_new_ones() -> None:
    with tether.start_run({}, name="r", snapshot=False) as run:
        (run.dir / "model.bin").write_bytes(b"w" * 5000)
    before = _listed(run.dir)
    with tether.open_run(run.id) as again:
        (again.dir / "eval.txt").write_text("acc=0.9\n")
        again.log_metrics({"diag/acc": 0.9})
    after = _listed(run.dir)
    assert after["model.bin"] == before["model.bin"]
    assert after["eval.txt"]["blake3"] == hash_data(run.dir / "eval.txt")[0].digest


def test_a_background_data_hash_after_the_end_refreshes_the_lock_entry(tmp_path: Path) -> None:
    data = tmp_path / "data.bin"
    data.write_bytes(os.urandom(1 << 16))
    with tether.start_run({"data": str(data)}, name="d", snapshot=False, data=["data"]) as run:
        pass
    before = _listed(run.dir)["run.lock"]
    # A hash started after the manifest was written: it rewrites run.lock (pending, then
    # done), and once it is done the manifest records the run.lock that is there now.
    assert hash_data_background(run.dir, [str(data)]).wait(timeout=120) == 0
    assert wait_for_data(run.dir, timeout=0).data[0].status == "done"
    after = _listed(run.dir)["run.lock"]
    assert after["blake3"] == hash_data(run.dir / "run.lock")[0].digest
    assert after["mtime_ns"] != before["mtime_ns"]
    manifest = read_manifest(run.dir)
    assert manifest is not None and manifest.lock == after["blake3"]
    proc = run_cli("check", "--run", run.id)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_purge_refuses_a_file_added_after_the_end_and_force_deletes_it(runs_root: Path) -> None:
    with tether.start_run({}, name="a", snapshot=False) as run:
        (run.dir / "model.bin").write_bytes(b"weights")
    with tether.start_run({}, name="b", snapshot=False) as other:
        pass
    assert run_cli("label", run.id, "kept").returncode == 0  # tether's own write: no matter
    (run.dir / "my-notes.txt").write_text("mine\n")
    assert run_cli("delete", run.id, other.id, "-y").returncode == 0
    proc = run_cli("purge", "--all", "-y")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "my-notes.txt" in lines[0] and "--force" in lines[0], lines
    trashed = runs_root / ".trash" / run.id
    assert (trashed / "my-notes.txt").read_text() == "mine\n"
    assert (runs_root / ".trash" / other.id).is_dir()  # all or nothing: the other stays too
    proc = run_cli("purge", "--all", "-y", "--force")
    assert proc.returncode == 0, proc.stderr
    assert not trashed.exists() and lifecycle.trashed(open_store(runs_root)) == []


def test_purge_of_a_run_killed_before_its_manifest_goes_by_the_marker(runs_root: Path) -> None:
    with tether.start_run({}, name="k", snapshot=False) as run:
        (run.dir / "partial.bin").write_bytes(b"x")
    (run.dir / "manifest.json").unlink()  # as a SIGKILL before the end leaves it
    store = open_store(runs_root)
    lifecycle.delete(store, run.id)
    [entry] = lifecycle.trashed(store)
    assert lifecycle.purge(store, entry).left_alone is None
    assert not (runs_root / ".trash" / run.id).exists()


def test_purge_refuses_a_damaged_manifest(runs_root: Path) -> None:
    with tether.start_run({}, name="m", snapshot=False) as run:
        pass
    (run.dir / "manifest.json").write_text("{not json")
    store = open_store(runs_root)
    lifecycle.delete(store, run.id)
    [entry] = lifecycle.trashed(store)
    with pytest.raises(StoreError, match="manifest.json cannot be read"):
        lifecycle.purge(store, entry)
    assert (runs_root / ".trash" / run.id / "run.lock").is_file()
    lifecycle.purge(store, entry, force=True)
    assert not (runs_root / ".trash" / run.id).exists()
