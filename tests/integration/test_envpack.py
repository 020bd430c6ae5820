"""`tether env pack` and `tether env yeet`: real tar, zstd and rsync, local folders as nodes.

The `folders` transport makes each host a folder under a root on this machine; the copies are
real rsync runs between those folders, in the same tree a cluster would see. A missing rsync
or zstd skips with a reason outside CI and fails in CI (scripts/system-deps.sh installs them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tether.distributed import envpack
from tether.distributed.envpack import FolderTransport, RsyncTransport, detect_env, pack, plan, yeet
from tether.errors import TetherError

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
IN_CI = os.environ.get("CI", "").lower() == "true"


def need(tool: str) -> None:
    if shutil.which(tool):
        return
    if IN_CI:
        pytest.fail(f"{tool} is not installed; CI must have it (scripts/system-deps.sh)")
    pytest.skip(f"{tool} is not installed (apt-get install {tool}; make system-deps)")


def fake_venv(where: Path, name: str = "envt") -> Path:
    prefix = where / name
    (prefix / "bin").mkdir(parents=True)
    (prefix / "lib" / "python3" / "site-packages" / "pkg").mkdir(parents=True)
    (prefix / "pyvenv.cfg").write_text(f"home = {BIN}\n", encoding="utf-8")
    (prefix / "bin" / "python").symlink_to(sys.executable)
    (prefix / "lib" / "python3" / "site-packages" / "pkg" / "__init__.py").write_text("X = 1\n")
    (prefix / "lib" / "python3" / "site-packages" / "noise.bin").write_bytes(os.urandom(20_000))
    (prefix / "lib" / "python3" / "site-packages" / "big.txt").write_text("tether " * 40_000)
    (prefix / "lib" / "python3" / "site-packages" / "skip.pyc").write_bytes(b"\0" * 10)
    return prefix


def tree(root: Path) -> dict[str, str]:
    """Relative path -> content digest (or link target) of every file under root."""
    import hashlib

    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ)
    full.update(env or {})
    return subprocess.run(
        [str(BIN / "tether"), *args], capture_output=True, text=True, env=full, timeout=120
    )


# -- detection --------------------------------------------------------------------------------
def test_detect_order(tmp_path: Path) -> None:
    venv = fake_venv(tmp_path)
    conda = tmp_path / "conda-env"
    (conda / "conda-meta").mkdir(parents=True)
    got = detect_env(env={"VIRTUAL_ENV": str(venv), "CONDA_PREFIX": str(conda)})
    assert (got.kind, got.prefix, got.how) == ("venv", venv, "VIRTUAL_ENV")
    got = detect_env(env={"CONDA_PREFIX": str(conda)})
    assert (got.kind, got.prefix, got.how) == ("conda", conda, "CONDA_PREFIX")
    got = detect_env(env={"VIRTUAL_ENV": str(tmp_path / "gone")})  # stale: this Python's
    assert got.prefix == Path(sys.prefix).absolute() and got.how == "sys.prefix"
    assert detect_env(conda).kind == "conda"


def test_not_an_environment(tmp_path: Path) -> None:
    with pytest.raises(TetherError, match="neither a venv .* nor a conda env"):
        detect_env(tmp_path)
    with pytest.raises(TetherError, match="is not a folder"):
        detect_env(tmp_path / "nope")


# -- pack -------------------------------------------------------------------------------------
def test_pack_uncompressed_by_default(tmp_path: Path) -> None:
    need("tar")
    venv = fake_venv(tmp_path, ".hidden-env")
    result = pack(venv, f"{tmp_path}/out/", exclude=["*.pyc"])
    assert result.path == tmp_path / "out" / "hidden-env.tar"  # no leading dot, no suffix
    assert result.compression is None and result.tool == "tar" and result.kind == "venv"
    assert result.files == 6 and result.bytes > 300_000
    with tarfile.open(result.path) as tf:  # a plain tar: opens without a decompressor
        names = tf.getnames()
        link = tf.getmember("hidden-env/bin/python")
    assert "hidden-env/pyvenv.cfg" in names
    assert not any(n.endswith(".pyc") for n in names)
    assert link.issym() and link.linkname == sys.executable
    assert not list(tmp_path.glob("out/.*partial"))


@pytest.mark.parametrize(
    ("compress", "magic"), [("zstd", b"\x28\xb5\x2f\xfd"), ("gzip", b"\x1f\x8b")]
)
@pytest.mark.parametrize("use_tar", [True, False])
def test_pack_compressed_round_trip(
    tmp_path: Path, compress: str, magic: bytes, use_tar: bool
) -> None:
    need("tar")
    if compress == "zstd":
        need("zstd")
    venv = fake_venv(tmp_path)
    (tmp_path / "a").mkdir()
    result = pack(venv, tmp_path / "a", compress=compress, use_tar=use_tar)
    assert result.path.name == "envt" + envpack.COMPRESSIONS[compress]
    assert result.path.read_bytes()[:4].startswith(magic)
    assert result.size < result.bytes / 2
    top = envpack.unpack(result.path, tmp_path / "unpacked")
    assert top == tmp_path / "unpacked" / "envt"
    assert tree(top) == tree(venv)


def test_pack_refuses_to_write_inside_the_env(tmp_path: Path) -> None:
    venv = fake_venv(tmp_path)
    with pytest.raises(TetherError, match="inside the environment"):
        pack(venv, venv / "lib")
    with pytest.raises(TetherError, match="unknown compression"):
        pack(venv, tmp_path, compress="lz4")


def test_cli_pack_detects_the_active_venv(tmp_path: Path) -> None:
    need("tar")
    venv = fake_venv(tmp_path)
    proc = cli("env", "pack", "-o", str(tmp_path / "x.tar"), "--json",
               env={"VIRTUAL_ENV": str(venv)})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (
        out["prefix"] == str(venv)
        and out["kind"] == "venv"
        and out["path"] == str(tmp_path / "x.tar")
    )
    proc = cli("env", "pack", str(tmp_path))
    assert proc.returncode == 2 and "neither a venv" in proc.stderr


# -- the fan-out ------------------------------------------------------------------------------
def test_plan_doubles_every_round() -> None:
    hosts = [f"n{i}" for i in range(7)]
    rounds = plan(hosts)
    assert [len(r) for r in rounds] == [1, 2, 4]
    assert rounds[1] == [("local", "n1"), ("n0", "n2")]
    assert [len(r) for r in plan(hosts[:6], fanout=2)] == [2, 4]
    with pytest.raises(TetherError, match="fanout"):
        plan(hosts, 0)


def test_rsync_transport_commands() -> None:
    t = RsyncTransport()
    t.here = {"head"}
    first = t.copy_argv(None, "/tmp/env.tar", "n1", "/local/env")
    assert first == [
        ["ssh", "-o", "BatchMode=yes", "n1", "mkdir -p /local/env"],
        ["rsync", "-a", "-W", "/tmp/env.tar", "n1:/local/env/"],
    ]
    relay = t.copy_argv("n1", "/local/env/env.tar", "n2", "/local/env")
    assert relay[1] == [
        "ssh", "-o", "BatchMode=yes", "n1", "rsync -a -W /local/env/env.tar n2:/local/env/"
    ]  # fmt: skip
    # this machine in the hostfile: a local copy, no ssh
    assert t.copy_argv(None, "/tmp/env.tar", "head", "/d")[1] == [
        "rsync",
        "-a",
        "-W",
        "/tmp/env.tar",
        "/d/",
    ]
    assert "zstd -d -q" in t.describe_extract("n1", "/d/env.tar.zst", "/d")


def test_yeet_tree_over_real_rsync(tmp_path: Path) -> None:
    need("rsync")
    need("tar")
    venv = tmp_path / "realenv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    archive = pack(venv, tmp_path).path
    hosts = [f"node{i}" for i in range(1, 7)]
    nodes = tmp_path / "nodes"
    events: list[str] = []
    result = yeet(archive, hosts, "/scratch/env", FolderTransport(nodes), on_event=events.append)
    assert result.ok, result.as_dict()
    assert [h.host for h in result.hosts] == hosts
    by_host = {h.host: h for h in result.hosts}
    # The tree: the first copy comes from here, node1 then sends to others.
    assert by_host["node1"].source == "local"
    relayed = [h for h in result.hosts if h.source != "local"]
    assert relayed, events
    for h in relayed:
        assert h.source is not None
        assert by_host[h.source].copied_s <= h.copied_s  # type: ignore[operator]
    assert result.rounds < len(hosts)
    for host in hosts:
        copy = nodes / host / "scratch" / "env" / "realenv"
        assert tree(copy) == tree(venv)
        # a relocated venv still runs: its python finds pyvenv.cfg beside it
        out = subprocess.run(
            [str(copy / "bin" / "python"), "-c", "import sys; print(sys.prefix)"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert out.stdout.strip() == str(copy)


def test_yeet_a_folder_and_a_failing_host(tmp_path: Path) -> None:
    need("rsync")
    src = fake_venv(tmp_path)
    nodes = tmp_path / "nodes"
    nodes.mkdir()
    (nodes / "bad").write_text("a file where the node's folder should be")
    result = yeet(src, ["a", "bad", "b", "c"], "/d", FolderTransport(nodes), retries=1)
    assert result.failed == ["bad"]
    bad = result.hosts[1]
    assert bad.attempts == 2 and "failed" in (bad.error or "")
    assert all(h.source != "bad" for h in result.hosts)  # a failed host never sends
    for host in ("a", "b", "c"):
        assert tree(nodes / host / "d" / "envt") == tree(src)  # a folder: copied, not unpacked


def test_cli_yeet(tmp_path: Path) -> None:
    need("rsync")
    need("tar")
    venv = fake_venv(tmp_path)
    hostfile = tmp_path / "hosts"
    hostfile.write_text("# three nodes\nn1 slots=4\nn2 slots=4\n\nn3\n", encoding="utf-8")
    nodes = tmp_path / "nodes"
    base = ["env", "yeet", "--hostfile", str(hostfile), "--dest", "/tmp/env",
            "--transport", "folders", "--nodes-root", str(nodes)]  # fmt: skip
    dry = cli(*base, "--dry-run", env={"VIRTUAL_ENV": str(venv)})
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines()[0] == "# round 1" and "envt.tar" in dry.stdout
    assert not nodes.exists()
    proc = cli(*base, "--json", env={"VIRTUAL_ENV": str(venv)})  # packs the active env first
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["ok"] and [h["host"] for h in out["hosts"]] == ["n1", "n2", "n3"]
    for host in ("n1", "n2", "n3"):
        assert tree(nodes / host / "tmp" / "env" / "envt") == tree(venv)
    (nodes / "n2").rename(tmp_path / "n2-moved")
    (nodes / "n2").write_text("blocked")
    proc = cli(*base, "--src", str(venv), "--retries", "0")
    assert proc.returncode == 1
    assert "n2" in proc.stdout and "FAILED" in proc.stdout and "2/3 hosts" in proc.stdout


def test_yeet_bad_input(tmp_path: Path) -> None:
    t = FolderTransport(tmp_path)
    with pytest.raises(TetherError, match="does not exist"):
        yeet(tmp_path / "nope.tar", ["a"], "/d", t)
    src = fake_venv(tmp_path)
    with pytest.raises(TetherError, match="absolute"):
        yeet(src, ["a"], "relative/dir", t)
    with pytest.raises(TetherError, match="no hosts"):
        yeet(src, [], "/d", t)
    with pytest.raises(TetherError, match="not a tarball"):
        yeet(src, ["a"], "/d", t, extract=True)
    with pytest.raises(TetherError, match="unknown transport 'ftp'"):
        envpack.get_transport("ftp")
    rsync = envpack.get_transport("tether.distributed.envpack:RsyncTransport")
    assert isinstance(rsync, RsyncTransport)
    with pytest.raises(TetherError, match="not inside a Slurm or PBS job"):
        envpack.hosts_from(None, env={})
    proc = cli("env", "yeet", "--dest", "/d", "--transport", "folders",
               env={"TETHER_HOSTFILE": str(tmp_path / "missing")})  # fmt: skip
    assert proc.returncode == 2 and "does not exist" in proc.stderr
