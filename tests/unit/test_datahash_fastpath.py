"""The single-pass reader and the whole-tree cache row (issue 19), without `reads`' wrapper.

test_datahash.py counts reads by wrapping `reader._read_file`, which sends every file through
the reference path; these tests leave it alone, so what they check is the fast loop of
`reader.hash_files` and the `trees` rows of the stat cache, by the counters of `HashStats`.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import blake3
import pytest

from tether.capture.datahash import HashError, HashStats, hash_data, reader
from tether.capture.datahash.cache import HashCache

from .test_datahash import _PINNED, OLD, b3, build_pinned_tree, expected_manifest, write


def many(root: Path, n: int, per_dir: int = 100) -> list[Path]:
    files = []
    for i in range(n):
        files.append(write(root / f"d{i // per_dir:03d}" / f"f{i:05d}.bin", b"%08d" % i * 16))
    return files


def tree_rows(tmp_path: Path) -> int:
    with sqlite3.connect(tmp_path / "cache" / "hashes.db") as con:
        return int(con.execute("SELECT count(*) FROM trees").fetchone()[0])


@pytest.fixture
def careful(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many files left the fast loop for the reference path."""
    seen: list[int] = []
    real = reader._careful

    def counting(folder, todo, *args):  # type: ignore[no-untyped-def]
        seen.extend(todo)
        return real(folder, todo, *args)

    monkeypatch.setattr(reader, "_careful", counting)
    return seen


@pytest.mark.parametrize("threads", [1, 2])
def test_fast_path_gives_the_pinned_digests(tmp_path: Path, threads: int, careful: list[int]):
    root = build_pinned_tree(tmp_path / "tree")
    paths = [root / rel if rel else root for rel in _PINNED]
    got = hash_data(paths, threads=threads, cache=False)
    assert [(d.digest, d.files, d.bytes) for d in got] == [_PINNED[rel] for rel in _PINNED]
    # Only the file roots (read through the reference path) left the fast loop.
    assert len(careful) == 2


def test_fast_path_and_reference_path_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = tmp_path / "t"
    sizes = [0, 1, 1023, 4096, (256 << 10) + 1, (1 << 20) - 1, 1 << 20, (3 << 20) + 5]
    for i, size in enumerate(sizes):
        write(root / f"s{i % 3}" / f"f{i}.bin", os.urandom(size))
    write(root / "s1" / "plain name", b"x")
    fast = [hash_data([root], threads=t, cache=False)[0] for t in (1, 2)]
    real = reader._read_file
    monkeypatch.setattr(reader, "_read_file", lambda *a, **k: real(*a, **k))
    slow = hash_data([root], threads=2, cache=False)[0]
    assert fast == [slow, slow]
    assert slow.digest == b3(expected_manifest(root))


def test_one_byte_changed_in_1000_files_reads_that_file_only(tmp_path: Path):
    root = tmp_path / "data"
    files = many(root, 1000)
    first = hash_data([root])
    stats = HashStats()
    assert hash_data([root], stats=stats) == first
    assert (stats.files_read, stats.files_cached) == (0, 1000)
    victim = files[517]
    data = bytearray(victim.read_bytes())
    data[3] ^= 1
    write(victim, bytes(data))
    os.utime(victim, (OLD + 5, OLD + 5))
    stats = HashStats()
    (d,) = hash_data([root], stats=stats)
    assert (stats.files_read, stats.files_cached) == (1, 999)
    assert d.digest == b3(expected_manifest(root)) != first[0].digest


def test_same_size_and_mtime_restored_is_the_known_limit(tmp_path: Path):
    # As for git: a file rewritten with its size and mtime put back looks unchanged.
    root = tmp_path / "data"
    files = many(root, 20)
    (first,) = hash_data([root])
    write(files[3], b"X" * files[3].stat().st_size)  # same size, mtime set back to OLD
    stats = HashStats()
    assert hash_data([root], stats=stats) == [first]
    assert stats.files_read == 0
    assert hash_data([root], cache=False)[0].digest != first.digest


def test_unchanged_tree_reads_no_folder_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = tmp_path / "data"
    many(root, 300)
    write(root / "top.bin", b"top")
    first = hash_data([root])
    assert tree_rows(tmp_path) == 1
    looked: list[object] = []
    real = HashCache.rows

    def rows(self, dirs):  # type: ignore[no-untyped-def]
        dirs = list(dirs)
        looked.extend(dirs)
        return real(self, dirs)

    monkeypatch.setattr(HashCache, "rows", rows)
    stats = HashStats()
    assert hash_data([root], stats=stats) == first
    assert looked == [] and (stats.files_read, stats.files_cached) == (0, 301)
    # A new file in one folder: the fingerprint differs, every folder's row answers but that
    # one's (whose records still give its other files), and the tree's row is written again.
    write(root / "d001" / "new.bin", b"new")
    stats = HashStats()
    (d,) = hash_data([root], stats=stats)
    assert len(looked) == 4 and stats.files_read == 1
    assert d.digest == b3(expected_manifest(root))
    looked.clear()
    assert hash_data([root]) == [d]
    assert looked == []


def test_a_fresh_file_keeps_the_tree_out_of_the_cache(tmp_path: Path):
    root = tmp_path / "data"
    many(root, 30)
    write(root / "d000" / "live.log", b"still written", old=False)
    first = hash_data([root])
    assert tree_rows(tmp_path) == 0
    stats = HashStats()
    assert hash_data([root], stats=stats) == first
    assert stats.files_read == 1  # the fresh file, every time until it is old


def test_renamed_folder_changes_the_digest(tmp_path: Path):
    root = tmp_path / "data"
    many(root, 30, per_dir=10)
    (first,) = hash_data([root])
    (root / "d001").rename(root / "e001")
    stats = HashStats()
    (d,) = hash_data([root], stats=stats)
    assert d.digest == b3(expected_manifest(root)) != first.digest
    assert stats.files_read == 0  # the same files: the folder's own row still answers


def test_hard_links_and_folders_reached_twice_are_read_once(tmp_path: Path):
    root = tmp_path / "data"
    files = many(root / "a", 10)
    os.link(files[0], root / "b-link")
    shared = tmp_path / "shared"
    many(shared, 5)
    (root / "one").symlink_to(shared, target_is_directory=True)
    (root / "two").symlink_to(shared, target_is_directory=True)
    stats = HashStats()
    (d,) = hash_data([root], cache=False, stats=stats)
    assert d.files == 21 and stats.files_read == 15
    assert d.digest == b3(expected_manifest(root))
    stats = HashStats()
    assert hash_data([root, root / "a"], cache=False, stats=stats)[0] == d
    assert stats.files_read == 15  # the second root's files are the first's


def test_file_growing_after_the_listing_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    root = tmp_path / "data"
    victim = write(root / "grows.log", b"first")
    write(root / "other", b"other")
    real = reader._read
    done: list[int] = []

    def racing(fd: int, n: int) -> bytes:
        if not done and os.fstat(fd).st_ino == victim.stat().st_ino:
            done.append(fd)
            with open(victim, "ab") as fh:  # a writer appends between listing and read
                fh.write(b" and more")
        return real(fd, n)

    monkeypatch.setattr(reader, "_read", racing)
    (d,) = hash_data([root], cache=False)
    assert done
    assert d.bytes == len(b"first and more") + len(b"other")
    assert d.digest == b3(expected_manifest(root))


def test_unreadable_file_in_the_fast_loop_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = tmp_path / "data"
    many(root, 10)
    real = os.open

    def denied(path, flags, *args, **kwargs):  # type: ignore[no-untyped-def]
        if os.fspath(path).endswith("f00004.bin"):
            raise PermissionError(13, "Permission denied", path)
        return real(path, flags, *args, **kwargs)

    # The fast loop's open, and the careful path's.
    monkeypatch.setattr(reader, "_open", denied)
    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(HashError, match=r"f00004\.bin: cannot read \(Permission denied\)"):
        hash_data([root], cache=False)


def test_a_file_gone_after_the_listing_is_an_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    root = tmp_path / "data"
    files = many(root, 10)
    real = reader.hash_files

    def vanish(folder, todo, *args):  # type: ignore[no-untyped-def]
        files[2].unlink(missing_ok=True)
        return real(folder, todo, *args)

    monkeypatch.setattr("tether.capture.datahash.hashing.hash_files", vanish)
    with pytest.raises(HashError, match=r"f00002\.bin: cannot read"):
        hash_data([root], cache=False, threads=1)


def test_big_file_changed_after_the_listing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = tmp_path / "data"
    big = write(root / "big.bin", os.urandom(reader.MMAP_MIN + 10))
    real = reader._blake3()
    calls: list[int] = []

    class Racing:
        def __init__(self, *args: object, **kwargs: object) -> None:
            self.h = real(*args, **kwargs)

        def update_mmap(self, path: str) -> None:
            calls.append(1)
            with open(path, "ab") as fh:
                fh.write(b"tail")
            self.h.update_mmap(path)

        def __getattr__(self, name: str) -> object:
            return getattr(self.h, name)

    monkeypatch.setattr(reader, "_b3", Racing)
    (d,) = hash_data([root], cache=False, threads=1)
    assert calls
    data = big.read_bytes()
    assert d.bytes == len(data)
    want = blake3.blake3(
        b"tether-manifest-v1\nbig.bin\t" + b3(data).encode() + b"\t%d\n" % len(data)
    ).hexdigest()
    assert d.digest == want
