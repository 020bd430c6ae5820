"""Staged inputs become the run's own files when it ends: each link `tether run` made into the
project or an upstream run is replaced by a hard link (a copy across filesystems), so an
archive carries them; what the command made or replaced is left alone."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pytest

from tests.conftest import run_cli

PROJECT = """\
[ops.prepare]
exec = "python -c 'open(\\"rows.txt\\", \\"w\\").write(\\"1\\\\n2\\\\n\\")'"

[ops.train]
exec = "python train.py"
sourcecode = ["train.py"]
depends = [
  "run-files: op=prepare",
  {type = "project-files", files = ["data/labels.txt", "feats", "mine.txt", "gone.txt"]},
]
"""

TRAIN = """\
import os
# The inputs are links while the command runs.
assert os.path.islink("data/labels.txt") and os.path.islink("rows.txt")
os.unlink("mine.txt")  # replaced by the command: its own file, not tether's
with open("mine.txt", "w") as fh:
    fh.write("made by the command")
os.symlink(os.path.abspath("rows.txt"), "own-link.txt")  # a link the command made
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "data").mkdir(parents=True)
    (root / "feats/deep").mkdir(parents=True)
    (root / "tether.toml").write_text(PROJECT)
    (root / "train.py").write_text(TRAIN)
    (root / "data/labels.txt").write_text("a\nb\n")
    (root / "feats/deep/f.txt").write_text("f")
    (root / "mine.txt").write_text("project file")
    (root / "gone.txt").write_text("to be removed during the run")
    return root


def tether(*args: str, cwd: Path):
    return run_cli(*args, cwd=cwd, env={"NO_COLOR": "1", "COLUMNS": "200"})


def run_dirs(cwd: Path) -> dict[str, Path]:
    rows = json.loads(tether("runs", "--json", "--all", cwd=cwd).stdout)
    return {r["name"]: Path(r["dir"]) for r in rows}


def test_links_become_hard_links_and_the_commands_files_stay(project: Path):
    assert tether("run", "prepare", cwd=project).returncode == 0
    proc = tether("run", "train", cwd=project)
    assert proc.returncode == 0, proc.stderr
    dirs = run_dirs(project)
    run = dirs["train"]
    for rel, source in [
        ("data/labels.txt", project / "data/labels.txt"),
        ("feats/deep/f.txt", project / "feats/deep/f.txt"),
        ("rows.txt", dirs["prepare"] / "rows.txt"),
    ]:
        path = run / rel
        assert not path.is_symlink() and not path.parent.is_symlink(), rel
        assert os.stat(path).st_ino == os.stat(source).st_ino, rel  # one filesystem: hard link
    assert (run / "feats").is_dir() and not (run / "feats").is_symlink()
    # The command's own file and link are as it left them; the project file is untouched.
    assert (run / "mine.txt").read_text() == "made by the command"
    assert (project / "mine.txt").read_text() == "project file"
    assert (run / "own-link.txt").is_symlink()
    # Nothing tether used to build them is left behind.
    assert not [p for p in run.iterdir() if p.name.startswith(".tether-settle")]
    # The manifest of the ended run lists them as files, with digests.
    manifest = json.loads((run / "manifest.json").read_text())
    entries = {e["path"]: e for e in manifest["files"]}
    assert entries["data/labels.txt"].get("link") is None
    assert entries["data/labels.txt"]["blake3"]


def test_an_archive_carries_the_staged_files(project: Path, tmp_path: Path):
    assert tether("run", "prepare", cwd=project).returncode == 0
    assert tether("run", "train", cwd=project).returncode == 0
    run = run_dirs(project)["train"]
    out = tmp_path / "runs.tar.gz"
    proc = tether("archive", "export", run.name, "-o", str(out), cwd=project)
    assert proc.returncode == 0, proc.stderr
    with tarfile.open(out) as tar:
        members = {m.name: m for m in tar.getmembers()}
        for tail, data in [("/data/labels.txt", b"a\nb\n"), ("/rows.txt", b"1\n2\n")]:
            (name,) = [n for n in members if n.endswith(tail)]
            assert members[name].isfile(), name
            handle = tar.extractfile(members[name])
            assert handle is not None and handle.read() == data


def test_a_removed_source_leaves_the_link_and_a_failed_run_settles_too(project: Path):
    (project / "train.py").write_text(
        "import os, sys\nos.unlink(os.readlink('gone.txt'))\nsys.exit(3)\n"
    )
    assert tether("run", "prepare", cwd=project).returncode == 0
    proc = tether("run", "train", cwd=project)
    assert proc.returncode == 3
    run = run_dirs(project)["train"]
    assert not (run / "data/labels.txt").is_symlink()  # a failed run settles as well
    assert (run / "gone.txt").is_symlink()  # its file is gone: the link stays as recorded


def test_another_filesystem_gets_a_copy(tmp_path: Path):
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the runs root")
    from tether.ops.settle import settle
    from tether.ops.staging import StagedPath, Staging

    source_dir = Path(os.environ.get("TMPDIR_SHM", shm)) / f"tether-test-{os.getpid()}"
    source_dir.mkdir()
    try:
        source = source_dir / "big.bin"
        source.write_bytes(b"x" * 1000)
        run = tmp_path / "run"
        run.mkdir()
        os.symlink(source, run / "big.bin")
        staging = Staging(sources=[])
        staging.sources.append(StagedPath(source, "big.bin", False, "ops.t.depends[0]"))
        assert settle(staging, run) == []
        assert not (run / "big.bin").is_symlink()
        assert (run / "big.bin").read_bytes() == b"x" * 1000
        assert os.stat(run / "big.bin").st_ino != os.stat(source).st_ino
    finally:
        for p in source_dir.iterdir():
            p.unlink()
        source_dir.rmdir()


def test_a_restart_settles_the_links_a_killed_attempt_left(tmp_path: Path):
    root = tmp_path / "proj"
    root.mkdir()
    (root / "labels.txt").write_text("a\n")
    # The first attempt kills its tether (SIGKILL: nothing of tether's end runs); the second
    # one completes.
    script = (
        "import os, signal\n"
        "if not os.path.exists('attempted'):\n"
        "    open('attempted', 'w').close()\n"
        "    os.kill(os.getppid(), signal.SIGKILL)\n"
    )
    (root / "go.py").write_text(script)
    (root / "tether.toml").write_text(
        '[ops.go]\nexec = ["python", "go.py"]\nsourcecode = ["go.py"]\n'
        'depends = ["project-files: labels.txt"]\n'
    )
    first = tether("run", "go", cwd=root)
    assert first.returncode == -9
    (row,) = json.loads(tether("runs", "--json", "--all", cwd=root).stdout)
    run = Path(row["dir"])
    assert (run / "labels.txt").is_symlink()  # killed: never settled
    again = tether("run", "--restart", row["id"][:13], cwd=root)
    assert again.returncode == 0, again.stderr
    assert not (run / "labels.txt").is_symlink()
    assert os.path.samefile(run / "labels.txt", root / "labels.txt")
