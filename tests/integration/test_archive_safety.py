"""Crafted archives: link chains that climb out of their run, and archives that unpack to far more
than they say or than fits. Each is refused in one line, exit 2, before anything is written."""

from __future__ import annotations

import copy
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

import tether
from tests.conftest import run_cli
from tether.store import open_store

RID = "01a205b3-7769-75dd-a88f-8c84fa2168ca"


def _error(proc) -> str:  # type: ignore[no-untyped-def]
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def _craft(path: Path, members: list[tuple[str, bytes, str]], manifest: dict | None = None) -> Path:
    """A gzip'd tar: manifest.json, runs/RID/run.lock, then `members` (name, kind, link)."""
    man = manifest or {"format": "tether-archive", "version": 1, "runs": [{"id": RID}]}
    with tarfile.open(path, "w:gz") as tar:
        for name, data in (
            ("manifest.json", json.dumps(man).encode()),
            (f"runs/{RID}/run.lock", b""),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, kind, link in members:
            info = tarfile.TarInfo(f"runs/{RID}/{name}")
            info.type = kind
            info.linkname = link
            tar.addfile(info)
    return path


def _nothing_written(tmp_path: Path) -> None:
    root = open_store().root
    assert not (root / RID).exists()
    assert not [p for p in root.iterdir() if p.name.startswith(".import-")]
    assert not (tmp_path / "pwned").exists()


CHAIN = [
    ("a", tarfile.SYMTYPE, "."),
    ("b", tarfile.SYMTYPE, "a/.."),
    ("c", tarfile.SYMTYPE, "b/.."),
]


@pytest.mark.parametrize(
    ("members", "culprit", "why"),
    [
        (CHAIN, "b", "a link pointing outside its run folder (a/..)"),
        (
            [*CHAIN, ("d", tarfile.SYMTYPE, "c/..")],
            "b",
            "a link pointing outside its run folder (a/..)",
        ),
        (
            [("a", tarfile.SYMTYPE, "."), ("a/x", tarfile.REGTYPE, "")],
            "a/x",
            "its path goes through a link",
        ),
        ([("l", tarfile.SYMTYPE, "nowhere")], "l", "a link to nowhere, not a file or folder"),
        ([("l", tarfile.SYMTYPE, "l")], "l", "a loop of links"),
        (
            [("f", tarfile.REGTYPE, ""), ("f", tarfile.SYMTYPE, "run.lock")],
            "f",
            "it comes twice in the archive",
        ),
        (
            [("d", tarfile.DIRTYPE, ""), ("h", tarfile.LNKTYPE, f"runs/{RID}/d")],
            "h",
            f"a hard link to runs/{RID}/d, not a file before it",
        ),
    ],
    ids=["chain", "chain-deeper", "through-link", "dangling", "loop", "twice", "hardlink-dir"],
)
def test_link_tricks_are_refused(tmp_path: Path, members, culprit: str, why: str):  # type: ignore[no-untyped-def]
    bad = _craft(tmp_path / "bad.tar.gz", members)
    msg = _error(run_cli("archive", "import", str(bad)))
    assert msg.startswith(f"tether: error: archive member 'runs/{RID}/{culprit}' refused: "), msg
    assert why in msg and msg.endswith("; nothing was imported")
    _nothing_written(tmp_path)


def _bomb(path: Path, size: int, manifest: dict | None = None) -> Path:
    """An archive whose one file is `size` zero bytes: tiny once compressed."""
    man = manifest or {"format": "tether-archive", "version": 1, "runs": [{"id": RID}]}
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        data = json.dumps(man).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo(f"runs/{RID}/zeros.bin")
        info.size = size
        tar.addfile(info, _Zeros(size))
    return path


class _Zeros:
    def __init__(self, n: int) -> None:
        self.left = n

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return b"\0" * n


def test_an_archive_that_unpacks_to_far_more_than_its_size_is_refused(tmp_path: Path):
    bomb = _bomb(tmp_path / "bomb.tar.gz", 64 << 20)
    assert bomb.stat().st_size < 1 << 20
    msg = _error(run_cli("archive", "import", str(bomb)))
    assert f"unpacks to {64 << 20} bytes" in msg and "declares no size" in msg
    _nothing_written(tmp_path)


def test_an_archive_bigger_than_its_manifest_says_is_refused(tmp_path: Path):
    man = {"format": "tether-archive", "version": 1, "runs": [{"id": RID}], "bytes": 10}
    msg = _error(run_cli("archive", "import", str(_bomb(tmp_path / "b.tar.gz", 32 << 20, man))))
    assert f"unpacks to {32 << 20} bytes but its manifest.json says 10" in msg
    _nothing_written(tmp_path)


def test_an_archive_that_does_not_fit_is_refused(tmp_path: Path):
    """More than the free space of the runs root (a small tmpfs, mounted as root)."""
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs as root to mount a tmpfs")
        pytest.skip("mounting a tmpfs needs root")
    small = tmp_path / "small"
    small.mkdir()
    if os.system(f"mount -t tmpfs -o size=4m tmpfs {small}") != 0:
        pytest.skip("this container cannot mount a tmpfs")
    try:
        man = {"format": "tether-archive", "version": 1, "runs": [{"id": RID}], "bytes": 8 << 20}
        bomb = _bomb(tmp_path / "big.tar.gz", 8 << 20, man)
        msg = _error(run_cli("archive", "import", str(bomb), env={"TETHER_RUNS": str(small)}))
        assert f"unpacks to {8 << 20} bytes; {small}" in msg and "free" in msg
        assert not (small / RID).exists()
    finally:
        os.system(f"umount {small}")


def test_an_export_records_its_size_and_links_inside_still_import(tmp_path: Path):
    with tether.start_run(copy.deepcopy({"lr": 0.1}), snapshot=False, capture_output=False) as run:
        (run.dir / "ckpt").mkdir()
        (run.dir / "ckpt" / "step2.pt").write_bytes(b"w" * 1000)
        os.symlink("ckpt/step2.pt", run.dir / "latest.pt")
        os.symlink("ckpt", run.dir / "ckpts")
    out = tmp_path / "one.tar.gz"
    run_cli("archive", "export", run.id[:13], "-o", str(out), check=True)
    with tarfile.open(out) as tar:
        fh = tar.extractfile("manifest.json")
        assert fh is not None
        files = sum(m.size for m in tar.getmembers() if m.isfile() and m.name.startswith("runs/"))
        assert json.load(fh)["bytes"] == files >= 1000
    elsewhere = tmp_path / "elsewhere"
    run_cli("archive", "import", str(out), env={"TETHER_RUNS": str(elsewhere)}, check=True)
    assert (elsewhere / run.id / "latest.pt").read_bytes() == b"w" * 1000
    assert (elsewhere / run.id / "ckpts" / "step2.pt").is_file()


def test_a_tiny_archive_of_a_huge_sparse_file_is_refused(tmp_path: Path):
    """1 KB of archive holding a 20 GiB sparse file (GNU tar --sparse): refused before writing."""
    if shutil.which("tar") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI has GNU tar")
        pytest.skip("no tar here")
    src = tmp_path / "src"
    (src / "runs" / RID).mkdir(parents=True)
    man = {"format": "tether-archive", "version": 1, "runs": [{"id": RID}]}
    (src / "manifest.json").write_text(json.dumps(man))
    with open(src / "runs" / RID / "big", "wb") as fh:
        fh.truncate(20 << 30)
    out = tmp_path / "sparse.tar.gz"
    subprocess.run(
        ["tar", "--sparse", "--format=posix", "-czf", str(out), "manifest.json", "runs"],
        cwd=src,
        check=True,
    )
    assert out.stat().st_size < 2048
    msg = _error(run_cli("archive", "import", str(out)))
    assert f"unpacks to {20 << 30} bytes" in msg
    _nothing_written(tmp_path)
