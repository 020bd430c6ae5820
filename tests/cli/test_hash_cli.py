"""`tether hash PATH...` through the real console script, and its progress bar."""

from __future__ import annotations

import io
import json
from pathlib import Path

import blake3

from tests.conftest import run_cli
from tether.capture.datahash import MANIFEST_HEADER, HashProgress
from tether.cli.hash import SHOW_AT_BYTES, ProgressBar


def b3(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def make_data(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"hello\n")
    (root / "sub" / "b.txt").write_bytes(b"x" * 5000)
    return root


def test_prints_digest_files_bytes_path(tmp_path: Path):
    make_data(tmp_path / "data")
    proc = run_cli("hash", "data", "data/a.txt", cwd=tmp_path, check=True)
    lines = proc.stdout.splitlines()
    a, b = b3(b"hello\n"), b3(b"x" * 5000)
    manifest = MANIFEST_HEADER + f"a.txt\t{a}\t6\nsub/b.txt\t{b}\t5000\n".encode()
    assert lines[0].split() == [b3(manifest), "2", "5006", "data"]
    # Numbers are aligned, columns separated by two spaces.
    assert lines[1] == f"{a}  1     6  data/a.txt"
    assert proc.stderr == ""  # no progress bar when stderr is not a terminal


def test_json(tmp_path: Path):
    make_data(tmp_path / "data")
    proc = run_cli("hash", "--json", "data/a.txt", cwd=tmp_path, check=True)
    assert json.loads(proc.stdout) == [
        {"path": "data/a.txt", "algo": "blake3", "digest": b3(b"hello\n"), "files": 1, "bytes": 6}
    ]


def test_missing_path_is_one_line_and_exit_2(tmp_path: Path):
    make_data(tmp_path / "data")
    proc = run_cli("hash", "data", "nope", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == ["tether: error: nope: no such file or folder"]


def test_no_path_is_a_usage_error(tmp_path: Path):
    proc = run_cli("hash", cwd=tmp_path)
    assert proc.returncode == 2
    assert "PATH" in proc.stderr


def test_cache_and_no_cache(tmp_path: Path):
    make_data(tmp_path / "data")
    cache = tmp_path / "own-cache"
    env = {"TETHER_CACHE_DIR": str(cache)}
    first = run_cli("hash", "--no-cache", "data", cwd=tmp_path, env=env, check=True)
    assert not cache.exists()
    second = run_cli("hash", "-j", "1", "data", cwd=tmp_path, env=env, check=True)
    assert (cache / "hashes.db").is_file()
    assert first.stdout == second.stdout


def test_listed_in_help(tmp_path: Path):
    proc = run_cli("--help", cwd=tmp_path, check=True)
    assert "hash" in proc.stdout and "blake3 digests" in proc.stdout


# -- the progress bar ---------------------------------------------------------------------------
def _console() -> tuple[object, io.StringIO]:
    from rich.console import Console

    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=100), out


def test_progress_bar_off_when_not_a_terminal():
    bar = ProgressBar(enabled=False)
    bar(HashProgress("hash", 0, 10, 0, 10 * SHOW_AT_BYTES))
    assert bar.bar is None


def test_progress_bar_waits_for_slow_or_big_work():
    console, out = _console()
    bar = ProgressBar(enabled=True, console=console)
    bar(HashProgress("hash", 1, 10, 100, 1000))  # small and quick: nothing yet
    assert bar.bar is None
    bar(HashProgress("hash", 1, 10, 100, SHOW_AT_BYTES))  # big: shown at once
    assert bar.bar is not None
    bar(HashProgress("done", 10, 10, SHOW_AT_BYTES, SHOW_AT_BYTES))
    assert bar.bar is None
    assert "hashing" in out.getvalue()


def test_progress_bar_after_half_a_second():
    console, out = _console()
    bar = ProgressBar(enabled=True, console=console)
    bar.started -= 1.0  # as if hashing began a second ago
    bar(HashProgress("scan", 0, 5000, 0, 0))
    assert bar.bar is not None
    bar(HashProgress("hash", 10, 5000, 1 << 20, 1 << 24))
    bar.close()
    assert "hashing" in out.getvalue()
