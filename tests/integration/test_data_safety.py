"""tether deletes only what it made: save_dir checks, the run-folder marker, a purge that leaves a
user's folder alone, and a TensorBoard roll-up that stays inside the run folder. Real git, real
console script, real child processes."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import tether
from tests.conftest import run_cli
from tether.capture.datahash import hash_data
from tether.errors import StoreError
from tether.store import lifecycle, open_store
from tether.store.layout import MARKER
from tether.store.safety import check_save_dir, marker_of

TRAIN = """\
import tether


@tether.experiment(defaults={"lr": 0.1, "save_dir": None})
def main(cfg, run):
    print(f"lr={cfg.lr}")


if __name__ == "__main__":
    main()
"""


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A git project with sources and a read-only data file, beside the runs root."""
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "train.py").write_text(TRAIN)
    (proj / "data.csv").write_text("x,y\n1,2\n")
    os.chmod(proj / "data.csv", stat.S_IRUSR)
    _git(proj, "init", "-q")
    _git(proj, "add", ".")
    _git(proj, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    return proj


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".git" not in p.parts
    }


def _train(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "train.py", *args], cwd=project, capture_output=True, text=True
    )


def _one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _other_runs(n: int) -> list[str]:
    ids = []
    for i in range(n):
        with tether.start_run({"i": i}, name=f"other{i}", snapshot=False) as run:
            run.log_metrics({"loss": 1.0})
        ids.append(run.id)
    return ids


@pytest.mark.parametrize("save_dir", [".", "/", "'~/'", "data.csv", "/proc/self"])
def test_save_dir_that_is_not_a_new_or_empty_folder_is_refused(
    project: Path, runs_root: Path, save_dir: str, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("HOME", str(project.parent))
    before = _snapshot(project)
    line = _one_line_error(_train(project, f"save_dir={save_dir}"), "save_dir", "refused")
    assert "Traceback" not in line
    assert _snapshot(project) == before
    assert not (project / "run.lock").exists() and not (project / MARKER).exists()
    assert not [p for p in runs_root.glob("*") if not p.name.startswith((".", "index"))]


def test_save_dir_refusals_name_the_reason(project: Path, runs_root: Path):
    assert "a project root" in _one_line_error(_train(project, "save_dir=."))
    assert "file-system root" in _one_line_error(_train(project, "save_dir=/"))
    parent = _one_line_error(_train(project, f"save_dir={runs_root.parent}"))
    assert "a parent of the runs root" in parent
    (project / "full").mkdir()
    (project / "full" / "notes.txt").write_text("mine\n")
    assert "not empty" in _one_line_error(_train(project, "save_dir=full"))
    assert (project / "full" / "notes.txt").read_text() == "mine\n"


def test_a_new_or_empty_save_dir_is_accepted_and_marked(project: Path, runs_root: Path):
    (project / "empty").mkdir()
    for folder in ("empty", "outputs/new"):
        proc = _train(project, f"save_dir={folder}")
        assert proc.returncode == 0, proc.stderr
        rid = marker_of(project / folder)
        assert rid is not None and (runs_root / rid).resolve() == (project / folder).resolve()


def test_the_purge_scenario_leaves_the_project_intact(project: Path, runs_root: Path):
    others = _other_runs(3)
    before = _snapshot(project)
    _one_line_error(_train(project, "save_dir=."), "save_dir", "a project root")
    assert run_cli("delete", "1", "-y", cwd=project).returncode == 0  # the newest other run
    purge = run_cli("purge", "--all", "-y", cwd=project)
    assert purge.returncode == 0, purge.stderr
    assert _snapshot(project) == before
    store = open_store(runs_root)
    assert sorted(r.id for r in store.list()) == sorted(others[:2])
    assert all((runs_root / rid / "run.lock").is_file() for rid in others[:2])


def test_purge_of_a_run_recorded_in_the_project_by_an_older_tether(
    project: Path, runs_root: Path, tmp_path: Path
):
    """Before save_dir was checked, `save_dir=.` made the project the run folder (no marker).
    Purge must leave it, say why in one line, exit 2, and still empty the trash."""
    others = _other_runs(2)
    with tether.start_run({"lr": 0.1}, name="old", snapshot=False) as run:
        run.log_metrics({"loss": 0.5})
    for name in ("run.lock", "state.json", "summary.json", "metrics.jsonl"):
        shutil.copy(run.dir / name, project / name)
    shutil.rmtree(run.dir)
    os.symlink(project, runs_root / run.id, target_is_directory=True)
    before = _snapshot(project)
    assert run_cli("delete", run.id, "-y", cwd=project).returncode == 0
    purge = run_cli("purge", "--all", "-y", cwd=project)
    line = _one_line_error(purge, str(project), "left alone", "a project root")
    assert "tether deletes only folders it made" in line
    assert _snapshot(project) == before
    assert (project / "data.csv").read_text() == "x,y\n1,2\n"
    assert lifecycle.trashed(open_store(runs_root)) == []
    assert sorted(r.id for r in open_store(runs_root).list()) == sorted(others)


def test_purge_leaves_a_save_dir_marked_for_another_run(store_dirs: tuple[Path, Path]):
    runs_root, out = store_dirs
    with tether.start_run({"save_dir": str(out)}, name="a", snapshot=False):
        pass
    store = open_store(runs_root)
    [row] = store.list()
    lifecycle.delete(store, row.id)
    (out / MARKER).write_text("20990101T000000-someoneelse\n")
    (out / "model.bin").write_bytes(b"weights")
    [entry] = lifecycle.trashed(store)
    result = lifecycle.purge(store, entry)
    assert result.left_alone is not None and "its marker names run" in result.left_alone
    assert (out / "model.bin").read_bytes() == b"weights"
    assert lifecycle.trashed(store) == []


def test_purge_removes_a_marked_save_dir_and_an_unmarked_folder_in_the_root(
    store_dirs: tuple[Path, Path],
):
    runs_root, out = store_dirs
    with tether.start_run({"save_dir": str(out)}, name="ext", snapshot=False):
        (out / "model.bin").write_bytes(b"weights")  # the run's own output, in its manifest
    with tether.start_run({}, name="legacy", snapshot=False) as legacy:
        pass
    (legacy.dir / MARKER).unlink()  # a run folder made before markers existed
    store = open_store(runs_root)
    for row in store.list():
        lifecycle.delete(store, row.id)
    for entry in lifecycle.trashed(store):
        assert lifecycle.purge(store, entry).left_alone is None
    assert not out.exists() and not legacy.dir.exists()
    assert lifecycle.trashed(store) == []


def test_purge_refuses_a_trashed_folder_marked_for_another_run(store_dirs: tuple[Path, Path]):
    runs_root, _ = store_dirs
    with tether.start_run({}, name="r", snapshot=False) as run:
        pass
    store = open_store(runs_root)
    lifecycle.delete(store, run.id)
    trashed = runs_root / ".trash" / run.id
    (trashed / MARKER).write_text("20990101T000000-someoneelse\n")
    [entry] = lifecycle.trashed(store)
    with pytest.raises(StoreError, match="not purged"):
        lifecycle.purge(store, entry)
    assert (trashed / "run.lock").is_file()


def test_check_save_dir_accepts_the_same_runs_folder(tmp_path: Path, runs_root: Path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / MARKER).write_text("20260101T000000-aaaa\n")
    (folder / "run.lock").write_text("{}")
    check_save_dir(folder, runs_root, "20260101T000000-aaaa")  # a restart in its folder
    with pytest.raises(StoreError, match="save_dir"):
        check_save_dir(folder, runs_root, "20260101T000000-bbbb")


def test_tensorboard_rollup_reads_nothing_through_links(tmp_path: Path):
    from tether.track.tensorboard import event_dirs

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "events.out.tfevents.1.host").write_bytes(b"")
    run_dir = tmp_path / "run"
    (run_dir / "tb").mkdir(parents=True)
    (run_dir / "tb" / "events.out.tfevents.2.host").write_bytes(b"")
    os.symlink(outside, run_dir / "linked", target_is_directory=True)
    (run_dir / "mixed").mkdir()
    os.symlink(outside / "events.out.tfevents.1.host", run_dir / "mixed" / "events.out.tfevents.1")
    assert event_dirs(run_dir) == [run_dir / "tb"]


@pytest.fixture
def store_dirs(tmp_path: Path, runs_root: Path) -> tuple[Path, Path]:
    return runs_root, tmp_path / "outputs" / "exp"


def test_manifest_lists_every_file_and_is_rewritten_by_open_run(tmp_path: Path):
    with tether.start_run({"lr": 0.1}, name="m", snapshot=False) as run:
        (run.dir / "ckpt").mkdir()
        (run.dir / "ckpt" / "model.bin").write_bytes(b"w" * 1000)
        (run.dir / "ckpt" / "big.bin").write_bytes(os.urandom(3 << 20))  # via the hasher
        os.symlink("/", run.dir / "root-link")
        run.log_metrics({"loss": 0.5})
    manifest = json.loads((run.dir / "manifest.json").read_text())
    listed = {f["path"]: f for f in manifest["files"]}
    model = listed["ckpt/model.bin"]
    assert model["size"] == 1000 and model["mtime_ns"] > 0
    assert model["blake3"] == hash_data(run.dir / "ckpt" / "model.bin")[0].digest
    big = listed["ckpt/big.bin"]
    assert big["blake3"] == hash_data(run.dir / "ckpt" / "big.bin")[0].digest
    assert manifest["lock"] == listed["run.lock"]["blake3"] and manifest["run"] == run.id
    assert manifest["lock"] == hash_data(run.dir / "run.lock")[0].digest
    assert listed["root-link"] == {"path": "root-link", "link": "/"}
    assert {"state.json", "metrics.jsonl", ".tether-run"} <= set(listed)
    assert "manifest.json" not in listed
    with tether.open_run(run.id) as again:
        (again.dir / "extra.txt").write_text("more\n")
    rewritten = json.loads((run.dir / "manifest.json").read_text())
    assert "extra.txt" in {f["path"] for f in rewritten["files"]}


def _marked_folder(runs_root: Path, *, by_child: bool, age_s: float) -> Path:
    """A run folder with a marker and no run.lock, as a creator killed between the two leaves
    it: the marker written by a real process (a child that then exits, or this one)."""
    from tether.ids import new_id
    from tether.store.safety import write_marker

    folder = runs_root / new_id()
    folder.mkdir(parents=True)
    (folder / "source").mkdir()  # what capture may have copied before
    (folder / "source" / "train.py").write_text("print(1)\n")
    if by_child:
        code = "import sys; from pathlib import Path; from tether.store.safety import write_marker"
        code += "; write_marker(Path(sys.argv[1]), Path(sys.argv[1]).name)"
        subprocess.run([sys.executable, "-c", code, str(folder)], check=True)
    else:
        write_marker(folder, folder.name)
    old = os.stat(folder / MARKER).st_mtime - age_s
    os.utime(folder / MARKER, (old, old))
    return folder


def test_orphan_folders_are_shown_by_check_and_removed_by_purge_orphans(runs_root: Path):
    with tether.start_run({}, name="alive", snapshot=False) as run:
        pass
    orphan = _marked_folder(runs_root, by_child=True, age_s=3600)
    young = _marked_folder(runs_root, by_child=True, age_s=0)  # a creator may still write
    live = _marked_folder(runs_root, by_child=False, age_s=3600)  # this process: alive
    unmarked = runs_root / "0190a000-0000-7000-8000-000000000000"
    unmarked.mkdir()
    (unmarked / "keep.txt").write_text("not tether's\n")
    check = run_cli("check", "--json")
    shown = [o["folder"] for o in json.loads(check.stdout)["orphans"]]
    assert shown == [str(orphan)]
    text = run_cli("check")
    assert "1 orphan run folder left by a killed creator" in text.stderr
    assert "tether purge --orphans" in text.stderr
    proc = run_cli("purge", "--orphans", "-y")
    assert proc.returncode == 0, proc.stderr
    assert f"removed orphan {orphan}" in proc.stdout
    assert not orphan.exists()
    assert young.is_dir() and live.is_dir() and (unmarked / "keep.txt").is_file()
    assert (run.dir / "run.lock").is_file()
    assert run_cli("purge", "--orphans", "-y").stdout.startswith("no orphan run folders")


def test_a_marker_names_its_creator_and_old_markers_still_read(tmp_path: Path):
    from tether.store.safety import marker_creator, write_marker

    write_marker(tmp_path, "20260101T000000-aaaa")
    assert marker_of(tmp_path) == "20260101T000000-aaaa"
    assert marker_creator(tmp_path)["pid"] == os.getpid()
    (tmp_path / MARKER).write_text("20260101T000000-bbbb\n")  # written by an older tether
    assert marker_of(tmp_path) == "20260101T000000-bbbb" and marker_creator(tmp_path) == {}
