"""`tether push|pull|sync` through rclone: a WebDAV and an SFTP server (`rclone serve webdav`,
`rclone serve sftp`) on 127.0.0.1, each started once for the module; the rclone remote is
defined by environment variables only (RCLONE_CONFIG_<NAME>_...), so no credential or server
detail goes into tether.toml."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration._support import wait_for
from tests.integration.test_share_folder import CONF, SCRIPT, Side, _ids_metrics
from tests.integration.test_snapshot import git, make_repo

pytestmark = pytest.mark.skipif(shutil.which("rclone") is None, reason="needs rclone")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _obscure(password: str) -> str:
    """rclone's obscured form of a password (what its *_PASS variables take)."""
    return subprocess.run(
        ["rclone", "obscure", password], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture(scope="module", params=["webdav", "sftp"])
def webdav(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[tuple[dict[str, str], Path]]:
    """`rclone serve webdav|sftp` on 127.0.0.1 (once per module and kind), and the rclone
    remote `tdav:` that reaches it, defined by environment variables only."""
    kind = request.param
    served = tmp_path_factory.mktemp(kind)
    port = _free_port()
    argv = ["rclone", "serve", kind, str(served), "--addr", f"127.0.0.1:{port}"]
    if kind == "sftp":
        argv += ["--user", "tether", "--pass", "test-only"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: _listening(port), f"rclone serve {kind} to listen", proc=proc)
        if kind == "webdav":
            env = {
                "RCLONE_CONFIG_TDAV_TYPE": "webdav",
                "RCLONE_CONFIG_TDAV_URL": f"http://127.0.0.1:{port}/",
                "RCLONE_CONFIG_TDAV_VENDOR": "other",
            }
        else:
            env = {
                "RCLONE_CONFIG_TDAV_TYPE": "sftp",
                "RCLONE_CONFIG_TDAV_HOST": "127.0.0.1",
                "RCLONE_CONFIG_TDAV_PORT": str(port),
                "RCLONE_CONFIG_TDAV_USER": "tether",
                "RCLONE_CONFIG_TDAV_PASS": _obscure("test-only"),
                "RCLONE_CONFIG_TDAV_SHELL_TYPE": "none",
            }
        yield env, served
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


class DavSide(Side):
    def __init__(self, repo: Path, runs: Path, home: Path, extra: dict[str, str]) -> None:
        super().__init__(repo, runs, home)
        self.extra = extra

    def env(self) -> dict[str, str]:
        return {**super().env(), **self.extra}


@pytest.fixture
def sides(
    tmp_path: Path, webdav: tuple[dict[str, str], Path], request: pytest.FixtureRequest
) -> tuple[DavSide, DavSide, Path]:
    env, served = webdav
    origin = make_repo(
        tmp_path / "a",
        {
            "train.py": SCRIPT,
            "conf.yaml": CONF,
            ".gitignore": "data/\n",
            "tether.toml": 'project-id = "share-dav"\n',
        },
    )
    (origin / "data").mkdir()
    (origin / "data" / "input.txt").write_text("hello world")
    clone = tmp_path / "b"
    git(tmp_path, "clone", "-q", str(origin), str(clone))
    (clone / "data").mkdir()
    (clone / "data" / "input.txt").write_text("hello world")
    a = DavSide(origin, tmp_path / "runs-a", tmp_path / "home-a", env)
    b = DavSide(clone, tmp_path / "runs-b", tmp_path / "home-b", env)
    name = request.node.name.replace("[", "_").replace("]", "")
    a.tether("remote", "add", "dav", f"tdav:{name}")  # into tether.toml of each clone
    b.tether("remote", "add", "dav", f"tdav:{name}")
    return a, b, served / name


def test_push_pull_over_webdav(sides: tuple[DavSide, DavSide, Path]) -> None:
    a, b, served = sides
    assert 'dav = "tdav:' in (a.repo / "tether.toml").read_text()
    a.train("scale=3")
    a.train("scale=4")
    first = a.json("push", "dav")
    assert first["changed"] == 2 and first["bytes"] > 0 and first["files"] > 0
    assert len(list((served / "index").glob("*.json"))) == 2
    mtimes = {p: p.stat().st_mtime_ns for p in served.rglob("*") if p.is_file()}
    second = a.json("push", "dav", ok=(3,))
    assert second["changed"] == 0 and second["bytes"] == 0 and second["files"] == 0
    assert {p: p.stat().st_mtime_ns for p in served.rglob("*") if p.is_file()} == mtimes

    listed = b.json("remote", "runs", "dav")
    pulled = b.json("pull", "dav")
    assert pulled["changed"] == 2 and pulled["refs"] == 2, pulled
    assert _ids_metrics(b.json("runs")) == _ids_metrics(a.json("runs")) == _ids_metrics(listed)
    run_id = sorted(_ids_metrics(listed))[0]
    rep = b.tether("reproduce", run_id[:13], "--json")
    assert json.loads(rep.stdout)["identical"]
    b.tether("checkout", run_id[:13])
    assert git(b.repo, "branch", "--list", "tether/*")


def test_labels_sync_over_webdav(sides: tuple[DavSide, DavSide, Path]) -> None:
    a, b, _ = sides
    a.train()
    a.tether("push", "dav")
    b.tether("pull", "dav")
    a.tether("tag", "1", "a-tag")
    b.tether("tag", "1", "b-tag")
    b.tether("sync", "dav")
    a.tether("sync", "dav")
    b.tether("sync", "dav", ok=(0, 3))
    for side in (a, b):
        assert sorted(side.json("show", "1")["attrs"]["tags"]) == ["a-tag", "b-tag"]
    assert "0 differ" in b.tether("sync", "dav", "--check").stdout
